"""Remembered results of a plugin's pure hooks: a guest body by the exact payload that produced it.

A hook the manifest declares ``"pure": true`` promises that its result depends only on its payload
(the envelope: kind, hook, value, arguments) and the plugin's own settings. The host holds it to
that promise as far as it can see: a call is remembered only when it made no host call but to a
``pure`` host function (``settings.get``), read no clock, wrote no log line and used no WASI
function (``HostContext.tainted``), and ended without an error. What it cannot see (a guest that
keeps a counter in its own memory) is the author's promise; the manifest docs say so.

The key is the payload itself, so two inputs share a result only when the guest would have read the
very same bytes. Bounded by bytes (payload + body per entry), oldest out first; an entry larger than
an eighth of the budget is not kept, so one huge page cannot flush the rest. :meth:`forget` (settings
or grants changed) bumps a generation under the lock, and a call that started before it cannot store
its result after it: an answer computed from the old settings never outlives them.
"""

from __future__ import annotations

import threading

ENTRY_OVERHEAD = 200
"""Bytes counted per entry beyond its payload and body (dict slot, two bytes objects' headers)."""

MISSING = object()
""":meth:`PureResults.get`'s answer when nothing is remembered (None is a remembered empty body)."""


class PureResults:
    """Bodies (``bytes``, or None for "no body") of pure hook calls by payload, ``max_bytes`` in all."""

    __slots__ = ("_bytes", "_entries", "_lock", "generation", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[bytes, bytes | None] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, payload: bytes) -> object:
        """The body remembered for ``payload`` (bytes or None), or :data:`MISSING`. Lock-free: the
        answers given are counted once, in the plugin's ``PluginStats.reused``."""
        return self._entries.get(payload, MISSING)

    def put(self, payload: bytes, body: bytes | None, generation: int) -> None:
        """Remember ``body`` for ``payload`` unless :meth:`forget` ran since ``generation`` was read
        (the call began before the settings changed) or the entry is too large to be worth it."""
        size = len(payload) + (len(body) if body is not None else 0) + ENTRY_OVERHEAD
        if size > self.max_bytes // 8:
            return
        with self._lock:
            if generation != self.generation or payload in self._entries:
                return
            entries = self._entries
            while entries and self._bytes + size > self.max_bytes:
                oldest = next(iter(entries))
                old_body = entries.pop(oldest)
                self._bytes -= len(oldest) + (len(old_body) if old_body is not None else 0) + ENTRY_OVERHEAD
            entries[payload] = body
            self._bytes += size

    def forget(self) -> None:
        """Drop every result and refuse those of calls already under way."""
        with self._lock:
            self.generation += 1
            self._entries = {}
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes
