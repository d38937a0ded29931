"""``python -m benchmarks languages``: the same plugin in every language, side by side.

Rows: every ``examples/plugins/reading-time-<lang>/`` present (the one job of
``examples/plugins/README.md``), then the SEO example and a fresh ``plugin new`` scaffold per language
(``--no-extras`` leaves those out). Each project is copied to a temporary directory and built there
cold (no ``build/``, an empty Zig global cache): the dev build, then the release build
(``devtools.builders``). Per row: the release module's size, both build times, and for the reading-time
rows every fixture of ``examples/plugins/reading-time-fixtures/`` run through
:mod:`gonext_plugins.testing` on the release module: pass/fail, guest instructions (fuel) per call and
the median time per call. A language whose toolchain is missing is a row saying so. Prints a JSON
document, then a table. Builds take most of the time (Zig release builds: seconds each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.devloop import install_compiler
from gonext_plugins.devtools import builders, scaffold
from gonext_plugins.devtools import lang as langs
from gonext_plugins.errors import PluginError, ToolchainMissing
from gonext_plugins.testing import PluginHarness, load_json, run_fixture

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plugins"
FIXTURES = EXAMPLES / "reading-time-fixtures"


def _compile(project: Path, *, release: bool) -> tuple[float, Path]:
    """One cold build; (seconds, output): the dev build, or with ``release`` the one ``pack`` ships."""
    started = time.perf_counter()
    built = builders.compile_project(project, release=release)
    return time.perf_counter() - started, built.wasm_path


def _fixture_figures(wasm: bytes, project: Path, runs: int) -> list[dict[str, Any]]:
    manifest = (project / "manifest.json").read_bytes()
    rows = []
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = load_json(path)
        with PluginHarness(wasm, manifest) as plugin:
            first = run_fixture(plugin, fixture)
            calls = [run_fixture(plugin, fixture).call for _ in range(runs)]
        rows.append({"fixture": path.stem, "passed": first.passed, "status": first.call.status,
                     "fuel": first.call.fuel,
                     "median_us": round(statistics.median(c.wall_ms for c in calls) * 1000, 1),
                     "peak_memory_bytes": first.call.peak_memory_bytes})
    return rows


def bench_project(label: str, source: Path, *, fixtures: bool, runs: int) -> dict[str, Any]:
    """Copy, build dev and release cold, size the release module, run the fixtures."""
    row: dict[str, Any] = {"row": label}
    with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
        project = Path(tmp) / source.name
        shutil.copytree(source, project, ignore=shutil.ignore_patterns("build", "node_modules", "target",
                                                                       ".zig-cache", "zig-out"))
        if (source / "node_modules").is_dir():  # an npm install is not part of a build
            (project / "node_modules").symlink_to(source / "node_modules")
        elif langs.detect(project) == "assemblyscript":
            install_compiler("assemblyscript", project)
        saved = os.environ.get("ZIG_GLOBAL_CACHE_DIR")
        os.environ["ZIG_GLOBAL_CACHE_DIR"] = str(Path(tmp) / "zig-global-cache")
        try:
            row["lang"] = langs.detect(project)
            row["dev_build_s"], _ = _compile(project, release=False)
            shutil.rmtree(project / "build", ignore_errors=True)
            row["release_build_s"], out = _compile(project, release=True)
            wasm = out.read_bytes()
            row["module_bytes"] = len(wasm)
            if fixtures:
                row["fixtures"] = _fixture_figures(wasm, project, runs)
        except ToolchainMissing as exc:
            row["error"] = f"toolchain missing: {exc.message}"
        except PluginError as exc:
            row["error"] = f"{exc.code}: {exc.message}"
        finally:
            if saved is None:
                os.environ.pop("ZIG_GLOBAL_CACHE_DIR", None)
            else:
                os.environ["ZIG_GLOBAL_CACHE_DIR"] = saved
    for key in ("dev_build_s", "release_build_s"):
        if key in row:
            row[key] = round(row[key], 3)
    return row


def _scaffolds(tmp: Path) -> list[tuple[str, Path]]:
    rows = []
    for lang in scaffold.SCAFFOLD_LANGUAGES:
        directory = tmp / f"scaffold-{lang}"
        scaffold.create(directory, lang, slug=f"scaffold-{lang}")
        rows.append((f"scaffold ({lang})", directory))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    fixtures = sorted({f["fixture"] for row in rows for f in row.get("fixtures", [])})
    head = ["row", "lang", "size (B)", "dev build (s)", "release build (s)", "fixtures passed",
            *(f"{name} fuel / µs" for name in fixtures)]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in rows:
        if "error" in row:
            blanks = [""] * (len(head) - 3)
            lines.append(" | ".join([row["row"], row.get("lang", "?"), row["error"], *blanks]))
            continue
        by_name = {f["fixture"]: f for f in row.get("fixtures", [])}
        passed = f"{sum(f['passed'] for f in by_name.values())}/{len(by_name)}" if by_name else "-"
        cells = [f"{by_name[n]['fuel']:,} / {by_name[n]['median_us']}" if n in by_name else "-"
                 for n in fixtures]
        lines.append(" | ".join([row["row"], row["lang"], f"{row['module_bytes']:,}",
                                 str(row["dev_build_s"]), str(row["release_build_s"]), passed, *cells]))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks languages", description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="timed calls per fixture (default 50)")
    parser.add_argument("--no-extras", action="store_true", help="only the reading-time examples")
    options = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for directory in sorted(EXAMPLES.glob("reading-time-*")):
        if directory.is_dir() and directory != FIXTURES:
            rows.append(bench_project(directory.name, directory, fixtures=True, runs=options.runs))
    with tempfile.TemporaryDirectory(prefix="gn-scaffolds-") as tmp:
        if not options.no_extras:
            rows.append(bench_project("seo", EXAMPLES / "seo", fixtures=False, runs=options.runs))
            for label, directory in _scaffolds(Path(tmp)):
                rows.append(bench_project(label, directory, fixtures=False, runs=options.runs))
    document = {"benchmark": "languages", "python": platform.python_version(), "machine": platform.machine(),
                "cpus": os.cpu_count(), "load_before": load_before,
                "load_after": [round(x, 2) for x in os.getloadavg()], "rows": rows}
    print(json.dumps(document, indent=2))
    print()
    print(table(rows))
    print(f"({document['cpus']} CPUs, load average {load_before} before, {document['load_after']} after)")
    failed = [row["row"] for row in rows for f in row.get("fixtures", []) if not f["passed"]]
    if failed:
        print(f"\nfixtures failed in: {', '.join(sorted(set(failed)))}", file=sys.stderr)
    return 1 if failed else 0
