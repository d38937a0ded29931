"""``python -m benchmarks logs``: what plugin logging costs a hook call, and that a flood stays bounded.

1. Overhead: the same action call doing N ``gn_log`` calls (``tests/guests/log_flood.wat``), on two
   runtimes side by side: one with a no-op sink, one with the real sink (``logs.runtime_log_sink``,
   its background writer storing into a SQLite file and fanning out on the channel layer). Calls
   alternate between the two so neither gets a warmer machine. Rows: default settings (200 lines/s,
   burst 1000: in a tight loop almost every line is counted and dropped), and a row with the rate
   limit off, where every line takes the queued path and the writer works flat out beside the call,
   and a tight loop under the cluster-wide budget (``SHARED_CACHE``, here a LocMem cache).
   The target: a guest logging in a tight loop slows the call by at most 20% (default settings).
2. Memory: a sustained flood of 200,000 lines through the real sink, with the default limit and
   with the limit off (then only the queue bound holds): RSS and queue length before, at the
   peak and after, rows kept in the database, lines dropped.

Runs against a throwaway SQLite file (migrated here). Prints a JSON document, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

GUEST = Path(__file__).resolve().parent.parent / "tests" / "guests" / "log_flood.wat"
TARGET = 0.20


def _setup_django(tmp: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["MEDIA_ROOT"] = f"{tmp}/media"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


SHARED_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                 "bench-shared": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                  "LOCATION": "bench-shared-log-budget"}}
"""The cluster-wide row's caches: a LocMem cache named as ``SHARED_CACHE`` takes the shared
budget's path (leases, windows) without a server; Redis adds one round trip per lease."""


_overrides: list[Any] = []  # the settings override in force, undone before the next one


def _configure(rate: float | None, burst: float | None, shared: bool = False) -> None:
    """Set the log limits as ``override_settings`` would (the writer re-reads on the signal);
    ``shared``: the cluster-wide budget (``SHARED_CACHE``) in place of each process's bucket."""
    from django.test.utils import override_settings

    while _overrides:
        _overrides.pop().disable()
    values: dict[str, Any] = {} if rate is None else {"LOG_RATE": rate, "LOG_BURST": burst}
    if shared:
        override = override_settings(CACHES=SHARED_CACHES,
                                     GONEXT_PLUGINS={**values, "SHARED_CACHE": "bench-shared"})
    else:
        override = override_settings(GONEXT_PLUGINS=values)
    override.enable()
    _overrides.append(override)


def overhead(lines: int, calls: int, label: str) -> dict[str, Any]:
    """Median µs of one call logging ``lines`` lines, no-op sink vs real sink, interleaved."""
    from gonext_plugins import logs
    from gonext_plugins.runtime import Runtime

    wat = GUEST.read_text()
    quiet_rt = Runtime(log_sink=lambda *args: None)
    real_rt = Runtime(log_sink=logs.runtime_log_sink)
    quiet = quiet_rt.load(wat, name="bench-quiet")
    real = real_rt.load(wat, name=f"bench-{label}")
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {"noop": [], "real": []}
    for i in range(calls + calls // 10):
        order = (("noop", quiet), ("real", real)) if i % 2 else (("real", real), ("noop", quiet))
        for name, plugin in order:
            start = clock()
            plugin.invoke_action("flood", lines)
            if i >= calls // 10:  # the first tenth warms up (and spends the burst)
                samples[name].append(clock() - start)
    for closable in (quiet, real, quiet_rt, real_rt):
        closable.close()
    logs.flush(timeout=60)  # leave nothing queued for the next row
    noop_us = statistics.median(samples["noop"]) / 1000
    real_us = statistics.median(samples["real"]) / 1000
    return {
        "lines_per_call": lines, "calls": calls,
        "noop_sink_median_us": round(noop_us, 1), "real_sink_median_us": round(real_us, 1),
        "noop_sink_mean_us": round(statistics.fmean(samples["noop"]) / 1000, 1),
        "real_sink_mean_us": round(statistics.fmean(samples["real"]) / 1000, 1),
        "overhead": round(real_us / noop_us - 1, 3),
        "per_line_us": round((real_us - noop_us) / max(lines, 1), 3),
    }


def flood(total: int, label: str) -> dict[str, Any]:
    """``total`` lines through the real sink from a guest in a tight loop, 1,000 per call."""
    from gonext_plugins import logs
    from gonext_plugins.models import PluginLogEntry
    from gonext_plugins.runtime import Runtime

    runtime = Runtime(log_sink=logs.runtime_log_sink)
    plugin = runtime.load(GUEST.read_text(), name=f"flood-{label}")
    peak_queue, peak_rss = 0, _rss_mib()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_queue, peak_rss
        while not done.is_set():
            peak_queue = max(peak_queue, len(logs.writer.queue))
            peak_rss = max(peak_rss, _rss_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    logs.flush(timeout=60)  # start with an empty queue
    rss_before = _rss_mib()
    written_before = logs.writer.written
    watcher.start()
    start = time.perf_counter()
    for _ in range(total // 1000):
        plugin.invoke_action("flood", 1000)
    elapsed = time.perf_counter() - start
    done.set()
    watcher.join()
    queue_after_calls = len(logs.writer.queue)
    logs.flush(timeout=60)
    bucket = logs.writer.buckets.get(plugin.name)
    dropped = bucket.total_dropped if bucket else 0
    plugin.close()
    runtime.close()
    return {
        "lines": total, "seconds": round(elapsed, 2), "lines_per_second": round(total / elapsed),
        "rss_before_mib": rss_before, "rss_peak_mib": peak_rss, "rss_after_mib": _rss_mib(),
        "queue_peak": peak_queue, "queue_bound": logs.QUEUE_MAX, "queue_after_calls": queue_after_calls,
        "lines_written": logs.writer.written - written_before, "lines_dropped": dropped,
        "rows_kept": PluginLogEntry.objects.filter(plugin=plugin.name).count(),
    }


def run(calls: int, total: int) -> dict[str, Any]:
    from gonext_plugins import logs
    from gonext_plugins.conf import settings

    logs.writer.start()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "settings": {"LOG_RATE": settings.LOG_RATE, "LOG_BURST": settings.LOG_BURST,
                     "LOG_BACKLOG": settings.LOG_BACKLOG, "QUEUE_MAX": logs.QUEUE_MAX},
        "overhead": {},
        "flood": {},
    }
    rows = results["overhead"]
    _configure(None, None)
    rows["1 line, default limits"] = overhead(1, calls, "one")
    rows["100 lines, default limits"] = overhead(100, calls, "hundred")
    rows["1000 lines (tight loop), default limits"] = overhead(1000, calls // 4, "tight")
    _configure(None, None, shared=True)
    rows["1000 lines (tight loop), cluster-wide budget"] = overhead(1000, calls // 4, "tight-shared")
    _configure(1e12, 1e12)
    rows["100 lines, rate limit off"] = overhead(100, calls // 4, "unlimited")
    _configure(None, None)
    results["flood"]["default limits"] = flood(total, "default")
    _configure(1e12, 1e12)
    results["flood"]["rate limit off (queue bound only)"] = flood(total, "unlimited")
    _configure(None, None)
    tight = rows["1000 lines (tight loop), default limits"]["overhead"]
    growth = max(f["rss_peak_mib"] - f["rss_before_mib"] for f in results["flood"].values())
    results["verdict"] = {
        "tight_loop_overhead": tight, "target": TARGET, "overhead_met": tight <= TARGET,
        "queue_bounded": all(f["queue_peak"] <= logs.QUEUE_MAX for f in results["flood"].values()),
        "max_rss_growth_mib": round(growth, 1),
    }
    logs.writer.stop()
    return results


def table(results: dict[str, Any]) -> str:
    out = ["hook call logging N lines: no-op sink vs real sink (median µs)",
           f"  {'row':<42}{'no-op':>10}{'real':>10}{'overhead':>10}{'µs/line':>9}"]
    for label, row in results["overhead"].items():
        out.append(f"  {label:<42}{row['noop_sink_median_us']:>10.1f}{row['real_sink_median_us']:>10.1f}"
                   f"{row['overhead']:>+10.1%}{row['per_line_us']:>9.3f}")
    out.append("sustained flood through the real sink")
    out.append(f"  {'row':<36}{'lines/s':>9}{'RSS before':>11}{'peak':>7}{'after':>7}"
               f"{'queue peak':>11}{'written':>9}{'dropped':>9}{'kept':>6}")
    for label, f in results["flood"].items():
        out.append(f"  {label:<36}{f['lines_per_second']:>9}{f['rss_before_mib']:>11}{f['rss_peak_mib']:>7}"
                   f"{f['rss_after_mib']:>7}{f['queue_peak']:>11}{f['lines_written']:>9}"
                   f"{f['lines_dropped']:>9}{f['rows_kept']:>6}")
    v = results["verdict"]
    out.append(f"tight loop overhead {v['tight_loop_overhead']:+.1%} (target ≤ {v['target']:.0%}: "
               f"{'met' if v['overhead_met'] else 'NOT met'}); queue bounded: {v['queue_bounded']}; "
               f"max RSS growth {v['max_rss_growth_mib']} MiB")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks logs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2_000, help="timed calls per overhead row")
    parser.add_argument("--lines", type=int, default=200_000, help="lines per flood run")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gonext-bench-logs-") as tmp:
        _setup_django(tmp)
        results = run(args.calls, args.lines)
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print(table(results))
    v = results["verdict"]
    return 0 if v["overhead_met"] and v["queue_bounded"] else 1
