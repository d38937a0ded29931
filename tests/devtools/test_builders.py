"""Builders: output path, the WAT rules, missing toolchains with their fix, and local validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gonext_plugins.devtools import builders, sourcemap
from gonext_plugins.devtools.builders import ToolchainMissing
from gonext_plugins.errors import BuildError, ManifestError, PluginLoadError

MINIMAL = """(module (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) i64.const 0))"""


def manifest(**extra: object) -> str:
    data = {"apiVersion": "gonext.io/v1", "slug": "mini", "name": "Mini", "version": "1.0.0", "abi": 1,
            "capabilities": [], **extra}
    return json.dumps(data)


def wat_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_wat_builds_to_build_plugin_wasm(tmp_path: Path) -> None:
    project = wat_dir(tmp_path, {"plugin.wat": MINIMAL, "manifest.json": manifest()})
    built, checked = builders.build(project)
    assert built.wasm_path == tmp_path / "build" / "dev" / "plugin.wasm" and built.lang == "wat"
    assert checked.wasm == built.wasm_path.read_bytes() and checked.wasm.startswith(b"\0asm")
    assert checked.imports == [] and "gn_handle_hook" in checked.exports
    assert built.map_path is None and sourcemap.source_mapping_url(checked.wasm) is None


def test_several_wat_files_need_a_main_wat(tmp_path: Path) -> None:
    project = wat_dir(tmp_path, {"a.wat": MINIMAL, "b.wat": "(module)", "manifest.json": manifest()})
    with pytest.raises(BuildError, match=r"2 \.wat files .*a\.wat, b\.wat.* no main\.wat"):
        builders.compile_project(project)
    (tmp_path / "main.wat").write_text(MINIMAL)
    builders.build(project)


def test_wat_syntax_error(tmp_path: Path) -> None:
    project = wat_dir(tmp_path, {"plugin.wat": "(module (func (i32.bogus)))", "manifest.json": manifest()})
    with pytest.raises(BuildError, match=r"plugin\.wat does not compile"):
        builders.compile_project(project)


def test_manifest_problems_all_at_once(tmp_path: Path) -> None:
    bad = json.dumps({"apiVersion": "gonext.io/v1", "slug": "Bad Slug", "name": "x", "abi": 1,
                      "capabilities": []})
    project = wat_dir(tmp_path, {"plugin.wat": MINIMAL, "manifest.json": bad})
    with pytest.raises(ManifestError) as info:
        builders.build(project)
    paths = [path for path, _ in info.value.problems]
    assert "$.slug" in paths and "$.version" in paths
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ManifestError, match="not JSON"):
        builders.build(project)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="cannot read"):
        builders.build(project)


def test_module_must_load(tmp_path: Path) -> None:
    hook = '(func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) i64.const 0)'
    no_hook = MINIMAL.replace(hook, "")
    project = wat_dir(tmp_path, {"plugin.wat": no_hook, "manifest.json": manifest()})
    with pytest.raises(PluginLoadError, match="missing required export gn_handle_hook"):
        builders.build(project)


def test_jobs_need_gn_handle_job(tmp_path: Path) -> None:
    jobs = manifest(capabilities=["jobs.enqueue"], jobs=[{"name": "x.y"}])
    project = wat_dir(tmp_path, {"plugin.wat": MINIMAL, "manifest.json": jobs})
    with pytest.raises(PluginLoadError, match="declares jobs"):
        builders.build(project)


def test_memory_over_the_manifest_limit(tmp_path: Path) -> None:
    big = MINIMAL.replace('(memory (export "memory") 1)', '(memory (export "memory") 8)')
    project = wat_dir(tmp_path, {"plugin.wat": big, "manifest.json": manifest(limits={"memoryPages": 4})})
    with pytest.raises(PluginLoadError):
        builders.build(project)


@pytest.mark.parametrize(("files", "hint"), [
    ({"go.mod": "module x\n"}, "install TinyGo"),
    ({"asconfig.json": "{}"}, "install Node.js"),
])
def test_missing_toolchain_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              files: dict[str, str], hint: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    project = wat_dir(tmp_path, files)
    with pytest.raises(ToolchainMissing) as info:
        builders.compile_project(project)
    assert hint in info.value.hint and hint in info.value.message
    assert info.value.code == "toolchain_missing" and isinstance(info.value, BuildError)


def test_rust_needs_a_cdylib(tmp_path: Path) -> None:
    """Checked before any toolchain is looked for (rustc's discovery: tests/test_rust_plugins.py)."""
    wat_dir(tmp_path, {"Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\n'})
    with pytest.raises(BuildError, match="cdylib"):
        builders.compile_project(tmp_path)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_missing_assemblyscript(tmp_path: Path) -> None:
    wat_dir(tmp_path, {"asconfig.json": "{}"})
    with pytest.raises(ToolchainMissing, match=r"`npm install` in the plugin directory"):
        builders.compile_project(tmp_path)


def test_zig_rebuild_is_cached(zig_projects: dict[str, Path]) -> None:
    built = builders.compile_project(zig_projects["hello"])
    assert built.cached and built.map_path is not None  # not rebuilt (no timing: a busy machine is slow)


def test_zig_without_main(tmp_path: Path) -> None:
    wat_dir(tmp_path, {"build.zig": ""})
    with pytest.raises(BuildError, match=r"no main\.zig"):
        builders.compile_project(tmp_path)


def test_compiler_written_map_is_embedded(tmp_path: Path) -> None:
    """What AssemblyScript's --sourceMap leaves: plugin.wasm + plugin.wasm.map -> one module."""
    project = wat_dir(tmp_path, {"plugin.wat": MINIMAL, "manifest.json": manifest()})
    built = builders.compile_project(project)
    text = json.dumps({"version": 3, "sources": ["assembly/index.ts"], "names": [], "mappings": "AAAA"})
    built.wasm_path.with_name("plugin.wasm.map").write_text(text)
    assert builders.post_process(built.wasm_path, project) is not None
    smap, where = sourcemap.load_for_module(built.wasm_path.read_bytes())  # type: ignore[misc]
    assert smap.sources == ["assembly/index.ts"] and where == "sourceMappingURL (embedded)"
