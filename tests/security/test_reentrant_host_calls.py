"""Issue #13, class 1: a guest can never make the host recurse, nor crash the process.

ABI.md: while the host is inside ``gn_alloc``/``gn_free`` (placing a host call's result, a payload,
or freeing a body), ``gn_log`` is dropped, ``gn_time_ms`` runs, and any other import ends the call
as a ``reentrant_host_call`` trap. Before the fix, a ``gn_alloc`` that calls ``gn_host_call("log")``
made the host call ``gn_alloc`` again until Python's recursion limit blew up inside the ctypes
trampoline, and the process died (SIGSEGV / ``free(): invalid pointer``) on the first page view.

Both tests run the guest (``tests/guests/reentrant_guest.wat``) in a child process, so a crash
fails the test instead of killing pytest: every import from both places, through both dispatchers,
on the bare runtime; then the real site (its SQLite file database, the signed plugin installed and
activated through ``lifecycle``, the home page rendered by Django's test client), where each view
records a fault and the fifth quarantines the plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.test_cross_process import base_env

PROCS = REPO / "tests" / "procs"
IMPORTS = ("gn_log", "gn_panic", "gn_time_ms", "gn_host_call")
ALLOWED = {"gn_log", "gn_time_ms"}  # ABI.md: the only imports allowed inside gn_alloc / gn_free
WHERE = {"alloc": "gn_alloc", "free": "gn_free", "payload": "gn_alloc"}  # case -> the export re-entered
QUARANTINE_FAULTS = 5  # the default of GONEXT_PLUGINS["QUARANTINE_FAULTS"]


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Run a child to its end; its JSON lines and stderr. A crash (signal, non-zero exit) fails."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (f"the child died with exit status {done.returncode} (a negative "
                                  f"status is a signal); lines: {lines}\nstderr:\n{done.stderr[-4000:]}")
    assert lines and lines[-1].get("event") == "end", (lines, done.stderr[-4000:])
    # An exception that escaped a ctypes callback is printed as "Exception ignored ...": never again.
    assert "Exception ignored" not in done.stderr, done.stderr[-4000:]
    return lines, done.stderr


@pytest.mark.parametrize("dispatcher", ["fast", "slow"])
def test_every_import_from_inside_gn_alloc_and_gn_free(dispatcher: str) -> None:
    lines, _ = _run([str(PROCS / "reentrant_runtime.py"), dispatcher])
    cases = {line["case"]: line for line in lines if "case" in line}
    assert sorted(cases) == sorted(f"{where}:{name}" for where in WHERE for name in IMPORTS)
    for case, line in cases.items():
        where, name = case.split(":")
        assert "hook ran" in line["logs"], line  # the hook itself ran and logged normally
        assert "from the allocator" not in line["logs"], line  # gn_log from there is dropped
        if name in ALLOWED:
            assert line["outcome"] == "ok", line
        else:
            assert line["outcome"] == "reentrant_host_call", line
            assert f"{name} called from inside {WHERE[where]}" in line["message"], line


@pytest.mark.slow
def test_page_views_survive_record_faults_and_quarantine(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    env = base_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", media)
    views = QUARANTINE_FAULTS + 1
    lines, _ = _run([str(PROCS / "reentrant_site.py"), str(views)], env)
    seen = [line for line in lines if line.get("event") == "view"]
    assert [line["view"] for line in seen] == list(range(1, views + 1))
    assert all(line["status"] == 200 for line in seen), seen  # a plugin's fault never breaks a page
    for line in seen[:QUARANTINE_FAULTS]:
        assert len(line["faults"]) == line["view"], line  # one fault recorded per view
        assert line["state"] == ("quarantined" if line["view"] == QUARANTINE_FAULTS else "active"), line
    assert seen[-1]["state"] == "quarantined"
    assert len(seen[-1]["faults"]) == QUARANTINE_FAULTS  # quarantined: the plugin no longer runs
    for fault in seen[-1]["faults"]:
        assert fault["kind"] == "trap", fault
        assert "gn_host_call called from inside gn_alloc" in fault["message"], fault
