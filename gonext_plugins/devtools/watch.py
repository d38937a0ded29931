"""Watch a plugin project and say when to rebuild: ignore rules plus a trailing debounce.

Why a debounce of our own: an editor's save is a burst (write a temp file, rename, touch a swap
file, ...) and "save all" is a bigger one; each burst must be one rebuild, started 100 ms after the
*last* event (trailing), not the first. :class:`Debouncer` and :func:`is_ignored` are pure (fed with
paths and a clock) so they are tested without sleeping; :func:`watch` puts them on ``watchfiles``.
No Django here.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from gonext_plugins.devtools.extras import author_module

if TYPE_CHECKING:
    import watchfiles

DEBOUNCE_S = 0.1  # an editor's burst is a few ms; every 100 ms here is 100 ms of every edit -> served
# Directories that only ever hold output, dependencies or VCS data.
IGNORED_DIRS = frozenset({"build", "target", "node_modules", ".git", ".hg", ".svn", ".zig-cache", "zig-cache",
                          "zig-out", "__pycache__", ".idea", ".vscode"})
# Editor and OS litter: vim swap/backup (*.swp, *~, 4913 = vim's write test), emacs lock/autosave
# (.#x, #x#), JetBrains safe-write, Kate, LibreOffice locks, macOS and Windows metadata, temp files.
IGNORED_FILES = ("*.swp", "*.swo", "*.swx", "*.swpx", "*~", ".#*", "#*#", "4913", "*.tmp", "*.temp",
                 ".DS_Store", "._*", "Thumbs.db", "desktop.ini", "*___jb_tmp___", "*___jb_old___",
                 "sed??????",  # GNU sed -i's temporary copy
                 "*.kate-swp", ".~lock.*#", "*.orig", "*.rej", ".goutputstream-*", "*.crdownload")


def is_ignored(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> bool:
    """True for paths a rebuild must not follow: under an ignored directory (relative to ``root``
    when given), or an editor/OS temp file."""
    p = PurePath(path)
    if root is not None:
        with contextlib.suppress(ValueError):  # outside the root: judged by its own name
            p = p.relative_to(root)
    if any(part in IGNORED_DIRS for part in p.parts[:-1]):
        return True
    name = p.name
    if name in IGNORED_DIRS:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_FILES)


class Debouncer:
    """Collects changed paths; :meth:`pop` hands them over once ``delay`` passed since the last one.

    ``clock`` is injectable (a fake in tests). Ignored paths never arm the timer.
    """

    def __init__(self, delay: float = DEBOUNCE_S, *, root: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.root = root
        self.clock = clock
        self.pending: set[str] = set()
        self.deadline: float | None = None

    def feed(self, paths: Iterable[str | os.PathLike[str]], now: float | None = None) -> bool:
        """Add changed paths; returns True when any counted (and so pushed the deadline back)."""
        kept = {os.fspath(p) for p in paths if not is_ignored(p, self.root)}
        if not kept:
            return False
        self.pending |= kept
        self.deadline = (self.clock() if now is None else now) + self.delay
        return True

    def pop(self, now: float | None = None) -> set[str] | None:
        """The batch when its quiet period is over, else None."""
        if self.deadline is None or (self.clock() if now is None else now) < self.deadline:
            return None
        batch, self.pending, self.deadline = self.pending, set(), None
        return batch

    def wait_time(self, now: float | None = None) -> float | None:
        """Seconds until the batch is due (None: nothing pending)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - (self.clock() if now is None else now))


def watch(root: str | os.PathLike[str], *, delay: float = DEBOUNCE_S,
          stop_event: threading.Event | None = None, poll_ms: int = 50,
          force_polling: bool | None = None) -> Iterator[set[str]]:
    """Yield one set of changed paths per burst (``delay`` after its last event), until stopped.

    ``watchfiles`` yields every ``poll_ms`` (``yield_on_timeout``) so the trailing deadline is
    checked even when nothing else happens. Ctrl-C raises KeyboardInterrupt as usual.
    """

    files: Any = author_module("watchfiles", "plugin dev --watch")  # imported here: an optional package
    root_path = Path(root).resolve()
    debouncer = Debouncer(delay, root=root_path)

    def keep(change: watchfiles.Change, path: str) -> bool:
        return not is_ignored(path, root_path)

    for changes in files.watch(root_path, watch_filter=keep, debounce=max(poll_ms * 4, 200),
                               step=poll_ms, rust_timeout=poll_ms, yield_on_timeout=True,
                               stop_event=stop_event, force_polling=force_polling):
        debouncer.feed(path for _, path in changes)
        batch = debouncer.pop()
        if batch:
            yield batch
