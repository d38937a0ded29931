"""Where builds go, how files are written and how compilers are run, shared by the author's tools
(the builders of every language, the post-processing, the CLIs).

Why its own module: ``builders`` imports each ``build_<lang>`` module, so a helper they all use
cannot live in ``builders`` without an import cycle. No Django here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gonext_plugins.errors import BuildError

BUILD_DIR = "build"
DEV_DIR, RELEASE_DIR = "dev", "release"  # build/dev/ for the dev loop, build/release/ for pack
WASM_NAME = "plugin.wasm"


def output_path(project_dir: str | os.PathLike[str], *, release: bool = False) -> Path:
    """``build/dev/plugin.wasm`` (fast, with line tables) or ``build/release/plugin.wasm`` (what
    ``pack`` ships): separate, so neither build overwrites the other."""
    return Path(project_dir).resolve() / BUILD_DIR / (RELEASE_DIR if release else DEV_DIR) / WASM_NAME


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name and move into place: a reader (a watcher, an uploader) never
    sees half a file."""
    with staged_output(path) as tmp:
        tmp.write_bytes(data)


def build_key_file(output: Path) -> Path:
    """Where a build records the key (a digest of its inputs and flags) it was made from."""
    return output.with_name(output.name + ".buildkey")


def is_up_to_date(output: Path, key: str) -> bool:
    """True when ``output`` exists and was built from ``key``: the builder can skip the compiler."""
    key_file = build_key_file(output)
    return output.is_file() and key_file.is_file() and key_file.read_text().strip() == key


def record_build_key(output: Path, key: str) -> None:
    """Say that ``output`` (now in place) was built from ``key``."""
    build_key_file(output).write_text(key + "\n")


def forget_build_key(output: Path) -> None:
    """Drop the key, so the next build of ``output`` is not skipped (a builder that keeps no key, or
    one about to replace the output)."""
    with contextlib.suppress(FileNotFoundError):
        build_key_file(output).unlink()


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """A temporary path beside ``output`` for a compiler to write. It is moved over ``output`` only
    when the block ends without an exception, and deleted otherwise: a reader (the watcher, the
    uploader, a concurrent build) never sees half a module, nor a failed build's output."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}-", suffix=output.suffix, dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def run_tool(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run a compiler (``what`` names it in messages) and return its result, whatever its exit
    status; a timeout or a binary that cannot start is a :class:`BuildError`, never a traceback."""
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise BuildError(f"{what} timed out after {timeout:g} s", command=cmd, stderr=stderr) from exc
    except OSError as exc:
        raise BuildError(f"could not run {what} ({cmd[0]}): {exc}", command=cmd) from exc
