"""Build a plugin project of any supported language into ``<dir>/build/dev/plugin.wasm`` (the dev
loop) or ``<dir>/build/release/plugin.wasm`` (``pack``) and check it.

Why one module for five toolchains: the dev loop should not care what the author writes in. Each
builder runs the language's own compiler; a compiler that is not installed is a
:class:`ToolchainMissing` that says how to get it. Every output then goes through the same
post-processing: when the module carries DWARF (a Zig dev build, a Rust build with
``debug = true``) it becomes ``plugin.wasm.map`` beside the module and the debug sections are stripped; a
map the compiler wrote itself (AssemblyScript's ``--sourceMap``) is kept. With ``embed_map`` the
map is also embedded as a ``data:`` URL in the module's ``sourceMappingURL`` section, so a module
uploaded on its own still carries it (custom sections after the code move no code offset).

:func:`validate` then checks what an install would: the manifest (every problem at once) and
that the module loads in the runtime, before anything is uploaded. No Django here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from gonext_plugins import manifest as manifests
from gonext_plugins.devtools import build_assemblyscript as asbuild
from gonext_plugins.devtools import build_c, build_rust, build_wat, build_zig
from gonext_plugins.devtools import lang as langs
from gonext_plugins.devtools.fsutil import (
    output_path,
    run_tool,
    write_atomic,
)
from gonext_plugins.diagnostics import dwarf, sourcemap
from gonext_plugins.diagnostics.wasmbin import wasm_imports
from gonext_plugins.errors import BuildError, ManifestError, PluginError, PluginLoadError, ToolchainMissing
from gonext_plugins.runtime import Limits, Runtime

MANIFEST_NAME = "manifest.json"
DEFAULT_TIMEOUT = 600.0


@dataclass
class Built:
    """The output of a compile: where the module is and whether the compiler was skipped."""

    lang: str
    wasm_path: Path
    map_path: Path | None = None
    cached: bool = False
    seconds: float = 0.0


@dataclass
class Checked:
    """A build that passed :func:`validate`: the bytes an upload sends."""

    manifest: manifests.Manifest
    manifest_bytes: bytes
    wasm: bytes
    exports: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)


# --- compile ------------------------------------------------------------------------------------


def compile_project(project_dir: str | os.PathLike[str], lang: str = langs.AUTO, *,
                    source_map: bool = True, embed_map: bool = True, optimize: str | None = None,
                    release: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Built:
    """Detect (unless ``lang`` is given) and compile to :func:`output_path`: the fast dev build, or
    with ``release`` the optimized one for ``pack``. ``optimize`` overrides Zig's mode."""
    project = Path(project_dir).resolve()
    language = langs.detect(project, lang)
    started = time.perf_counter()
    out = output_path(project, release=release)
    out.parent.mkdir(parents=True, exist_ok=True)
    if language == "zig":
        cached = build_zig.build(project, out, source_map=source_map, release=release, timeout=timeout,
                                 optimize=optimize)
    elif language == "wat":
        cached = build_wat.build(project, out, source_map=source_map, release=release, timeout=timeout)
    elif language == "rust":
        cached = build_rust.build(project, out, source_map=source_map, release=release, timeout=timeout)
    elif language == "c":
        cached = build_c.build(project, out, source_map=source_map, release=release, timeout=timeout)
    elif language == "tinygo":
        cached = _build_tinygo(project, out, timeout=timeout)
    else:
        cached = asbuild.build(project, out, source_map=source_map, release=release, timeout=timeout)
    map_path = None
    if not cached:
        map_path = post_process(out, project, source_map=source_map, embed_map=embed_map)
    elif (out.with_name(out.name + ".map")).is_file():
        map_path = out.with_name(out.name + ".map")
    return Built(language, out, map_path, cached, time.perf_counter() - started)


