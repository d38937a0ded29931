"""Per-process call statistics for the admin changelist: calls and median latency per plugin.

Prometheus histograms give bucketed figures across processes; the changelist wants one honest,
cheap number per plugin without a Prometheus server, so each process keeps a counter and a bounded
reservoir of its most recent latencies. The figures cover *this process since it started* and the
admin labels them so.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

RESERVOIR = 1024  # recent latencies kept per plugin: bounded memory, a median of recent behaviour


@dataclass(frozen=True)
class Snapshot:
    """One plugin's figures: calls since the process started and the median of recent calls."""

    calls: int
    median_ms: float | None


class PluginStats:
    """Thread-safe counters and latency reservoirs, keyed by plugin slug."""

    def __init__(self, reservoir: int = RESERVOIR) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._latencies: dict[str, deque[float]] = {}
        self._reservoir = reservoir
        self.started_at = time.time()

    def record(self, slug: str, seconds: float) -> None:
        """Count one call of ``slug`` that took ``seconds`` (faulted calls count too)."""
        with self._lock:
            self._calls[slug] = self._calls.get(slug, 0) + 1
            self._latencies.setdefault(slug, deque(maxlen=self._reservoir)).append(seconds)

    def snapshot(self, slug: str) -> Snapshot:
        with self._lock:
            calls = self._calls.get(slug, 0)
            recent = list(self._latencies.get(slug, ()))
        return Snapshot(calls, statistics.median(recent) * 1000 if recent else None)

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._calls.clear()
            self._latencies.clear()
            self.started_at = time.time()


stats = PluginStats()
