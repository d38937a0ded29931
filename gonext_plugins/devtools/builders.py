"""Build a plugin project of any supported language into ``<dir>/build/plugin.wasm`` and check it.

Why one module for five toolchains: the dev loop should not care what the author writes in. Each
builder runs the language's own compiler; a compiler that is not installed is a
:class:`ToolchainMissing` that says how to get it. Every output then goes through the same
post-processing: when the module carries DWARF (a Zig dev build, a Rust build with
``debug = true``) it becomes ``build/plugin.wasm.map`` and the debug sections are stripped; a
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from gonext_plugins import manifest as manifests
from gonext_plugins.devtools import build_rust, zigbuild
from gonext_plugins.devtools import lang as langs
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.diagnostics import dwarf, sourcemap
from gonext_plugins.errors import BuildError, ManifestError, PluginError, PluginLoadError, ToolchainMissing
from gonext_plugins.runtime import Limits, Runtime

BUILD_DIR = "build"
WASM_NAME = "plugin.wasm"
MANIFEST_NAME = "manifest.json"
# Zig dev builds keep the safety checks (bounds, overflow, unreachable -> a readable panic);
# `make demo` and zigbuild's CLI ship ReleaseFast.
DEV_ZIG_OPTIMIZE = "ReleaseSafe"
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


def output_path(project_dir: str | os.PathLike[str]) -> Path:
    return Path(project_dir).resolve() / BUILD_DIR / WASM_NAME


# --- compile ------------------------------------------------------------------------------------


def compile_project(project_dir: str | os.PathLike[str], lang: str = langs.AUTO, *,
                    source_map: bool = True, embed_map: bool = True, optimize: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> Built:
    """Detect (unless ``lang`` is given) and compile to ``build/plugin.wasm``."""
    project = Path(project_dir).resolve()
    language = langs.detect(project, lang)
    started = time.perf_counter()
    out = output_path(project)
    out.parent.mkdir(parents=True, exist_ok=True)
    if language == "zig":
        cached = _build_zig(project, out, source_map=source_map, optimize=optimize, timeout=timeout)
    elif language == "wat":
        cached = _build_wat(project, out)
    elif language == "rust":
        cached = build_rust.build(project, out, source_map=source_map,
                                  release=optimize not in (None, "Debug"), timeout=timeout)
    elif language == "tinygo":
        cached = _build_tinygo(project, out, timeout=timeout)
    else:
        cached = _build_assemblyscript(project, out, source_map=source_map, timeout=timeout)
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
        _write(wasm_path, wasm)
        return None
    text = smap.to_json()
    _write(map_path, text.encode())
    url = sourcemap.data_url(text) if embed_map else map_path.name
    _write(wasm_path, sourcemap.with_source_mapping_url(wasm, url))
    return map_path


def _write(path: Path, data: bytes) -> None:
    """Atomic write: a reader (or a watcher) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what} timed out after {timeout:g} s", command=cmd) from exc
    except OSError as exc:
        raise BuildError(f"could not run {cmd[0]}: {exc}", command=cmd) from exc


def _fail(done: subprocess.CompletedProcess[str], cmd: list[str], what: str) -> BuildError:
    output = (done.stderr.strip() or done.stdout.strip())
    return BuildError(f"{what} failed (exit {done.returncode}):\n{output}", stderr=output, command=cmd)


