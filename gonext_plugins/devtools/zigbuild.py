"""Build a Zig plugin (written against the Zig SDK's ``gonext.zig``, see ``sdks``) into an ABI.md
WebAssembly module.

``build_zig(project_dir)`` compiles ``project_dir/main.zig`` with the ``ziglang`` package's compiler
(``python -m ziglang build-exe -target wasm32-freestanding ...``) into
``project_dir/build/release/plugin.wasm`` (the release build ``pack`` ships; the dev loop's
builds go to ``build/dev/``, see ``build_zig``). The build is cached on content: the key is a
sha256 over every ``.zig`` source of the plugin and the SDK, the compiler version and the flags,
stored next to the output as ``plugin.wasm.buildkey``; an unchanged plugin is not rebuilt. No
Django here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from gonext_plugins.devtools.fsutil import is_up_to_date, record_build_key, run_tool, staged_output
from gonext_plugins.devtools.sdks import sdk_dir as find_sdk
from gonext_plugins.diagnostics.wasmbin import wasm_imports
from gonext_plugins.errors import BuildError

SDK_MODULE = "gonext"  # plugins write @import("gonext")
WASM_PAGE = 65536
# ABI.md's exports; the SDK's `gn.plugin(@This())` defines all four.
EXPORTS = ("gn_alloc", "gn_free", "gn_handle_hook", "gn_handle_job")
ALLOWED_IMPORTS = frozenset({"gn_log", "gn_panic", "gn_time_ms", "gn_host_call"})
OPTIMIZE_MODES = ("Debug", "ReleaseSafe", "ReleaseFast", "ReleaseSmall")
# Hooks run on every page view: speed beats size (the SEO plugin: ~30% fewer instructions per call
# than ReleaseSmall, 130 KB instead of 95 KB, far under the 10 MiB bundle cap).
DEFAULT_OPTIMIZE = "ReleaseFast"
DEFAULT_OUT = Path("build", "release", "plugin.wasm")  # what `plugin pack DIR` ships
_SKIP_DIRS = frozenset({"build", ".zig-cache", "zig-cache", "zig-out"})


def zig_command() -> list[str]:
    """The compiler as a command prefix: the ``ziglang`` package run by this interpreter."""
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError("zig not installed: pip install ziglang")
    return [sys.executable, "-m", "ziglang"]


@lru_cache(maxsize=1)
def zig_version() -> str:
    """The compiler's version string, e.g. ``0.17.1`` (part of the cache key)."""
    cmd = [*zig_command(), "version"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"zig not usable: {exc}", command=cmd) from exc
    if done.returncode != 0:
        raise BuildError("zig not usable: `zig version` failed", stderr=done.stderr, command=cmd)
    return done.stdout.strip()


