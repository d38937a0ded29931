"""Build a C plugin (written against the C SDK's single header ``gonext.h``) with ``zig cc``.

Why ``zig cc``: the ``ziglang`` package the Zig builds already use carries clang, lld and the
wasm32 targets, so a C plugin needs nothing else installed. Every top-level ``*.c`` file is compiled
into one module with ``--target=wasm32-freestanding`` (no libc: the SDK brings what it needs). A
project that wants WASI's libc asks for it with ``--target=wasm32-wasi`` in its ``compile_flags.txt``
(the file clangd reads too: one flag a line, appended to ours); it is then linked as a reactor.

Dev builds (``release=False``) are ``-O1 -g``: DWARF that ``builders.post_process`` turns into the
source map (a trap names ``main.c:LINE``). Release builds (``release=True``) are ``-Os`` and
stripped. Both are cached on content like Zig builds (``<out>.buildkey``). No Django here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

from gonext_plugins.devtools import zigbuild
from gonext_plugins.devtools.fsutil import (
    is_up_to_date,
    output_path,
    record_build_key,
    run_tool,
    staged_output,
)
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.diagnostics.wasmbin import wasm_imports
from gonext_plugins.errors import BuildError

SDK_HEADER = "gonext.h"
FLAGS_FILE = "compile_flags.txt"
FREESTANDING = "--target=wasm32-freestanding"
WASI_TARGETS = ("--target=wasm32-wasi", "--target=wasm32-wasip1")
WASI_MODULE = "wasi_snapshot_preview1"
STACK_SIZE = 64 * 1024
MAX_MEMORY_PAGES = 256
DEV_FLAGS = ("-O1", "-g")
RELEASE_FLAGS = ("-Os", "-s")
_SKIP_DIRS = frozenset({"build", ".zig-cache", "zig-cache", "node_modules"})
# clang's "main.c:12:5: error: ..." (the first one is the message's headline)
_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): (?:fatal )?error: (?P<text>.*)$", re.MULTILINE)


def sources(project: Path) -> list[Path]:
    """The top-level ``*.c`` files, sorted: the translation units of the module."""
    return sorted(p for p in project.iterdir() if p.is_file() and p.suffix == ".c")


def extra_flags(project: Path) -> list[str]:
    """The project's own flags from ``compile_flags.txt`` (blank lines and ``#`` comments skipped)."""
    path = project / FLAGS_FILE
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def wants_wasi(flags: list[str]) -> bool:
    return any(flag in WASI_TARGETS for flag in flags)


def compile_flags(project: Path, *, release: bool) -> list[str]:
    """Every flag but the inputs and the output (they go into the cache key as they are)."""
    extra = extra_flags(project)
    wasi = wants_wasi(extra)
    target = [] if wasi else [FREESTANDING]
    model = ["-mexec-model=reactor"] if wasi else ["-nostdlib", "-Wl,--no-entry"]
    return [
        *target, *(RELEASE_FLAGS if release else DEV_FLAGS), *model,
        "-std=c11", "-Wall", "-Wextra",
        "-I", str(sdk_dir("c")), "-I", ".",
        # The SDK's frames read "sdk/c/gonext.h:LINE" in a trap report, not this machine's path.
        f"-fdebug-prefix-map={sdk_dir('c')}=sdk/c",
        f"-Wl,-z,stack-size={STACK_SIZE}", f"-Wl,--max-memory={MAX_MEMORY_PAGES * zigbuild.WASM_PAGE}",
        *(f"-Wl,--export={name}" for name in zigbuild.EXPORTS),
        *extra,
    ]


def cache_key(project: Path, flags: list[str]) -> str:
    """sha256 over the compiler version, the flags, and every C source and header of the plugin and
    the SDK."""
    digest = hashlib.sha256()
    digest.update(f"zig cc {zigbuild.zig_version()}\0".encode())
    digest.update("\0".join(flags).encode() + b"\0")
    for label, root in (("plugin", project), ("sdk", sdk_dir("c"))):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            for filename in sorted(filenames):
                if filename.endswith((".c", ".h")) or filename == FLAGS_FILE:
                    path = Path(dirpath) / filename
                    digest.update(f"{label}:{path.relative_to(root).as_posix()}\0".encode())
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build(project: Path, out: Path, *, source_map: bool, release: bool, timeout: float) -> bool:
    """Compile ``project``'s C sources into ``out``; True when the cache answered (nothing compiled).
    ``source_map`` needs no flag of its own: the dev build's DWARF is the map's source."""
    del source_map  # post_process decides from the DWARF the dev build carries
    files = sources(project)
    if not files:
        raise BuildError(f"no .c file in {project}: a C plugin is built from its top-level *.c files")
    flags = compile_flags(project, release=release)
    names = [f.name for f in files]
    key = cache_key(project, [*flags, *names])
    if is_up_to_date(out, key):
        return True
    with staged_output(out) as tmp:
        # Relative inputs from the project directory: __FILE__ and the DWARF line table say "main.c".
        cmd = [*zigbuild.zig_command(), "cc", *flags, "-o", str(tmp), *names]
        done = run_tool(cmd, project, timeout, "zig cc")
        if done.returncode != 0:
            raise compile_error(done.stderr.strip() or done.stdout.strip(), cmd)
        check_imports(tmp.read_bytes(), project, cmd, wasi=wants_wasi(extra_flags(project)))
    record_build_key(out, key)
    return False


def compile_error(stderr: str, cmd: list[str]) -> BuildError:
    """A BuildError whose first line is the first ``file:line: error`` (what an editor jumps to)."""
    found = _DIAGNOSTIC.search(stderr)
    if found is not None:
        headline = f"{found['file']}:{found['line']}: {found['text']}"
    else:
        lines = stderr.splitlines()
        headline = lines[0] if lines else "zig cc failed"
    if "symbol exported via --export not found: gn_" in stderr:  # the SDK's half is missing
        headline += (" (the SDK's exports come from `#define GONEXT_IMPLEMENTATION` before "
                     "`#include \"gonext.h\"` in exactly one .c file: sdk/c/README.md)")
    return BuildError(f"C build failed: {headline}\n{stderr}", stderr=stderr, command=cmd)


def check_imports(wasm: bytes, project: Path, cmd: list[str], *, wasi: bool) -> None:
    """Fail the build, not the later load, when the module imports what ABI.md forbids."""
    for imp in wasm_imports(wasm):
        if imp.module == "env" and imp.name in zigbuild.ALLOWED_IMPORTS:
            continue
        if wasi and imp.module == WASI_MODULE:
            continue
        raise BuildError(
            f"{project.name} compiled to a module importing {imp.module}.{imp.name}; a plugin may import "
            f"only env.{{{', '.join(sorted(zigbuild.ALLOWED_IMPORTS))}}}"
            + (f" and {WASI_MODULE}" if wasi else
               " (add --target=wasm32-wasi to compile_flags.txt for WASI)"),
            command=cmd)


def main(argv: list[str] | None = None) -> int:
    """``python -m gonext_plugins.devtools.build_c PROJECT_DIR [-o OUT] [--release]``: the build
    ``plugin dev`` runs, or (``--release``) the optimized, stripped one to pack."""
    parser = argparse.ArgumentParser(prog="python -m gonext_plugins.devtools.build_c",
                                     description="Build a C gonext plugin into a .wasm module (cached).")
    parser.add_argument("project_dir", help="directory holding the plugin's *.c files")
    parser.add_argument("-o", "--out", help="output path (default: PROJECT_DIR/build/dev/plugin.wasm, "
                        "or PROJECT_DIR/build/release/plugin.wasm with --release)")
    parser.add_argument("--release", action="store_true", help="-Os and stripped, for `plugin pack`")
    args = parser.parse_args(argv)
    project = Path(args.project_dir).resolve()
    out = Path(args.out).resolve() if args.out else output_path(project, release=args.release)
    started = time.perf_counter()
    try:
        cached = build(project, out, source_map=not args.release, release=args.release, timeout=600)
    except BuildError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    note = "cached" if cached else f"{time.perf_counter() - started:.2f} s"
    print(f"{out} ({out.stat().st_size} bytes, {note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
