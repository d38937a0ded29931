"""Remembered results of a plugin's pure hooks: a guest body by the exact payload that produced it.

A hook the manifest declares ``"pure": true`` promises that its result depends only on its payload
(the envelope: kind, hook, value, arguments) and the plugin's own settings. The host holds it to
that promise as far as it can see: a call is remembered only when it made no host call but to a
``pure`` host function (``settings.get``), read no clock, wrote no log line and used no WASI
function (``HostContext.tainted``), and ended without an error. What it cannot see (a guest that
keeps a counter in its own memory) is the author's promise; the manifest docs say so.

The key is the payload itself, so two inputs share a result only when the guest would have read the
very same bytes. Bounded by bytes (payload + body per entry); an entry larger than an eighth of the
budget is not kept, so one huge page cannot flush the rest. Eviction is a second chance (CLOCK):
the oldest entry goes first unless it was answered from since it was stored or last passed over,
then it moves to the back. Why not first in, first out: the post everyone reads was stored first,
and would be the first to go. Why not a strict LRU: it reorders on every answer, under the lock;
here an answer only sets its entry's flag, without one. :meth:`forget` (settings
or grants changed) bumps a generation under the lock, and a call that started before it cannot store
its result after it: an answer computed from the old settings never outlives them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

SECOND_CHANCES_PER_PUT = 32
"""At most this many answered entries are moved to the back by one :meth:`PureResults.put` before
the oldest goes regardless: a store whose every entry was just read (a crawl) costs one put a
bounded sweep, not one over the whole store under the lock."""

ENTRY_OVERHEAD = 280
"""Bytes counted per entry beyond its payload and body (dict slot, two bytes objects' headers, the
entry object that holds the body and its flag)."""

MISSING = object()
""":meth:`PureResults.get`'s answer when nothing is remembered (None is a remembered empty body)."""


class _Entry:
    __slots__ = ("answered", "body")

    def __init__(self, body: bytes | None) -> None:
        self.body = body
        self.answered = False  # answered from since it was stored or last passed over


class PureResults:
    """Bodies (``bytes``, or None for "no body") of pure hook calls by payload, ``max_bytes`` in all."""

    __slots__ = ("_bytes", "_entries", "_lock", "generation", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Ordered for eviction; an OrderedDict moves an entry to the back in O(1) (a dict would
        # leave a deleted slot at the front for every entry passed over, and each later look for
        # the oldest would scan past them all).
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, payload: bytes) -> object:
        """The body remembered for ``payload`` (bytes or None), or :data:`MISSING`. Lock-free: the
        flag is one attribute store, and the answers given are counted once, in the plugin's
        ``PluginStats.reused``."""
        entry = self._entries.get(payload)
        if entry is None:
            return MISSING
        entry.answered = True
        return entry.body

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
            chances = min(len(entries), SECOND_CHANCES_PER_PUT)  # the loop ends
            while entries and self._bytes + size > self.max_bytes:
                oldest, entry = next(iter(entries.items()))
                if entry.answered and chances:
                    chances -= 1
                    entry.answered = False
                    entries.move_to_end(oldest)  # to the back: answered from since it came in
                    continue
                del entries[oldest]
                old_body = entry.body
                self._bytes -= len(oldest) + (len(old_body) if old_body is not None else 0) + ENTRY_OVERHEAD
            entries[payload] = _Entry(body)
            self._bytes += size

    def forget(self) -> None:
        """Drop every result and refuse those of calls already under way."""
        with self._lock:
            self.generation += 1
            self._entries = OrderedDict()
            self._bytes = 0

    def __contains__(self, payload: bytes) -> bool:
        """Whether a result is remembered, without counting as an answer (no second chance)."""
        return payload in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes
