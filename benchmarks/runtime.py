"""``python -m benchmarks runtime``: the hook hot path, side by side with Extism's Python SDK.

Every row does the same guest work: a filter on a ~140-byte string that upper-cases it, with the JSON
envelope in and ``{"value": ...}`` out (guests in ``benchmarks/guests/``, sharing one transform).
Rows: gonext (fast dispatcher under both GIL policies, slow dispatcher, through the public API),
Extism's Python SDK, a naive wasmtime-py host (``Func.__call__``, ``Memory.read/write``, fresh
``gn_alloc`` per call) and a plain Python function; the guest instructions (fuel) one filter call
costs. Then load time (cold vs compiled cache), pool checkout overhead, and the thread rows: calls
per second with 1, 2, 4 and 8 threads calling one plugin, for the tiny filter and for a ~0.5 ms
guest call of arithmetic (``guests/mix_gonext.wat``), each under ``gil_policy="release"`` and
``"adaptive"`` side by side, each with its ratio to one thread (the figure that matters: below 1.0
threads make tiny calls slower, and long calls should approach the number of cores) and the process
CPU time per call (which a busy machine disturbs less than the wall clock). The thread rows' plugins
allow 8 instances, so no row waits for the pool. Then two threads against one again, in alternating
blocks (the median of their ratios, which a shared machine's slow spells move less), each call
beside its ceiling, all taking turns within each block: the tiny call beside plain Python (work
that holds the GIL, as a tiny call does: two threads share one interpreter); the ~0.5 ms call and a
bare countdown loop (``guests/spin_gonext.wat``) each beside wasmtime-py alone on the same guest
(no host around it); and C work that releases the GIL and shares nothing (sha256: the machine's own
ceiling for two threads at that moment). Last, the tiny call and plain Python again with the
process pinned to one CPU (:func:`one_cpu`): what the two rows lose unpinned, and only then, is the
GIL moving between cores. Prints a JSON document, then a table. Takes about two minutes.

The host-call rows time one ``gn_host_call`` round trip (trampoline, capability check, payload read
and decode, the host function, result encode, the ``gn_alloc`` that places it, the write back):
the guest ``tests/guests/hostcall_loop.wat`` makes 100 host calls per hook call, and a row is the
hook call's time less that of the same hook making none, over 100. Functions: ``settings.get``'s
shape (its payload rule, ``host_rules.settings_key``, over four settings; the app's own function
needs Django) and a no-op, the path's own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import wasmtime

from benchmarks import guest_fuel

GUESTS = Path(__file__).parent / "guests"
HOOK = "the_content"
VALUE = ("The quick brown fox jumps over the lazy dog; a filter upper-cases this paragraph of post "
         "content so that every host does the same work!")[:140].ljust(140, ".")
EXPECTED = VALUE.upper()

THREADS = (1, 2, 4, 8)

HOSTCALL_LOOP = Path(__file__).resolve().parents[1] / "tests" / "guests" / "hostcall_loop.wat"
HOSTCALLS_PER_HOOK = 100  # what hostcall_loop.wat makes per hook call
SETTINGS = {"title_suffix": " | My site", "twitter": "@site", "og_default_image": "https://example.com/og.png",
            "jsonld": True}


def _wat(name: str) -> str:
    return (GUESTS / name).read_text()


def measure(fn: Callable[[], Any], calls: int, warmup: int) -> dict[str, float]:
    """Per-call latency in µs (median, p99, mean) over ``calls`` timed one by one."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        fn()
        samples[i] = clock() - start
    samples.sort()
    return {
        "median_us": round(samples[calls // 2] / 1000, 2),
        "p99_us": round(samples[min(calls - 1, (calls * 99) // 100)] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
        "calls": calls,
    }


# --- the rows ------------------------------------------------------------------------------------


def plain_python() -> Callable[[], Any]:
    """The floor: a Python function doing the same upper-casing, no JSON, no sandbox."""

    def the_content(value: str) -> str:
        return value.upper()

    return lambda: the_content(VALUE)


def extism_sdk() -> tuple[Callable[[], Any], Any]:
    """Extism's Python SDK on the equivalent guest (its own ABI: input_load/output_set)."""
    import extism

    wasm = bytes(wasmtime.wat2wasm(_wat("upper_extism.wat")))
    plugin = extism.Plugin(wasm, functions=[])
    envelope = {"kind": "filter", "hook": HOOK, "value": VALUE, "args": []}

    def call() -> Any:
        return orjson.loads(plugin.call("filter", orjson.dumps(envelope)))["value"]

    return call, plugin


def naive_wasmtime() -> tuple[Callable[[], Any], Any]:
    """What a first wasmtime-py host does: high-level API for every step, fresh buffers per call."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(engine, _wat("upper_gonext.wat"))
    exports = wasmtime.Instance(store, module, []).exports(store)
    memory = exports["memory"]
    alloc, free, handle = exports["gn_alloc"], exports["gn_free"], exports["gn_handle_hook"]
    name = HOOK.encode()

    def call() -> Any:
        store.set_fuel(10_000_000)
        payload = orjson.dumps({"kind": "filter", "hook": HOOK, "value": VALUE, "args": []})
        name_ptr = alloc(store, len(name))
        memory.write(store, name, name_ptr)
        payload_ptr = alloc(store, len(payload))
        memory.write(store, payload, payload_ptr)
        packed = handle(store, name_ptr, len(name), payload_ptr, len(payload))
        ptr, length = (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
        body = memory.read(store, ptr, ptr + length)
        free(store, ptr, length)
        free(store, payload_ptr, len(payload))
        free(store, name_ptr, len(name))
        return orjson.loads(body)["value"]

    return call, store


def thread_limits() -> Any:
    """Enough instances that no thread row waits for the pool (the default is 4)."""
    from gonext_plugins.runtime import Limits

    return Limits(max_instances=max(THREADS))


def gonext(dispatcher: str, gil_policy: str = "adaptive") -> tuple[Callable[[], Any], Any, Any]:
    """gonext through its public API: Runtime(dispatcher=..., gil_policy=...).load(...).invoke_filter(...)."""
    from gonext_plugins.runtime import Runtime

    runtime = Runtime(dispatcher=dispatcher, gil_policy=gil_policy)  # type: ignore[arg-type]
    plugin = runtime.load(_wat("upper_gonext.wat"), name=f"bench-{dispatcher}-{gil_policy}",
                          limits=thread_limits())

    def call() -> Any:
        return plugin.invoke_filter(HOOK, VALUE)

    return call, plugin, runtime


def gonext_dispatcher_only(plugin: Any) -> tuple[Callable[[], Any], Any]:
    """The fast dispatcher alone on a checked-out instance: the public API minus pool and metrics.

    Returns the call and the instance, which the caller must check back in.
    """
    inst = plugin.pool.checkout()
    dispatcher, name = inst.dispatcher, HOOK.encode()

    def call() -> Any:
        payload = orjson.dumps({"kind": "filter", "hook": HOOK, "value": VALUE, "args": ()})
        return orjson.loads(dispatcher.call("gn_handle_hook", name, payload))["value"]

    return call, inst


# --- host calls -----------------------------------------------------------------------------------


def host_functions() -> Any:
    """``settings.get`` as the app answers it (its payload rule, then the stored values), and a no-op."""
    from gonext_plugins.host_rules import settings_key
    from gonext_plugins.runtime import HostFunctions

    def settings_get(plugin: Any, payload: Any) -> dict[str, Any]:
        key = settings_key(payload, plugin.name)
        if key is None:
            return {"settings": dict(SETTINGS)}
        return {"found": key in SETTINGS, "value": SETTINGS.get(key)}

    functions = HostFunctions()
    functions.register("settings.get", "self", settings_get)
    functions.register("noop", "self", lambda plugin, payload: {})
    return functions


def host_call_round_trip(gil_policy: str, hooks: int) -> dict[str, dict[str, float]]:
    """µs per host call (median of 5 runs of ``hooks`` hook calls, each making 100 host calls, less
    the same hook calls making none), per function, under one GIL policy: wall clock, and the
    thread's CPU time (which a busy machine disturbs less)."""
    from gonext_plugins.runtime import Runtime

    runtime = Runtime(host_functions=host_functions(), gil_policy=gil_policy)  # type: ignore[arg-type]
    plugin = runtime.load(HOSTCALL_LOOP.read_text(), name=f"bench-hostcall-{gil_policy}",
                          capabilities=frozenset({"self"}))

    def per_hook(hook: str) -> tuple[float, float]:
        for _ in range(50):
            plugin.invoke_action(hook)
        wall, cpu = [], []
        for _ in range(5):
            start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
            for _ in range(hooks):
                plugin.invoke_action(hook)
            wall.append((time.perf_counter_ns() - start) / hooks)
            cpu.append((time.thread_time_ns() - cpu_start) / hooks)
        return statistics.median(wall), statistics.median(cpu)

    def per_call(with_calls: float, without: float) -> float:
        return round((with_calls - without) / HOSTCALLS_PER_HOOK / 1000, 2)

    try:
        row: dict[str, dict[str, float]] = {}
        for function in ("settings.get", "noop"):
            base, timed = per_hook("none"), per_hook(function)
            row[function] = {"wall_us": per_call(timed[0], base[0]), "cpu_us": per_call(timed[1], base[1])}
        return row
    finally:
        plugin.close()
        runtime.close()


# --- load time, pool, threads --------------------------------------------------------------------


def load_times(repeat: int) -> dict[str, float]:
    """Median ms to load the guest with an empty cache vs from the compiled-artifact cache."""
    from gonext_plugins.runtime import Runtime

    wasm = bytes(wasmtime.wat2wasm(_wat("upper_gonext.wat")))
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            for bucket in (cold, warm):
                runtime = Runtime(cache_dir=cache)
                start = time.perf_counter()
                plugin = runtime.load(wasm, name="bench-load")
                bucket.append((time.perf_counter() - start) * 1000)
                plugin.close()
                runtime.close()
    return {"cold_ms": round(statistics.median(cold), 3), "cached_ms": round(statistics.median(warm), 3)}


def pool_checkout(plugin: Any, calls: int) -> dict[str, float]:
    """µs for one checkout + checkin of an idle instance (the pool's share of every call)."""
    pool = plugin.pool

    def once() -> None:
        pool.checkin(pool.checkout())

    return measure(once, calls, warmup=200)


def throughput(call: Callable[[], Any], threads: int, seconds: float) -> float:
    """Total calls per second with ``threads`` threads calling one plugin as fast as they can."""
    return thread_row(call, threads, seconds)["calls_per_second"]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _switches() -> int:
    """The process's voluntary context switches: a thread blocking, on the GIL above all."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def thread_row(call: Callable[[], Any], threads: int, seconds: float) -> dict[str, float]:
    """Calls per second with ``threads`` threads calling as fast as they can, the process CPU µs per
    call over the same interval, and its voluntary context switches per call (each GIL hand-off to
    a waiting thread is one: the convoy this shows does not depend on the machine's load)."""
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        barrier.wait()
        n = 0
        while not stop.is_set():
            call()
            n += 1
        counts[slot] = n

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start, cpu, switches = time.perf_counter(), _cpu_seconds(), _switches()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed, cpu, switches = time.perf_counter() - start, _cpu_seconds() - cpu, _switches() - switches
    calls = max(1, sum(counts))
    return {"calls_per_second": round(calls / elapsed), "cpu_us_per_call": round(cpu / calls * 1e6, 2),
            "switches_per_call": round(switches / calls, 3)}


def thread_rows(call: Callable[[], Any], seconds: float) -> dict[str, dict[str, float]]:
    """:func:`thread_row` for each of ``THREADS``, with each row's ratio to one thread."""
    rows = {f"x{n}": thread_row(call, n, seconds) for n in THREADS}
    one = rows["x1"]["calls_per_second"] or 1
    for row in rows.values():
        row["vs_1_thread"] = round(row["calls_per_second"] / one, 2)
    return rows


PAIRED_BLOCKS = 8
"""Alternating 1- and 2-thread blocks of :func:`paired_two_threads`."""


def paired_two_threads(calls: dict[str, Callable[[], Any]], seconds: float,
                       blocks: int = PAIRED_BLOCKS) -> dict[str, dict[str, Any]]:
    """Two threads against one for each of ``calls``, measured in turn ``blocks`` times (half a
    row's time each): the median of the per-block ratios. A single pair of rows lands on whatever
    spell the shared machine is in; blocks side by side share it, as the page's interleaved requests
    do. The calls take their turns within each block too, so a row and its ceilings share spells."""
    ratios: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(blocks):
        for label, call in calls.items():
            one = thread_row(call, 1, seconds / 2)["calls_per_second"] or 1
            two = thread_row(call, 2, seconds / 2)["calls_per_second"]
            ratios[label].append(two / one)
    return {label: {"median_vs_1_thread": round(statistics.median(found), 2),
                    "block_ratios": [round(r, 2) for r in found]} for label, found in ratios.items()}


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Pin the calling thread (and so the threads it starts) to the first CPU it may run on, yield
    that CPU, and give the thread its CPUs back after. Why: tiny calls keep the GIL, so two threads
    take turns on it; pinned, a turn costs no move between cores, and what two threads lose unpinned
    is that move, paid by plain Python as much as by a plugin call. Yields None where the OS cannot
    pin a thread."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    was = os.sched_getaffinity(0)
    cpu = min(was)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, was)


def machine_parallel_work() -> Callable[[], Any]:
    """Work that releases the GIL and shares nothing (sha256 of 1 MiB in C): what two threads can
    gain on this machine at all, measured beside the guest calls as their ceiling."""
    data = b"\0" * (1 << 20)
    return lambda: hashlib.sha256(data).digest()


LONG_GUESTS = {"~0.5 ms": "mix_gonext.wat", "tight loop": "spin_gonext.wat"}
"""The long guest calls of the thread rows: ~0.5 ms of arithmetic (the thread rows' own), and a bare
countdown loop, which two threads speed up less on this VM with or without a host around it."""


def long_plugin(runtime: Any, guest: str = "~0.5 ms") -> tuple[Callable[[], Any], Any]:
    """An action of one of :data:`LONG_GUESTS` through gonext: it runs and returns no body."""
    wat = LONG_GUESTS[guest]
    plugin = runtime.load(_wat(wat), name=f"bench-{wat.removesuffix('_gonext.wat')}-{runtime.gil_policy}",
                          limits=thread_limits())
    return (lambda: plugin.invoke_action("spin")), plugin


def wasmtime_alone(guest: str) -> Callable[[], Any]:
    """The same long guest through wasmtime-py alone: its own ``Func.__call__`` (which releases the
    GIL), no fuel, no deadline, one store per thread. What two threads gain on that guest with no
    host around it: the ceiling of the guest calls' row, as sha256 is the machine's."""
    engine = wasmtime.Engine(wasmtime.Config())
    module = wasmtime.Module(engine, _wat(LONG_GUESTS[guest]))
    local = threading.local()

    def call() -> Any:
        if not hasattr(local, "store"):
            local.store = wasmtime.Store(engine)
            local.handle = wasmtime.Instance(local.store, module, []).exports(local.store)["gn_handle_hook"]
        return local.handle(local.store, 0, 0, 0, 0)

    return call


def fuel_per_call(plugin: Any, call: Callable[[], Any]) -> int:
    """Guest instructions (fuel) of one call, from the plugin's own fuel counter."""
    stats = plugin._metrics.stats
    before = stats.settled().fuel  # checkins queue their figures: a reader settles them first
    call()
    return int(stats.settled().fuel - before)


def zig_guest_fuel() -> dict[str, int] | None:
    """Guest instructions per call of the Zig SDK's example guests (``benchmarks/guest_fuel.py``):
    deterministic, so comparable across machines. None when zig is not installed."""
    if importlib.util.find_spec("ziglang") is None:
        return None
    return guest_fuel.measure(None, None, "runtime")


# --- driver --------------------------------------------------------------------------------------


EXTISM_TARGET = 3.0
"""Issue #18's goal for the filter round trip: at least 3x Extism's Python SDK on any machine."""
EXTISM_BLOCKS = 9
"""Alternating gonext/Extism blocks behind the headline ratio (odd: the median is one block's)."""


def run(calls: int, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_average_start": os.getloadavg()},
        "value_bytes": len(VALUE),
        "filter_round_trip": {},
    }
    rows = results["filter_round_trip"]
    keep: list[Any] = []

    fast_call, fast_plugin, fast_rt = gonext("fast")
    release_call, release_plugin, release_rt = gonext("fast", "release")
    slow_call, slow_plugin, slow_rt = gonext("slow")
    direct_call, direct_inst = gonext_dispatcher_only(fast_plugin)
    extism_call, extism_plugin = extism_sdk()
    naive_call, naive_store = naive_wasmtime()
    keep += [fast_rt, release_rt, slow_rt, extism_plugin, naive_store]
    candidates = {
        "gonext (fast)": (fast_call, calls),
        "gonext fast, gil release": (release_call, calls),
        "gonext fast, dispatcher only": (direct_call, calls),
        "gonext (slow dispatcher)": (slow_call, max(500, calls // 10)),
        "extism python sdk": (extism_call, calls),
        "naive wasmtime-py": (naive_call, max(500, calls // 10)),
        "plain python": (plain_python(), calls),
    }
    for label, (fn, _n) in candidates.items():
        if fn() != EXPECTED:
            raise SystemExit(f"{label}: wrong result {fn()!r}")
    for label, (fn, n) in candidates.items():
        rows[label] = measure(fn, n, warmup=min(n, 1000))
    # The headline ratio: gonext and Extism in alternating blocks, each block's ratio of medians,
    # and the median of those. A shared machine's slow spells last seconds; they then fall on both
    # sides of one block's ratio instead of on one host's whole row.
    block_ratios = []
    for _ in range(EXTISM_BLOCKS):
        fast_block = measure(fast_call, max(200, calls // EXTISM_BLOCKS), warmup=200)["median_us"]
        ext_block = measure(extism_call, max(200, calls // EXTISM_BLOCKS), warmup=200)["median_us"]
        block_ratios.append(ext_block / fast_block)
    speedup = statistics.median(block_ratios)
    results["fast_vs_extism"] = {"speedup_median": round(speedup, 2), "target": EXTISM_TARGET,
                                 "met": speedup >= EXTISM_TARGET,
                                 "block_ratios": [round(r, 2) for r in block_ratios],
                                 "method": f"median over {EXTISM_BLOCKS} alternating blocks of "
                                           "(Extism median / gonext median)"}
    results["fuel_per_call"] = {"filter": fuel_per_call(fast_plugin, fast_call)}
    results["gil_policy"] = {"runtime": fast_rt.gil_policy, "native_epoch": fast_rt.native_epoch,
                             "tiny filter": repr(fast_plugin.gil_policy)}
    results["load"] = load_times(repeat=3)
    results["pool_checkout"] = pool_checkout(fast_plugin, calls)
    results["zig_guest_fuel_per_call"] = zig_guest_fuel()
    results["host_call_round_trip_us"] = {policy: host_call_round_trip(policy, max(50, calls // 100))
                                          for policy in ("adaptive", "release")}
    fast_plugin.pool.checkin(direct_inst)
    longs = {label: long_plugin(fast_rt, label) for label in LONG_GUESTS}
    long_call, long = longs["~0.5 ms"]
    release_long_call, release_long = long_plugin(release_rt)
    results["long_call"] = {}
    for label, (call, plugin) in longs.items():
        results["fuel_per_call"][label] = fuel_per_call(plugin, call)
        results["long_call"][label] = measure(call, 200, warmup=20)
    measure(release_long_call, 20, warmup=0)
    # Release and adaptive side by side, row after row, so neither gets a quieter machine.
    results["threads"] = {
        "tiny, release": thread_rows(release_call, seconds),
        "tiny, adaptive": thread_rows(fast_call, seconds),
        "~0.5 ms, release": thread_rows(release_long_call, seconds),
        "~0.5 ms, adaptive": thread_rows(long_call, seconds),
    }
    # Each guest call beside its ceiling: plain Python for the tiny call (work that holds the GIL,
    # as a tiny call does), wasmtime-py alone on the same guest for the long ones, and sha256.
    paired = {"tiny, adaptive": fast_call, "plain Python (GIL-bound)": plain_python()}
    for label, (call, _) in longs.items():
        paired[f"{label}, adaptive"] = call
        paired[f"{label}, wasmtime-py alone"] = wasmtime_alone(label)
    paired["sha256 in C (ceiling)"] = machine_parallel_work()
    results["threads_paired"] = paired_two_threads(paired, seconds)
    with one_cpu() as cpu:
        if cpu is not None:  # the threads the rows start inherit the pin
            results["threads_paired_one_cpu"] = {"cpu": cpu, "rows": paired_two_threads(
                {"tiny, adaptive": fast_call, "plain Python (GIL-bound)": plain_python()}, seconds)}
    results["gil_policy"]["~0.5 ms"] = repr(long.gil_policy)
    results["calls_per_second"] = {"extism python sdk x1": throughput(extism_call, 1, seconds)}
    for closable in (*(plugin for _, plugin in longs.values()), release_long, fast_plugin, release_plugin,
                     slow_plugin, fast_rt, release_rt, slow_rt):
        closable.close()
    results["machine"]["load_average_end"] = os.getloadavg()
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"filter round trip, {results['value_bytes']}-byte string, µs",
             f"  {'host':<28}{'median':>10}{'p99':>10}{'mean':>10}"]
    for label, row in results["filter_round_trip"].items():
        lines.append(f"  {label:<28}{row['median_us']:>10.2f}{row['p99_us']:>10.2f}{row['mean_us']:>10.2f}")
    cmp = results["fast_vs_extism"]
    lines.append(f"  gonext fast vs Extism: {cmp['speedup_median']}x faster (target {cmp['target']}x, "
                 f"{'met' if cmp['met'] else 'NOT met'}); median of alternating blocks {cmp['block_ratios']}")
    fuel = results["fuel_per_call"]
    long_calls = results["long_call"]
    lines.append(f"  guest instructions (fuel) per call: filter {fuel['filter']}, "
                 + ", ".join(f"{label} {fuel[label]} ({long_calls[label]['median_us']:.0f} µs median)"
                             for label in LONG_GUESTS))
    for policy, row in results["host_call_round_trip_us"].items():
        cells = ", ".join(f"{function} {us['wall_us']:.2f} (CPU {us['cpu_us']:.2f})"
                          for function, us in row.items())
        lines.append(f"host call round trip, µs (gil_policy {policy}): {cells}")
    load = results["load"]
    lines.append(f"load: cold {load['cold_ms']} ms, from compiled cache {load['cached_ms']} ms")
    pool = results["pool_checkout"]
    lines.append(f"pool checkout+return: median {pool['median_us']} µs, p99 {pool['p99_us']} µs")
    gil = results["gil_policy"]
    lines.append(f"gil_policy {gil['runtime']} (native epoch ticker: {gil['native_epoch']}); tiny filter "
                 f"{gil['tiny filter']}, ~0.5 ms {gil['~0.5 ms']}")
    lines.append("threads on one plugin: calls/s, ratio to 1 thread, process CPU µs per call, context "
                 "switches per call")
    for label, thread_set in results["threads"].items():
        cells = "  ".join(f"x{n} {row['calls_per_second']:>7} {row['vs_1_thread']:>5.2f}x "
                          f"{row['cpu_us_per_call']:>7.2f} {row['switches_per_call']:>5.2f}" for n, row in
                          ((key[1:], value) for key, value in thread_set.items()))
        lines.append(f"  {label:<20}{cells}")
    for label, paired in results["threads_paired"].items():
        blocks = len(paired["block_ratios"])
        lines.append(f"  {label:<34} 2 threads vs 1, {blocks} alternating blocks: median "
                     f"{paired['median_vs_1_thread']:.2f}x {paired['block_ratios']}")
    pinned = results.get("threads_paired_one_cpu") or {"rows": {}}
    for label, paired in pinned["rows"].items():
        lines.append(f"  {label + ', one CPU':<34} 2 threads vs 1, pinned to CPU {pinned['cpu']}: median "
                     f"{paired['median_vs_1_thread']:.2f}x {paired['block_ratios']}")
    for label, rate in results["calls_per_second"].items():
        lines.append(f"  {label:<20}{rate:>10} calls/s")
    machine = results["machine"]
    lines.append(f"machine: {machine['cpus']} CPUs, 1-minute load average "
                 f"{machine['load_average_start'][0]:.2f} at the start, "
                 f"{machine['load_average_end'][0]:.2f} at the end")
    fuel = results.get("zig_guest_fuel_per_call") or {}
    lines += ["Zig guest fuel per call (instructions):", *(f"  {k:<28}{v:>10}" for k, v in fuel.items())]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks runtime", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per fast row")
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each throughput run")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.calls, args.seconds)
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print(table(results), file=sys.stdout)
    return 0
