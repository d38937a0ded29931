"""``python -m benchmarks devloop``: edit -> served, for each scaffold language, on a live dev site.

What an author feels: save a source file, then wait until the page shows the change. For each
language ``plugin new`` can scaffold (a language whose toolchain is missing is a row saying so),
this starts a dev-mode site under uvicorn (as ``tests/test_dev_loop_live.py`` does: its own SQLite
file, an author with an API token, a blog post at ``/posts/hello/``), scaffolds a plugin,
runs ``manage.py plugin dev`` watching it, and then ``--edits`` times: changes a string the plugin
puts in the page, and measures from the save until the page serves the new string. The loop's own
output lines split that into phases: save -> ``change`` (the watcher and its debounce), -> ``build``
(the compile), -> ``validate``, -> ``upload`` (the site installs and activates), -> served (the
site's next request sees the new version). Prints a JSON document, then a table.

The goals (docs/plugin-authors.md, "How fast is the loop"): Zig <= 3 s and WAT <= 0.5 s median on
a 2-core machine. This is a benchmark, not a test: nothing fails when a goal is missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonext_plugins.devtools import build_rust, scaffold
from gonext_plugins.devtools.build_assemblyscript import ASSEMBLYSCRIPT_VERSION
from gonext_plugins.errors import BuildError, ToolchainMissing
from tests.devloop_helpers import DevServer, Proc, poll_page, zig_cache_env

REPO = Path(__file__).resolve().parent.parent
PHASES = ("watch", "build", "validate", "upload", "serve")
# The dev loop's output line that ends each phase (``serve`` ends when the page shows the edit).
PHASE_LINES = {"watch": r"change ", "build": r"build +build/", "validate": r"validate +manifest",
               "upload": r"upload .*status"}


@dataclass(frozen=True)
class EditTarget:
    """Where a scaffold puts text in the page: the file to edit, and a string of it that the page
    shows (each edit swaps it for another of the same length, so byte lengths in WAT stay right)."""

    file: str
    token: str  # may contain {slug} and {title}


# A language whose scaffold is added later gets a line here (and needs nothing else).
EDIT_TARGETS: dict[str, EditTarget] = {
    "zig": EditTarget("main.zig", "Hello from"),
    "wat": EditTarget("plugin.wat", "content\\22: \\22{slug}"),
    "rust": EditTarget("src/lib.rs", "Hello from"),
    "c": EditTarget("main.c", "Hello from"),  # twice (the string and its gn_strlen): both change
    "assemblyscript": EditTarget("assembly/index.ts", "Hello from"),
}
# Where the tests keep the pinned AssemblyScript compiler (tests/conftest.py's asc_modules): linked
# into the scaffold when present, else the scaffold gets the `npm install` an author runs once.
ASC_CACHE = Path(os.environ.get("GONEXT_TEST_CACHE", Path.home() / ".cache" / "gonext-tests"))


def _token(target: EditTarget, slug: str) -> str:
    return target.token.format(slug=slug, title=scaffold.title_for(slug))


def _variant(token: str, number: int) -> str:
    """``token`` with its last two characters replaced by ``number`` (same length)."""
    return f"{token[:-2]}{number % 100:02d}"


def _page_text(token: str) -> str:
    """What the page shows for a token written in the source (a WAT string writes ``"`` as ``\\22``,
    and the JSON ``"content": "x"`` becomes the attribute ``content="x"``)."""
    return token.replace("\\22", '"').replace('content": "', 'content="')


def toolchain_missing(lang: str) -> str | None:
    """Why ``lang`` cannot be built here (None when it can)."""
    if lang not in EDIT_TARGETS:
        return "no edit target for this scaffold yet (add one to EDIT_TARGETS)"
    if lang in ("zig", "c"):
        return None if importlib.util.find_spec("ziglang") else "ziglang is not installed"
    if lang == "rust":
        try:
            build_rust.find_rustc()
        except ToolchainMissing as exc:
            return exc.message
    if lang == "assemblyscript" and (shutil.which("node") is None or shutil.which("npm") is None):
        return "node and npm not found"
    return None


def install_compiler(lang: str, project: Path) -> None:
    """What an author runs once after ``plugin new`` (AssemblyScript: ``npm install``), not timed."""
    if lang != "assemblyscript":
        return
    cached = ASC_CACHE / f"assemblyscript-{ASSEMBLYSCRIPT_VERSION}" / "node_modules"
    if (cached / "assemblyscript" / "package.json").is_file():
        (project / "node_modules").symlink_to(cached, target_is_directory=True)
        return
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=project, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BuildError(f"npm install failed: {done.stderr[-500:]}")


def run_language(lang: str, edits: int, root: Path, sync_interval: float) -> dict[str, Any]:
    """One language: a fresh dev site, a scaffold, ``plugin dev`` watching, ``edits`` timed edits."""
    missing = toolchain_missing(lang)
    if missing:
        return {"lang": lang, "skipped": missing}
    slug = f"bench-{lang}"
    site = root / f"site-{lang}"
    site.mkdir(parents=True)
    server = DevServer(site, sync_interval=sync_interval).start()
    project = root / slug
    loop: Proc | None = None
    try:
        scaffold.create(project, lang, slug=slug)
        install_compiler(lang, project)
        target = EDIT_TARGETS[lang]
        source = project / target.file
        token = _token(target, slug)
        if token not in source.read_text():
            raise BuildError(f"the {lang} scaffold no longer contains {token!r}: update EDIT_TARGETS")
        env = {**server.env, **zig_cache_env(), "NO_COLOR": "1"}
        page = f"{server.url}/posts/hello/"
        loop = Proc([sys.executable, "manage.py", "plugin", "dev", str(project), "--host", server.url,
                     "--token", server.token], cwd=REPO, env=env)
        loop.wait_for(r"upload .*status installed", timeout=300)
        loop.wait_for(r"watch ", timeout=60)
        poll_page(page, _page_text(token), timeout=60)
        samples: list[dict[str, float]] = []
        current = token
        for number in range(1, edits + 1):
            new = _variant(token, number)
            mark = loop.mark
            time.sleep(0.3)  # let the watcher settle after the previous cycle's output
            saved = time.monotonic()
            source.write_text(source.read_text().replace(current, new))
            served, _ = poll_page(page, _page_text(new), timeout=300, interval=0.01)
            sample = {"total": served - saved}
            previous = saved
            for phase in PHASES[:-1]:
                when, _ = loop.wait_for(PHASE_LINES[phase], since=mark, timeout=60)
                sample[phase] = max(0.0, when - previous)
                previous = max(previous, when)
            sample["serve"] = max(0.0, served - previous)
            samples.append(sample)
            current = new
        return {"lang": lang, "edits": edits, "samples": samples, **summary(samples)}
    finally:
        if loop is not None:
            loop.stop()
        server.stop()


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    totals = [s["total"] for s in samples]
    return {
        "median_s": round(statistics.median(totals), 3),
        "max_s": round(max(totals), 3),
        "phases_median_s": {p: round(statistics.median(s[p] for s in samples), 3) for p in PHASES},
    }


def table(results: dict[str, Any]) -> str:
    head = f"{'language':<16}{'median s':>9}{'max s':>8}  " + "".join(f"{p:>9}" for p in PHASES)
    lines = [head, "-" * len(head)]
    for row in results["rows"]:
        if "skipped" in row:
            lines.append(f"{row['lang']:<16}skipped: {row['skipped']}")
            continue
        phases = "".join(f"{row['phases_median_s'][p]:>9.3f}" for p in PHASES)
        lines.append(f"{row['lang']:<16}{row['median_s']:>9.3f}{row['max_s']:>8.3f}  {phases}")
    lines.append(f"({results['machine']['cpus']} CPUs, load {results['machine']['load_before']} before; "
                 "phases are medians: save->change line, ->build, ->validate, ->upload, ->page serves it)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks devloop", description=__doc__.split("\n")[0])
    parser.add_argument("--lang", action="append", choices=scaffold.SCAFFOLD_LANGUAGES,
                        help="only this language (repeatable; default: every scaffold language)")
    parser.add_argument("--edits", type=int, default=5, help="timed edits per language (default 5)")
    parser.add_argument("--sync-interval", type=float, default=1.0,
                        help="the dev site's GONEXT_SYNC_INTERVAL (default 1.0, the setting's default)")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    machine = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
               "load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="gonext-devloop-") as tmp:
        rows = [run_language(lang, args.edits, Path(tmp), args.sync_interval)
                for lang in (args.lang or scaffold.SCAFFOLD_LANGUAGES)]
    results = {"benchmark": "devloop", "machine": machine, "rows": rows}
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print(table(results))
    return 0