def _sources(root: Path) -> Iterable[Path]:
    """Every ``.zig`` file under ``root``, skipping build output and compiler caches."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for filename in sorted(filenames):
            if filename.endswith(".zig"):
                yield Path(dirpath) / filename


def cache_key(project_dir: Path, sdk_dir: Path, flags: list[str]) -> str:
    """sha256 over the plugin's and the SDK's sources, the compiler version and the flags."""
    digest = hashlib.sha256()
    digest.update(f"zig {zig_version()}\0".encode())
    digest.update("\0".join(flags).encode() + b"\0")
    for label, root in (("plugin", project_dir), ("sdk", sdk_dir)):
        for path in _sources(root):
            rel = path.relative_to(root).as_posix()
            digest.update(f"{label}:{rel}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_flags(*, optimize: str = DEFAULT_OPTIMIZE, max_memory_pages: int = 256,
                stack_size: int = 64 * 1024, debug_info: bool = False) -> list[str]:
    """The flags that do not depend on paths (they go into the cache key as they are).

    ``debug_info`` keeps DWARF (no ``-fstrip``): the dev build turns it into a source map.

    No ``--initial-memory``: the linker then declares just what data + stack need (a few pages),
    far under the host's cap. ``--max-memory`` bounds growth in the module itself as well.
    """
    if optimize not in OPTIMIZE_MODES:
        raise BuildError(f"optimize must be one of {', '.join(OPTIMIZE_MODES)}, got {optimize!r}")
    if stack_size <= 0 or stack_size % 16:
        raise BuildError(f"stack_size must be a positive multiple of 16, got {stack_size}")
    if not 1 <= max_memory_pages <= 65536:
        raise BuildError(f"max_memory_pages must be within 1..65536, got {max_memory_pages}")
    return [
        "-target", "wasm32-freestanding",
        "-fno-entry",  # a library-like module: the host calls the exports, there is no _start
        "-O", optimize,
        *(() if debug_info else ("-fstrip",)),
        "--stack", str(stack_size),
        f"--max-memory={max_memory_pages * WASM_PAGE}",
        *(f"--export={name}" for name in EXPORTS),
    ]


def build_zig(project_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
              sdk_dir: str | os.PathLike[str] | None = None, optimize: str = DEFAULT_OPTIMIZE,
              main: str = "main.zig", max_memory_pages: int = 256, stack_size: int = 64 * 1024,
              force: bool = False, timeout: float = 600, debug_info: bool = False) -> Path:
    """Compile ``project_dir/main`` into ``out`` (default ``project_dir/build/release/plugin.wasm``).

    Returns the output path. Skips the compiler when the cache key stored next to ``out`` matches;
    ``force`` rebuilds anyway. Raises ``BuildError`` with the compiler's stderr on failure.
    """
    project = Path(project_dir).resolve()
    sdk = Path(sdk_dir).resolve() if sdk_dir is not None else find_sdk("zig")
    output = Path(out).resolve() if out is not None else project / DEFAULT_OUT
    source = project / main
    if not source.is_file():
        raise BuildError(f"no {main} in {project}")
    if not (sdk / f"{SDK_MODULE}.zig").is_file():
        raise BuildError(f"no {SDK_MODULE}.zig in SDK directory {sdk}")
    flags = build_flags(optimize=optimize, max_memory_pages=max_memory_pages, stack_size=stack_size,
                        debug_info=debug_info)
    # `main` is part of the key: the same tree built from another root file is another module.
    key = cache_key(project, sdk, [*flags, f"main={main}"])
    if not force and is_up_to_date(output, key):
        return output

    with staged_output(output) as tmp:  # a concurrent reader never sees half a module
        cmd = [
            *zig_command(), "build-exe", *flags,
            "--name", output.stem,
            "--cache-dir", str(output.parent / ".zig-cache"),
            f"-femit-bin={tmp}",
            # Module graph: the root module (the plugin) may @import("gonext").
            "--dep", SDK_MODULE, f"-Mroot={source}", f"-M{SDK_MODULE}={sdk / (SDK_MODULE + '.zig')}",
        ]
        done = run_tool(cmd, project, timeout, "zig build")
        if done.returncode != 0:
            stderr = done.stderr.strip()
            raise BuildError(f"zig build of {source} failed:\n{stderr}", stderr=stderr, command=cmd)
        _check_module(tmp.read_bytes(), source, cmd)
    record_build_key(output, key)
    return output



def _check_module(wasm: bytes, source: Path, cmd: list[str]) -> None:
    """Fail the build, not the later load, when the module imports something ABI.md forbids."""
    for imp in wasm_imports(wasm):
        module, name = imp.module, imp.name
        if module != "env" or name not in ALLOWED_IMPORTS:
            raise BuildError(
                f"{source} compiled to a module importing {module}.{name}; a plugin may import only "
                f"env.{{{', '.join(sorted(ALLOWED_IMPORTS))}}} (no WASI, no undefined externs)",
                command=cmd)


def main(argv: list[str] | None = None) -> int:
    """``python -m gonext_plugins.devtools.zigbuild PROJECT_DIR [-o OUT] [-O MODE] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m gonext_plugins.devtools.zigbuild",
                                     description="Build a Zig gonext plugin into plugin.wasm (cached).")
    parser.add_argument("project_dir", help="directory holding main.zig")
    parser.add_argument("-o", "--out", help="output path (default: PROJECT_DIR/build/release/plugin.wasm)")
    parser.add_argument("-O", "--optimize", default=DEFAULT_OPTIMIZE, choices=OPTIMIZE_MODES)
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache key matches")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        out = build_zig(args.project_dir, args.out, optimize=args.optimize, force=args.force)
    except BuildError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes, {time.perf_counter() - started:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
