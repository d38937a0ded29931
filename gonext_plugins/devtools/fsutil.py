"""File writes the author's tools share (the builders of every language, the post-processing).

Why its own module: ``builders`` imports each ``build_<lang>`` module, so a helper they all use
cannot live in ``builders`` without an import cycle. No Django here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