def post_process(wasm_path: Path, project: Path, *, source_map: bool = True,
                 embed_map: bool = True) -> Path | None:
    """DWARF -> ``plugin.wasm.map`` + stripped module; keep a compiler-written map; optionally embed
    it. Returns the map's path (None without one)."""
    wasm = wasm_path.read_bytes()
    map_path = wasm_path.with_name(wasm_path.name + ".map")
    smap: sourcemap.SourceMap | None = None
    if sourcemap.custom_section(wasm, ".debug_line") is not None:
        smap = dwarf.from_dwarf(wasm, relative_to=project) if source_map else None
        wasm = sourcemap.strip_custom_sections(wasm, lambda name: name.startswith(".debug_"))
    elif source_map and map_path.is_file() and map_path.stat().st_mtime >= wasm_path.stat().st_mtime - 1:
        smap = sourcemap.SourceMap.parse(map_path.read_bytes())
    if smap is None:
        with contextlib.suppress(FileNotFoundError):
            map_path.unlink()
        if not source_map:
            wasm = sourcemap.strip_custom_sections(wasm, lambda name: name == "sourceMappingURL")
        write_atomic(wasm_path, wasm)
        return None
    text = smap.to_json()
    write_atomic(map_path, text.encode())
    url = sourcemap.data_url(text) if embed_map else map_path.name
    write_atomic(wasm_path, sourcemap.with_source_mapping_url(wasm, url))
    return map_path


def _fail(done: subprocess.CompletedProcess[str], cmd: list[str], what: str) -> BuildError:
    output = (done.stderr.strip() or done.stdout.strip())
    return BuildError(f"{what} failed (exit {done.returncode}):\n{output}", stderr=output, command=cmd)


def _build_tinygo(project: Path, out: Path, *, timeout: float) -> bool:
    tinygo = shutil.which("tinygo")
    if tinygo is None:
        raise ToolchainMissing("tinygo not found",
                               hint="install TinyGo 0.33 or later: https://tinygo.org/getting-started/install/")
    cmd = [tinygo, "build", "-target", "wasm-unknown", "-no-debug", "-o", str(out), "."]
    done = run_tool(cmd, project, timeout, "tinygo build")
    if done.returncode != 0:
        raise _fail(done, cmd, "tinygo build")
    return False


# --- validate -----------------------------------------------------------------------------------


def read_manifest(project_dir: str | os.PathLike[str]) -> tuple[bytes, manifests.Manifest]:
    """``manifest.json`` as bytes and validated; a ManifestError lists every problem."""
    path = Path(project_dir) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{path.name} is not JSON: {exc}") from exc
    return raw, manifests.validate(data)


def check_module(wasm: bytes, manifest: manifests.Manifest) -> tuple[list[str], list[str]]:
    """Load the module the way the host will (raises PluginLoadError); returns (exports, imports)."""
    limits = Limits(memory_pages=manifest.limits.memory_pages) if manifest.limits.memory_pages else None
    with Runtime() as runtime:
        plugin = runtime.load(wasm, name=manifest.slug, limits=limits)
        try:
            if manifest.jobs and not plugin.has_job:
                raise PluginLoadError("the manifest declares jobs but the module does not export "
                                      "gn_handle_job", plugin=manifest.slug)
            module: wasmtime.Module = plugin._module
            return ([e.name for e in module.exports], [f"{i.module}.{i.name}" for i in module.imports])
        finally:
            plugin.close()


def validate(project_dir: str | os.PathLike[str], wasm_path: str | os.PathLike[str] | None = None, *,
             release: bool = False, load: bool = True) -> Checked:
    """The manifest validates and the module loads; what an upload sends.

    ``load=False`` (the dev loop before an upload) only validates the module, without compiling
    it: the site compiles and shape-checks it on upload anyway and answers with the same typed
    error, and compiling a Debug build twice was a second or more of every edit -> served."""
    raw, manifest = read_manifest(project_dir)
    path = Path(wasm_path) if wasm_path is not None else output_path(project_dir, release=release)
    wasm = path.read_bytes()
    if not load:
        try:
            wasmtime.Module.validate(wasmtime.Engine(), wasm)
        except wasmtime.WasmtimeError as exc:
            raise PluginLoadError(f"invalid wasm module: {_first_line(exc)}", plugin=manifest.slug) from exc
        return Checked(manifest, raw, wasm, [], [f"{i.module}.{i.name}" for i in wasm_imports(wasm)])
    exports, imports = check_module(wasm, manifest)
    return Checked(manifest, raw, wasm, exports, imports)


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def build(project_dir: str | os.PathLike[str], lang: str = langs.AUTO,
          **options: object) -> tuple[Built, Checked]:
    """Compile then validate (the dev loop's build and validate phases in one call)."""
    built = compile_project(project_dir, lang, **options)  # type: ignore[arg-type]  # its own keywords, passed on
    return built, validate(project_dir, built.wasm_path)


__all__ = ["Built", "Checked", "PluginError", "ToolchainMissing", "build", "check_module", "compile_project",
           "read_manifest", "validate"]
