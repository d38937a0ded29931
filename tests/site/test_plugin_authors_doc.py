"""docs/plugin-authors.md, executed: every ```sh block, in order, from the repository's root, against
the dev site the page itself starts with ``make dev``.

Nothing in a command is rewritten except the URL ``http://127.0.0.1:8000`` (to the free port the test
picked). The rest comes from the environment, as the page's last section documents: ``HOME`` is a
temporary directory (so ``~/myplugin`` and ``~/publisher.key`` land there), ``PORT`` and
``GONEXT_DEV_HOST`` name the free port, ``DATABASE_URL``/``MEDIA_ROOT``/``STATIC_ROOT`` a temporary
site. Blocks run in ``bash`` with ``set -e``; exported variables carry over to the next block.
HTML comments ``<!-- test: ... -->`` say what a block needs: ``background=NAME ready="REGEX"``
(start it and wait for that output line), ``expect="REGEX"`` (its output must match),
``wait=NAME for="REGEX"`` (a line from a background command, after the block before),
``interrupt=NAME`` (Ctrl-C, status 0).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.api.server import free_port
from tests.conftest import REPO
from tests.devloop_helpers import Proc, zig_cache_env

DOC = REPO / "docs" / "plugin-authors.md"
DOC_URL = "http://127.0.0.1:8000"
_TOKEN = re.compile(r"(<!-- test: (.*?) -->)|```(\w*)\n(.*?)```", re.S)
_ATTR = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass
class Step:
    """A ```sh block (``command``) with the directives attached to it, or a standalone directive."""

    command: str | None
    attrs: dict[str, str] = field(default_factory=dict)


def steps(text: str) -> list[Step]:
    """The page as steps, in order. ``background`` and ``expect`` attach to the block after them."""
    out: list[Step] = []
    pending: dict[str, str] = {}
    for match in _TOKEN.finditer(text):
        if match.group(1):
            attrs = {m.group(1): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
                     for m in _ATTR.finditer(match.group(2))}
            if "background" in attrs or "expect" in attrs:
                pending.update(attrs)
            else:
                out.append(Step(None, attrs))
        elif match.group(3) == "sh":
            out.append(Step(match.group(4), pending))
            pending = {}
    assert not pending, f"a directive with no ```sh block after it: {pending}"
    return out


def test_the_page_covers_the_loop_and_every_block_is_a_step() -> None:
    text = DOC.read_text()
    found = steps(text)
    commands = "\n".join(step.command for step in found if step.command)
    assert len([s for s in found if s.command]) == text.count("```sh\n")
    for needle in ("make deps", "make dev", "drf_create_token", "plugin new", "plugin dev ~/myplugin --logs",
                   "optionalCapabilities", "@panic", "/faults/", "plugin keygen", "plugin pack",
                   "plugin sign", "plugin verify", "plugin trust-key", "/api/plugins/"):
        assert needle in commands, needle
    names = {s.attrs["background"] for s in found if "background" in s.attrs}
    assert names == {"site", "loop"}
    assert {s.attrs["interrupt"] for s in found if "interrupt" in s.attrs} == {"loop"}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="ziglang is not installed")
@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("perl") and shutil.which("make")),
                    reason="curl, perl and make are needed")
def test_every_command_of_the_page_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "exports.sh"
    env = {key: value for key, value in os.environ.items()
           if key not in ("TEST_DATABASE_NAME", "GONEXT_DEV_MODE", "DJANGO_SETTINGS_MODULE", "GONEXT_TOKEN",
                          "GONEXT_DEV_HOST", "DEBUG", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update({
        "HOME": str(home), "PORT": str(port), "GONEXT_DEV_HOST": url, "NO_COLOR": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(tmp_path / "static"), "PYTHONUNBUFFERED": "1", **zig_cache_env(),
    })
    prelude = f'set -e\n[ -f "{state}" ] && source "{state}"\n'
    background: dict[str, Proc] = {}
    marks: dict[str, int] = {}
    try:
        for step in steps(DOC.read_text()):
            attrs = step.attrs
            if step.command is None:
                if "wait" in attrs:
                    proc = background[attrs["wait"]]
                    proc.wait_for(attrs["for"], since=marks[attrs["wait"]], timeout=60)
                elif "interrupt" in attrs:
                    assert background[attrs["interrupt"]].interrupt() == 0
                continue
            command = step.command.replace(DOC_URL, url)
            marks = {name: proc.mark for name, proc in background.items()}
            if "background" in attrs:
                proc = Proc(["bash", "-c", prelude + command], cwd=REPO, env=env)
                background[attrs["background"]] = proc
                proc.wait_for(attrs["ready"], timeout=180)
                continue
            done = subprocess.run(["bash", "-c", f'{prelude}{command}\nexport -p > "{state}"\n'], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
            if "expect" in attrs:
                assert re.search(attrs["expect"], done.stdout), (command, attrs["expect"],
                                                                 done.stdout[-3000:])
        site = background["site"]
        assert "Traceback" not in site.output(), site.output()[-5000:]
    finally:
        for proc in background.values():
            proc.stop()