def _build_zig(project: Path, out: Path, *, source_map: bool, optimize: str | None, timeout: float) -> bool:
    """zigbuild's flags and cache; with ``source_map`` the compile keeps DWARF (no ``-fstrip``) and
    :func:`post_process` turns it into the map. Returns True when the cache answered."""
    if not (project / "main.zig").is_file():
        raise BuildError(f"no main.zig in {project}: Zig plugins are built from main.zig with the "
                         "gonext SDK (build.zig is not run)")
    mode = optimize or (DEV_ZIG_OPTIMIZE if source_map else zigbuild.DEFAULT_OPTIMIZE)
    if not source_map:
        key_file = out.with_name(out.name + ".buildkey")
        before = key_file.read_text() if key_file.is_file() else None
        zigbuild.build_zig(project, out, optimize=mode, timeout=timeout)
        return before is not None and key_file.read_text() == before and out.is_file()
    flags = [f for f in zigbuild.build_flags(optimize=mode) if f != "-fstrip"]
    sdk = sdk_dir("zig")
    key = zigbuild.cache_key(project, sdk, [*flags, "main=main.zig", "sourcemap"])
    key_file = out.with_name(out.name + ".buildkey")
    if out.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        return True
    fd, tmp_name = tempfile.mkstemp(prefix=".plugin-debug-", suffix=".wasm", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [*zigbuild.zig_command(), "build-exe", *flags, "--name", out.stem,
           "--cache-dir", str(out.parent / ".zig-cache"), f"-femit-bin={tmp}",
           "--dep", zigbuild.SDK_MODULE, f"-Mroot={project / 'main.zig'}",
           f"-M{zigbuild.SDK_MODULE}={sdk / (zigbuild.SDK_MODULE + '.zig')}"]
    try:
        done = _run(cmd, project, timeout, "zig build")
        if done.returncode != 0:
            stderr = done.stderr.strip()
            raise BuildError(f"zig build of {project / 'main.zig'} failed:\n{stderr}", stderr=stderr,
                             command=cmd)
        zigbuild._check_module(tmp.read_bytes(), project / "main.zig", cmd)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    key_file.write_text(key + "\n")
    return False


def _build_wat(project: Path, out: Path) -> bool:
    files = sorted(p for p in project.iterdir() if p.is_file() and p.suffix == ".wat")
    if not files:
        raise BuildError(f"no .wat file in {project}")
    if len(files) > 1:
        main = project / "main.wat"
        if not main.is_file():
            raise BuildError(f"{len(files)} .wat files in {project} ({', '.join(p.name for p in files)}) and "
                             "no main.wat; name the plugin's module main.wat")
        files = [main]
    source = files[0]
    try:
        wasm = wasmtime.wat2wasm(source.read_text(encoding="utf-8"))
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{source.name} does not compile:\n{exc}", stderr=str(exc)) from exc
    _write(out, bytes(wasm))
    with contextlib.suppress(FileNotFoundError):
        out.with_name(out.name + ".buildkey").unlink()
    return False


def _build_tinygo(project: Path, out: Path, *, timeout: float) -> bool:
    tinygo = shutil.which("tinygo")
    if tinygo is None:
        raise ToolchainMissing("tinygo not found",
                               hint="install TinyGo 0.33 or later: https://tinygo.org/getting-started/install/")
    cmd = [tinygo, "build", "-target", "wasm-unknown", "-no-debug", "-o", str(out), "."]
    done = _run(cmd, project, timeout, "tinygo build")
    if done.returncode != 0:
        raise _fail(done, cmd, "tinygo build")
    return False


def _build_assemblyscript(project: Path, out: Path, *, source_map: bool, timeout: float) -> bool:
    npx = shutil.which("npx")
    if npx is None:
        raise ToolchainMissing("npx not found", hint="install Node.js (https://nodejs.org), then run "
                               "`npm i -D assemblyscript` in the plugin directory")
    try:
        config = json.loads((project / "asconfig.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read asconfig.json: {exc}") from exc
    entries = [] if isinstance(config, dict) and config.get("entries") else ["assembly/index.ts"]
    cmd = [npx, "--no-install", "asc", *entries, "--config", "asconfig.json", "--outFile", str(out)]
    if source_map:
        cmd.append("--sourceMap")
    done = _run(cmd, project, timeout, "asc")
    if done.returncode != 0:
        text = done.stderr + done.stdout
        installed = (project / "node_modules" / "assemblyscript").is_dir()
        if not installed or "could not determine executable" in text:
            raise ToolchainMissing("the AssemblyScript compiler (asc) is not installed",
                                   hint="run `npm i -D assemblyscript` in the plugin directory", command=cmd)
        raise _fail(done, cmd, "asc")
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


def validate(project_dir: str | os.PathLike[str], wasm_path: str | os.PathLike[str] | None = None) -> Checked:
    """The manifest validates and the module loads; what an upload sends."""
    raw, manifest = read_manifest(project_dir)
    path = Path(wasm_path) if wasm_path is not None else output_path(project_dir)
    wasm = path.read_bytes()
    exports, imports = check_module(wasm, manifest)
    return Checked(manifest, raw, wasm, exports, imports)


def build(project_dir: str | os.PathLike[str], lang: str = langs.AUTO,
          **options: object) -> tuple[Built, Checked]:
    """Compile then validate (the dev loop's build and validate phases in one call)."""
    built = compile_project(project_dir, lang, **options)  # type: ignore[arg-type]  # its own keywords, passed on
    return built, validate(project_dir, built.wasm_path)


__all__ = ["Built", "Checked", "PluginError", "ToolchainMissing", "build", "check_module", "compile_project",
           "read_manifest", "validate"]
