"""AssemblyScript plugins, built from source with the pinned compiler: the scaffold builds and runs
as generated, the reading-time example answers every fixture through the real runtime and host
functions on a real database, a trap names ``assembly/index.ts`` lines in every frame, and a project
without the compiler is a ToolchainMissing that says to run ``npm install``.

The compiler (``assemblyscript`` at ``ASSEMBLYSCRIPT_VERSION``) is npm-installed once per machine
into ``~/.cache/gonext-tests/assemblyscript-<version>/`` (a file lock keeps two xdist workers from
installing at once); each test project gets a ``node_modules`` symlink to it, which the builder
finds exactly as it finds a real ``npm install``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins.devtools import build_assemblyscript, builders, scaffold
from gonext_plugins.devtools.build_assemblyscript import ASSEMBLYSCRIPT_VERSION
from gonext_plugins.diagnostics import traps
from gonext_plugins.errors import PluginTrap, ToolchainMissing
from gonext_plugins.runtime import Runtime
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "plugins" / "reading-time-assemblyscript"
FIXTURES = REPO / "examples" / "plugins" / "reading-time-fixtures"
CACHE = Path(os.environ.get("GONEXT_TEST_CACHE", Path.home() / ".cache" / "gonext-tests"))


@pytest.fixture(scope="session")
def asc_modules() -> Path:
    """A ``node_modules`` holding the pinned assemblyscript, installed once and reused."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to build AssemblyScript plugins")
    home = CACHE / f"assemblyscript-{ASSEMBLYSCRIPT_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    modules = home / "node_modules"
    marker = modules / "assemblyscript" / "package.json"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file() or json.loads(marker.read_text())["version"] != ASSEMBLYSCRIPT_VERSION:
            (home / "package.json").write_text('{"private": true}\n')
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save",
                                   f"assemblyscript@{ASSEMBLYSCRIPT_VERSION}"],
                                  cwd=home, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                pytest.skip(f"npm install assemblyscript@{ASSEMBLYSCRIPT_VERSION}: {done.stderr[-500:]}")
    return modules


def with_compiler(project: Path, modules: Path) -> Path:
    """What `npm install` leaves in a project, as a link to the shared install."""
    (project / "node_modules").symlink_to(modules, target_is_directory=True)
    return project


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def __call__(self, plugin: str, level: int, message: str, source: str) -> None:
        self.lines.append((level, message))


# --- scaffold ----------------------------------------------------------------------------------


def test_scaffold_builds_and_runs_as_generated(tmp_path: Path, asc_modules: Path) -> None:
    project = tmp_path / "hello-as"
    written = scaffold.create(project, "assemblyscript")
    assert sorted(str(p.relative_to(project)) for p in written) == [
        ".gitignore", "README.md", "asconfig.json", "assembly/index.ts", "manifest.json", "package.json"]
    package = json.loads((project / "package.json").read_text())
    assert package["devDependencies"] == {"assemblyscript": ASSEMBLYSCRIPT_VERSION}
    built, checked = builders.build(with_compiler(project, asc_modules))
    assert built.lang == "assemblyscript" and not built.cached and built.map_path is not None
    assert set(checked.imports) <= {"env.gn_log", "env.gn_panic", "env.gn_time_ms", "env.gn_host_call"}
    assert {"gn_alloc", "gn_free", "gn_handle_hook", "gn_handle_job", "memory"} <= set(checked.exports)
    logs = Logs()
    with Runtime(log_sink=logs) as runtime:
        plugin = runtime.load(checked.wasm, name="hello-as")
        for _ in range(3):  # a reused instance answers the same
            assert plugin.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "hello-as"}]}
            html = plugin.invoke_filter("the_content", "<p>post</p>", {"id": 1})
            assert html == '<p>post</p><p class="hello-as-hello">Hello from Hello As!</p>'
        assert (0, "the_content: 11 characters in") in logs.lines
        assert plugin.invoke_filter("the_content", 42) == 42  # not HTML: unchanged
    assert builders.compile_project(project).cached  # nothing changed: asc is not run again


def test_release_build_is_smaller_and_still_runs(tmp_path: Path, asc_modules: Path) -> None:
    project = tmp_path / "rel"
    scaffold.create(project, "assemblyscript")
    with_compiler(project, asc_modules)
    dev = builders.compile_project(project).wasm_path.read_bytes()
    release = builders.compile_project(project, optimize="release", source_map=False)
    wasm = release.wasm_path.read_bytes()
    assert len(wasm) < len(dev) and b"sourceMappingURL" not in wasm
    with Runtime() as runtime:
        plugin = runtime.load(wasm, name="rel")
        assert plugin.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "rel"}]}


# --- the reading-time example against its fixtures -----------------------------------------------


@pytest.fixture(scope="session")
def example_wasm(tmp_path_factory: pytest.TempPathFactory, asc_modules: Path) -> bytes:
    project = tmp_path_factory.mktemp("as-example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("build", "node_modules"))
    built, _ = builders.build(with_compiler(project, asc_modules))
    return built.wasm_path.read_bytes()


def test_example_pins_the_same_compiler() -> None:
    package = json.loads((EXAMPLE / "package.json").read_text())
    assert package["devDependencies"] == {"assemblyscript": ASSEMBLYSCRIPT_VERSION}


FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


@pytest.mark.django_db
@pytest.mark.parametrize("fixture_path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_example_answers_every_fixture(fixture_path: Path, example_wasm: bytes,
                                       make_bundle: Callable[..., Any],
                                       django_capture_on_commit_callbacks: Any) -> None:
    from gonext_plugins import lifecycle, logs
    from gonext_plugins.host_functions.kv import kv_set
    from gonext_plugins.models import PluginKV, PluginLogEntry
    from gonext_plugins.registry import registry

    fixture = json.loads(fixture_path.read_text())
    manifest = json.loads((EXAMPLE / "manifest.json").read_text())
    slug = manifest["slug"]
    asked = manifest["capabilities"] + manifest.get("optionalCapabilities", [])
    # an install grants the required capabilities; "grants" decides the optional ones
    grants = sorted(set(manifest["capabilities"]) | set(fixture.get("grants", asked)))
    b = make_bundle(wasm=example_wasm, **manifest)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.install(b, grants, "tests", activate=True)
    if fixture.get("settings"):
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.settings.update(slug, fixture["settings"], "tests")
    loaded = registry.get(slug)
    assert loaded is not None
    for key, value in fixture.get("kv", {}).items():  # the store before the call, by the app's own kv.set
        kv_set(loaded, {"key": key, "value": value})
    logs.writer.reset()
    if fixture["kind"] == "filter":
        result = loaded.invoke("filter", fixture["hook"], fixture["value"], *fixture.get("args", []))
    else:
        result = loaded.invoke("action", fixture["hook"], *fixture.get("args", []))
    expect = fixture["expect"]
    assert result == expect["result"]
    if "kv" in expect:
        stored = dict(PluginKV.objects.filter(plugin_slug=slug).values_list("key", "value"))
        assert stored == expect["kv"]
    if "logs" in expect:
        logs.flush()
        lines = PluginLogEntry.objects.filter(plugin=slug, source="guest").order_by("id")
        assert [list(line) for line in lines.values_list("level", "message")] == expect["logs"]


def test_example_answers_unknown_hooks_and_bad_payloads(example_wasm: bytes) -> None:
    from gonext_plugins.errors import HookError

    with Runtime() as runtime:
        plugin = runtime.load(example_wasm, name="rt")
        with pytest.raises(HookError) as unknown:
            plugin.invoke_action("init")
        assert unknown.value.status == "unknown_hook"
        with pytest.raises(HookError) as bad:
            plugin.invoke_action("save_post", "not a post")
        assert bad.value.status == "bad_payload"


# --- trap reports ------------------------------------------------------------------------------

TRAP_SOURCE = '''
function crash(n: i32): i32 {
  const items = [1, 2, 3];
  return items[n]; // TRAP LINE
}

gn.action("wp_head", (hook: gn.Hook): gn.Value | null => {
  return gn.Value.obj().setInt("n", crash(hook.args.length + 5)); // CALL LINE
});
'''


def _line(path: Path, marker: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text)


def test_a_trap_maps_every_frame_to_the_project(tmp_path: Path, asc_modules: Path) -> None:
    project = tmp_path / "trapper"
    scaffold.create(project, "assemblyscript")
    index = project / "assembly" / "index.ts"
    text = index.read_text()
    head = text[:text.index('gn.action("wp_head"')]
    index.write_text(head + TRAP_SOURCE)
    _, checked = builders.build(with_compiler(project, asc_modules))
    with Runtime() as runtime:
        plugin = runtime.load(checked.wasm, name="trapper")
        with pytest.raises(PluginTrap) as info:
            plugin.invoke_action("wp_head")
    report = traps.inspect(info.value, checked.wasm)
    assert "Index out of range" in report.message
    frames = report.frames
    # the SDK's abort handler is hidden: the frame that called abort (the array's bounds check) is on top
    assert frames[0].position is not None and frames[0].position.source == "~lib/array.ts"
    assert all(f.position is not None for f in frames), report.text()  # every frame has a line
    ours = [f.position for f in frames if f.position is not None and f.position.source == "assembly/index.ts"]
    assert [p.line for p in ours] == [_line(index, "TRAP LINE"), _line(index, "CALL LINE")], report.text()
    assert "./plugin" not in report.text() and "abort.ts" not in report.text()
    assert f"assembly/index.ts:{_line(index, 'TRAP LINE')}:" in report.text()


# --- toolchain ---------------------------------------------------------------------------------


def test_missing_compiler_says_npm_install(tmp_path: Path) -> None:
    project = tmp_path / "no-modules"
    scaffold.create(project, "assemblyscript")
    with pytest.raises(ToolchainMissing) as info:
        builders.compile_project(project)
    assert "npm install" in (info.value.hint or "") and ASSEMBLYSCRIPT_VERSION in (info.value.hint or "")


def test_missing_node_says_install_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "no-node"
    scaffold.create(project, "assemblyscript")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a PATH with no node on it
    with pytest.raises(ToolchainMissing, match="node not found") as info:
        build_assemblyscript.build(project, project / "build" / "plugin.wasm", source_map=True, release=False,
                                   timeout=60)
    assert "nodejs.org" in (info.value.hint or "")


def test_rewritten_map_is_project_relative_and_hides_only_leading_abort_frames() -> None:
    from gonext_plugins.diagnostics.sourcemap import SourceMap, encode_vlq

    # offsets 10 -> abort.ts:1, 20 -> unmapped, 30 -> assembly/index.ts:5
    mappings = ",".join([encode_vlq([10, 0, 0, 0]), encode_vlq([10]), encode_vlq([10, 1, 4, 0])])
    raw = {"version": 3, "sourceRoot": "./plugin", "sources": [build_assemblyscript.ABORT_SOURCE,
                                                                "assembly/index.ts"],
           "sourcesContent": ["x", "y"], "names": [], "mappings": mappings}
    smap = SourceMap.parse(build_assemblyscript.rewrite_map(raw))
    assert smap.sources == [build_assemblyscript.ABORT_SOURCE, "assembly/index.ts"]
    assert smap.ignore_list == [0]
    assert str(smap.lookup_offset(25)) == f"{build_assemblyscript.ABORT_SOURCE}:1:1"  # not unmapped
    frames = traps.resolve_frames(["gnAbort@0xa", "crash@0x1e"], None, smap)
    assert [str(f.position) for f in frames] == ["assembly/index.ts:5:1"]
    only_abort = traps.resolve_frames(["gnAbort@0xa"], None, smap)
    assert len(only_abort) == 1  # nothing else to show: the handler's frame stays


# --- the guide, executed -------------------------------------------------------------------------

GUIDE = REPO / "docs" / "languages" / "assemblyscript.md"


def test_the_guide_pins_the_same_compiler() -> None:
    text = GUIDE.read_text()
    assert f"**{ASSEMBLYSCRIPT_VERSION}**" in text and f'"assemblyscript": "{ASSEMBLYSCRIPT_VERSION}"' in text


def test_the_guide_runs(tmp_path: Path, asc_modules: Path) -> None:
    """Every ```sh block, in order, as an author would type it (its own `npm install` included)."""
    import re
    import sys

    from tests.site.test_plugin_authors_doc import steps

    home, root = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    root.mkdir()
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the page says .venv/bin/python
    (root / "manage.py").symlink_to(REPO / "manage.py")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "NO_COLOR": "1"}
    blocks = [step for step in steps(GUIDE.read_text()) if step.command]
    assert len(blocks) == 4
    for step in blocks:
        assert step.command is not None
        done = subprocess.run(["bash", "-ec", step.command], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{step.command}\n{output}"
        if "expect" in step.attrs:
            assert re.search(step.attrs["expect"], output), f"{step.command}\n{output}"
    assert (home / "hello-as-0.1.0.gnplugin").is_file()
