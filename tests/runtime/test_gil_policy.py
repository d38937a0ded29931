"""The adaptive GIL policy and the native epoch ticker it relies on.

A guest called with the GIL held can only be interrupted by something that needs no GIL: these tests
prove the native timer ends such a call at the hard deadline (fuel off), that a plugin whose calls
turn long goes back to releasing the GIL, that host calls and ``gn_free`` work while it is held, and
that a runtime's timer dies with it. The runs that could hang the interpreter if the timer did not
tick (a held infinite loop blocks every Python thread, pytest's included) happen in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gonext_plugins.runtime import Limits, Runtime
from gonext_plugins.runtime import epoch_timer as native
from gonext_plugins.runtime.gil import HOLD_AFTER_SHORT_CALLS, LONG_CALL_FUEL, MAX_HOLD_AFTER, GilPolicy

from .conftest import GUESTS, LogRecorder, require_fast_dispatcher, wat

needs_native_timer = pytest.mark.skipif(not native.available(), reason="no POSIX timers (not Linux/glibc)")
ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 300  # only turns a hang into a failure; no result depends on it


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; its stdout (it must exit 0)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def adaptive_rt(logs: LogRecorder) -> Iterator[Runtime]:
    require_fast_dispatcher()
    runtime = Runtime(log_sink=logs, dispatcher="fast", gil_policy="adaptive")
    yield runtime
    runtime.close()


def until_held(plugin: object, hook: str = "short") -> int:
    """Make short calls until the plugin's policy holds the GIL; how many it took."""
    policy = plugin.gil_policy  # type: ignore[attr-defined]
    assert isinstance(policy, GilPolicy)
    calls = 0
    while not policy.hold:
        plugin.invoke_action(hook)  # type: ignore[attr-defined]
        calls += 1
        assert calls <= 10 * policy.hold_after, policy
    return calls


@needs_native_timer
def test_adaptive_runtime_ticks_natively(adaptive_rt: Runtime) -> None:
    assert adaptive_rt.native_epoch and adaptive_rt.gil_policy == "adaptive"
    plugin = adaptive_rt.load(wat("gil_guest"), name="gil-native")
    assert until_held(plugin) == HOLD_AFTER_SHORT_CALLS


@needs_native_timer
def test_held_calls_return_bodies_free_them_and_run_host_calls(adaptive_rt: Runtime,
                                                               logs: LogRecorder) -> None:
    plugin = adaptive_rt.load(wat("gil_guest"), name="gil-held")
    until_held(plugin)
    freed_before = plugin.call("freed")
    assert plugin.invoke_action("short") == {"ok": 1}
    assert plugin.call("freed") == freed_before + 1  # gn_free ran, the GIL still held
    plugin.invoke_action("log")  # gn_log is a Python callback: it re-takes the GIL re-entrantly
    assert ("gil-held", 1, "held", "guest") in logs.lines
    assert plugin.gil_policy is not None and plugin.gil_policy.hold


@needs_native_timer
def test_a_long_held_call_switches_the_plugin_to_releasing(adaptive_rt: Runtime) -> None:
    plugin = adaptive_rt.load(wat("gil_guest"), name="gil-flip", limits=Limits(max_instances=1))
    policy = plugin.gil_policy
    assert policy is not None
    until_held(plugin)
    fuel: list[int] = []
    plugin.call_observer = lambda kind, hook, seconds, used, memory: fuel.append(used)
    plugin.invoke_action("long")
    assert fuel[-1] > LONG_CALL_FUEL
    assert not policy.hold and policy.long_while_held == 1
    assert policy.hold_after == 2 * HOLD_AFTER_SHORT_CALLS  # hysteresis: twice the streak next time
    plugin.invoke_action("long")  # long while releasing: stays releasing, no second flip
    assert not policy.hold and policy.long_while_held == 1
    assert until_held(plugin) == 2 * HOLD_AFTER_SHORT_CALLS


