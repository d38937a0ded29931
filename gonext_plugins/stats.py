"""Per-process call statistics for the admin changelist: calls and median latency per plugin.

Prometheus histograms give bucketed figures across processes; the changelist wants one honest
number per plugin without a Prometheus server. The runtime already counts every guest call and
keeps a bounded reservoir of recent latencies (``runtime.metrics.PluginStats``, updated under the
pool lock it holds anyway), so this module only reads them. The figures cover *this process since
it started* and the admin labels them so.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from .runtime.metrics import all_stats, existing_stats


@dataclass(frozen=True)
class Snapshot:
    """One plugin's figures: calls since the process started and the median of recent calls."""

    calls: int
    median_ms: float | None


class CallStats:
    """The admin's view of the runtime's per-plugin figures, with a reset for tests."""

    def __init__(self) -> None:
        self._baseline: dict[str, int] = {}  # counts at the last reset: runtime counters never go back
        self.started_at = time.time()

    def snapshot(self, slug: str) -> Snapshot:
        runtime = existing_stats(slug)
        if runtime is None:
            return Snapshot(0, None)
        calls = runtime.call_count() - self._baseline.get(slug, 0)
        recent = list(runtime.recent)
        return Snapshot(calls, statistics.median(recent) * 1000 if recent and calls else None)

    def reset(self) -> None:
        """Count from zero again (tests); Prometheus keeps its monotonic totals."""
        for runtime in all_stats():
            self._baseline[runtime.name] = runtime.call_count()
            runtime.recent.clear()
        self.started_at = time.time()


stats = CallStats()
