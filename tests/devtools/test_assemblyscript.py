"""AssemblyScript plugins, built from source with the pinned compiler: the scaffold builds and runs
as generated, the reading-time example answers unknown hooks and bad payloads (its fixtures are run
for every language by tests/test_reading_time_examples.py), a trap names ``assembly/index.ts``
lines in every frame, and a project without the compiler is a ToolchainMissing that says to run
``npm install``.

The compiler (``assemblyscript`` at ``ASSEMBLYSCRIPT_VERSION``) is npm-installed once per machine
(tests/conftest.py's ``asc_modules``); each test project gets a ``node_modules`` symlink to it,
which the builder finds exactly as it finds a real ``npm install``.
"""

from __future__ import annotations

import json
import os
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
from tests.conftest import REPO, with_compiler

EXAMPLE = REPO / "examples" / "plugins" / "reading-time-assemblyscript"


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
    release = builders.compile_project(project, release=True, source_map=False)
    wasm = release.wasm_path.read_bytes()
    assert len(wasm) < len(dev) and b"sourceMappingURL" not in wasm
    with Runtime() as runtime:
        plugin = runtime.load(wasm, name="rel")
        assert plugin.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "rel"}]}


# --- the reading-time example against its fixtures -----------------------------------------------


@pytest.fixture(scope="session")
def example_wasm(reading_time_build: Callable[[str], Any]) -> bytes:
    """The example's dev build, shared with tests/test_reading_time_examples.py (which runs it
    against every fixture)."""
    _, checked = reading_time_build("assemblyscript")
    wasm: bytes = checked.wasm
    return wasm


def test_example_pins_the_same_compiler() -> None:
    package = json.loads((EXAMPLE / "package.json").read_text())
    assert package["devDependencies"] == {"assemblyscript": ASSEMBLYSCRIPT_VERSION}


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