def test_release_policy_and_slow_dispatcher_never_hold() -> None:
    with Runtime(gil_policy="release") as runtime:
        assert runtime.gil_policy == "release"
        plugin = runtime.load(wat("gil_guest"), name="gil-release")
        assert plugin.gil_policy is None
        for _ in range(3 * HOLD_AFTER_SHORT_CALLS):
            plugin.invoke_action("short")
    with Runtime(dispatcher="slow") as runtime:
        assert runtime.gil_policy == "release"
        assert runtime.load(wat("gil_guest"), name="gil-slow").gil_policy is None
    with pytest.raises(ValueError, match="gil_policy"):
        Runtime(gil_policy="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["adaptive", "release"])
def test_fuel_off_infinite_loop_ends_at_the_hard_deadline(policy: str) -> None:
    """With fuel off, only the epoch ends the loop. Under "adaptive" the loop runs with the GIL
    held, so no Python thread could tick: the native timer must (on Linux it is checked to be the
    one ticking). Under "release" (and where there is no native timer) the usual path does."""
    out = run_python(f"""
        from pathlib import Path
        from gonext_plugins.errors import PluginTimeout
        from gonext_plugins.runtime import Limits, Runtime
        from gonext_plugins.runtime import epoch_timer
        runtime = Runtime(limits=Limits(fuel=None, soft_timeout_ms=None, hard_timeout_ms=100),
                          dispatcher="fast", gil_policy={policy!r})
        held = runtime.gil_policy == "adaptive"
        assert held == ({policy!r} == "adaptive" and epoch_timer.available()), runtime.gil_policy
        plugin = runtime.load(Path({str(GUESTS / "gil_guest.wat")!r}).read_text(), name="forever")
        while held and not plugin.gil_policy.hold:
            plugin.invoke_action("short")
        try:
            plugin.invoke_action("forever")
        except PluginTimeout as err:
            print(err.code, held, plugin.gil_policy and plugin.gil_policy.long_while_held)
        runtime.close()
    """)
    held = policy == "adaptive" and native.available()
    assert out.split() == ["timeout", str(held), "1" if held else "None"]


@needs_native_timer
def test_timer_is_deleted_on_close_and_a_dropped_runtime_never_ticks_into_freed_memory() -> None:
    """/proc/self/timers lists the process's POSIX timers. After close (and after a runtime is just
    dropped and collected) none is left; engine clones are freed after the grace period while new
    runtimes come and go, and the process then keeps running past many ticks and exits cleanly."""
    out = run_python(f"""
        import gc, time
        from pathlib import Path
        from gonext_plugins.runtime import Runtime
        from gonext_plugins.runtime import epoch_timer

        def timers():
            with open("/proc/self/timers") as listing:
                return sum(line.startswith("ID:") for line in listing)

        epoch_timer.RETIRE_GRACE_S = 0.05
        base = timers()
        closed = Runtime(epoch_tick_ms=1)
        plugin = closed.load(Path({str(GUESTS / "gil_guest.wat")!r}).read_text(), name="dropped")
        assert closed.native_epoch and timers() == base + 1
        plugin.invoke_action("log")
        closed.close()
        assert not closed.native_epoch and timers() == base
        dropped = Runtime(epoch_tick_ms=1)
        assert timers() == base + 1
        del dropped, closed, plugin
        gc.collect()
        assert timers() == base
        time.sleep(0.1)  # many 1 ms ticks after both engines were released by Python
        again = Runtime(epoch_tick_ms=1)  # frees the retired clones (past the grace period)
        assert epoch_timer._retired == [], epoch_timer._retired
        time.sleep(0.05)
        again.close()
        print("ok", timers() - base)
    """)
    assert out.split() == ["ok", "0"]


@needs_native_timer
def test_forked_children_end_held_loops_with_a_python_ticker() -> None:
    """POSIX timers are not inherited, and a child must not create one (glibc's SIGEV_THREAD lock
    may be held at the fork: the child's timer_create then hangs; this test hung that way about
    once in 25 forks). A child forked from a process whose plugin keeps the GIL must still end an
    endless call at the hard deadline: its runtime falls back to a Python ticker and to releasing
    the GIL. 30 forks, every one must time out; the parent keeps its native timer and policy."""
    out = run_python(f"""
        import os
        from pathlib import Path
        from gonext_plugins.errors import PluginTimeout
        from gonext_plugins.runtime import Limits, Runtime
        runtime = Runtime(limits=Limits(fuel=None, soft_timeout_ms=None, hard_timeout_ms=100))
        plugin = runtime.load(Path({str(GUESTS / "gil_guest.wat")!r}).read_text(), name="forked")
        while not plugin.gil_policy.hold:
            plugin.invoke_action("short")
        codes = []
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                fell_back = not runtime.native_epoch and runtime.gil_policy == "release"
                for _ in range(20):
                    plugin.invoke_action("short")  # short calls no longer earn the GIL here
                try:
                    plugin.invoke_action("forever")
                except PluginTimeout:
                    os._exit(7 if fell_back and not plugin.gil_policy.hold else 1)
                os._exit(2)
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        pid = os.fork()
        if pid == 0:  # a runtime made in the child ticks from Python too, and never holds the GIL
            later = Runtime(limits=Limits(fuel=None, soft_timeout_ms=None, hard_timeout_ms=100))
            os._exit(7 if not later.native_epoch and later.gil_policy == "release" else 1)
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
        print(sorted(set(codes)), runtime.native_epoch, plugin.gil_policy.hold)
        runtime.close()
    """)
    assert out.split() == ["[7]", "True", "True"]


def test_policy_hysteresis_doubles_up_to_its_cap() -> None:
    policy = GilPolicy()
    short, long = LONG_CALL_FUEL, LONG_CALL_FUEL + 1  # the threshold itself is still short
    flips = 0
    while policy.hold_after < MAX_HOLD_AFTER:
        for _ in range(policy.hold_after - 1):
            policy.observe(short, held=False)
        assert not policy.hold
        policy.observe(short, held=False)
        assert policy.hold
        policy.observe(long, held=True)
        flips += 1
        assert not policy.hold and policy.long_while_held == flips and policy.short_streak == 0
    assert policy.hold_after == MAX_HOLD_AFTER == HOLD_AFTER_SHORT_CALLS << flips
    policy.observe(0, held=False, timed_out=True)  # a deadline trap is long, whatever the fuel read
    assert policy.short_streak == 0 and not policy.hold
    policy.hold = True
    policy.observe(0, held=True, timed_out=True)
    assert not policy.hold and policy.hold_after == MAX_HOLD_AFTER
