"""Dev and release builds: separate output paths, Zig's modes, and ``plugin pack DIRECTORY``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gonext_plugins import bundle
from gonext_plugins.devtools import build_zig, builders, scaffold
from gonext_plugins.diagnostics import sourcemap
from gonext_plugins.errors import PluginLoadError
from gonext_plugins.runtime import Runtime


def test_output_paths_are_separate(tmp_path: Path) -> None:
    dev, release = builders.output_path(tmp_path), builders.output_path(tmp_path, release=True)
    assert dev == tmp_path.resolve() / "build" / "dev" / "plugin.wasm"
    assert release == tmp_path.resolve() / "build" / "release" / "plugin.wasm"


def test_wat_release_does_not_touch_the_dev_build(tmp_path: Path) -> None:
    scaffold.create(tmp_path / "proj", "wat")
    project = tmp_path / "proj"
    dev = builders.compile_project(project)
    dev_bytes = dev.wasm_path.read_bytes()
    release = builders.compile_project(project, release=True, source_map=False)
    assert release.wasm_path != dev.wasm_path and release.wasm_path.is_file()
    assert dev.wasm_path.read_bytes() == dev_bytes


def test_zig_dev_is_debug_with_a_map_and_release_is_optimized(zig_projects: dict[str, Path]) -> None:
    project = zig_projects["hello"]
    dev = builders.compile_project(project)  # the session fixture built it: the cache answers
    assert dev.cached and dev.map_path is not None
    dev_bytes = dev.wasm_path.read_bytes()
    release = builders.compile_project(project, release=True, source_map=False)
    assert release.wasm_path == builders.output_path(project, release=True) and release.map_path is None
    release_bytes = release.wasm_path.read_bytes()
    assert sourcemap.source_mapping_url(release_bytes) is None
    assert dev.wasm_path.read_bytes() == dev_bytes  # the release build left the dev build alone
    key = release.wasm_path.with_name("plugin.wasm.buildkey").read_text()
    assert key != dev.wasm_path.with_name("plugin.wasm.buildkey").read_text()
    # Debug keeps every check and inlines nothing: a bigger module than the optimized release
    assert len(release_bytes) < len(dev_bytes) and build_zig.DEV_OPTIMIZE == "Debug"
    for wasm in (dev_bytes, release_bytes):
        with Runtime() as runtime:
            plugin = runtime.load(wasm, name="hello")
            try:
                assert plugin.invoke_action("wp_head") is not None
            finally:
                plugin.close()


def _pack(*args: str) -> str:
    out = io.StringIO()
    call_command("plugin", "pack", *args, stdout=out)
    return out.getvalue()


def test_pack_a_project_directory_builds_release(tmp_path: Path) -> None:
    project = tmp_path / "packed"
    scaffold.create(project, "wat")
    printed = _pack(str(project))
    manifest = json.loads((project / "manifest.json").read_text())
    target = project / "build" / "release" / f"{manifest['slug']}-{manifest['version']}.gnplugin"
    assert f"packed {target}" in printed and "release" in printed
    read = bundle.read(target.read_bytes(), require_signature=False)
    assert read.wasm == (project / "build" / "release" / "plugin.wasm").read_bytes()
    assert not (project / "build" / "dev").exists()  # pack never builds (or ships) the dev build
    other = tmp_path / "elsewhere.gnplugin"
    _pack(str(project), "--out", str(other))
    assert bundle.read(other.read_bytes(), require_signature=False).manifest.slug == manifest["slug"]


@pytest.mark.parametrize("args", [
    ("DIR", "--manifest", "m.json"),  # both forms at once
    ("--manifest", "m.json"),  # the old form, incomplete
])
def test_pack_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    scaffold.create(tmp_path / "proj", "wat")
    argv = [str(tmp_path / "proj") if a == "DIR" else a for a in args]
    with pytest.raises(CommandError, match="usage:") as info:
        _pack(*argv)
    assert info.value.returncode == 2


def test_pack_a_project_that_does_not_build_is_refused(tmp_path: Path) -> None:
    scaffold.create(tmp_path / "proj", "wat")
    (tmp_path / "proj" / "plugin.wat").write_text("(module (func (i32.bogus)))")
    with pytest.raises(CommandError, match=r"build_error: plugin\.wat does not compile") as info:
        _pack(str(tmp_path / "proj"))
    assert info.value.returncode == 1


def test_validate_without_loading_checks_the_module_but_compiles_nothing(tmp_path: Path) -> None:
    """What ``plugin dev`` does before an upload: the site compiles the module, so only validate."""
    project = tmp_path / "proj"
    scaffold.create(project, "wat")
    built = builders.compile_project(project)
    checked = builders.validate(project, built.wasm_path, load=False)
    assert checked.imports == ["env.gn_log"] and checked.wasm == built.wasm_path.read_bytes()
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(built.wasm_path.read_bytes()[:-3])  # cut inside the last section
    with pytest.raises(PluginLoadError, match="invalid wasm module") as info:
        builders.validate(project, broken, load=False)
    assert info.value.code == "load_error" and info.value.plugin == "proj"
