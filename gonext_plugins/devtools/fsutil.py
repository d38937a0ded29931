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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
