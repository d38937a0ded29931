"""The fast dispatcher against the slow one: same results, same errors, same fuel, for every path.

Each test runs the same call through two plugins loaded from the same guest under the same limits,
one per dispatcher, and compares *outcomes*: the value, or the error's type, status, guest message
and text. The reference is ``SlowDispatcher``; ``FastDispatcher`` must be indistinguishable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonext_plugins.errors import HookError, PayloadTooLarge, PluginError, PluginTimeout, PluginTrap
from gonext_plugins.runtime import HostFunctions, Limits, Plugin, Runtime
from gonext_plugins.runtime.dispatch_fast import FastDispatcher
from gonext_plugins.runtime.dispatch_slow import SlowDispatcher

GUESTS = Path(__file__).resolve().parents[1] / "guests"
BENCH_GUESTS = Path(__file__).resolve().parents[2] / "benchmarks" / "guests"
ABI_GUEST = (GUESTS / "abi_guest.wat").read_text()

Pair = tuple[Plugin, Plugin]


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What a caller can observe of one call: the value, or the error's public face."""
    try:
        return ("ok", fn())
    except PluginError as exc:
        return ("error", type(exc).__name__, getattr(exc, "status", None),
                getattr(exc, "guest_message", None), exc.message)


class Twins:
    """Two runtimes, fast and slow, with the same limits, host functions and log capture."""

    def __init__(self, limits: Limits, **load: Any) -> None:
        self.lines: dict[str, list[tuple[int, str, str]]] = {"fast": [], "slow": []}
        self.host_functions = HostFunctions()
        self.runtimes = {
            kind: Runtime(limits=limits, dispatcher=kind,  # type: ignore[arg-type]
                          host_functions=self.host_functions,
                          log_sink=lambda plugin, level, msg, src, k=kind: self.lines[k].append(
                              (level, msg, src)))
            for kind in ("fast", "slow")
        }
        source = load.pop("source", ABI_GUEST)
        self.fast = self.runtimes["fast"].load(source, name="twin", **load)
        self.slow = self.runtimes["slow"].load(source, name="twin", **load)

    def both(self, call: Callable[[Plugin], Any]) -> tuple[Any, Any]:
        return outcome(lambda: call(self.fast)), outcome(lambda: call(self.slow))

    def same(self, call: Callable[[Plugin], Any]) -> Any:
        fast, slow = self.both(call)
        assert fast == slow
        return fast

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.close()


def make_twins(request: pytest.FixtureRequest, limits: Limits, **load: Any) -> Twins:
    twins = Twins(limits, **load)
    request.addfinalizer(twins.close)
    return twins


@pytest.fixture
def twins(request: pytest.FixtureRequest) -> Twins:
    return make_twins(request, Limits(fuel=50_000_000, hard_timeout_ms=5_000),
                      capabilities={"test.cap"})


def dispatcher_of(plugin: Plugin) -> Any:
    inst = plugin.pool.checkout()
    try:
        return inst.dispatcher
    finally:
        plugin.pool.checkin(inst)


def test_the_fast_runtime_really_uses_the_fast_dispatcher(twins: Twins) -> None:
    # resolve_dispatcher falls back to the slow one on ImportError; make sure it did not.
    assert type(dispatcher_of(twins.fast)) is FastDispatcher
    assert type(dispatcher_of(twins.slow)) is SlowDispatcher


# --- every ABI status, filter / action / job -----------------------------------------------------

HOOK_NAMES = ["upper", "nobody", "body", "echo", "err", "oom", "badpayload", "nope", "neg7", "oob",
              "zerolen", "notjson", "log", "badlog", "hugelog"]


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_filter_outcomes_match(twins: Twins, hook: str) -> None:
    twins.same(lambda p: p.invoke_filter(hook, "hello", 1, {"two": [3]}))


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_action_outcomes_match(twins: Twins, hook: str) -> None:
    twins.same(lambda p: p.invoke_action(hook, "arg", None, 4.5))


def test_statuses_are_the_abi_ones(twins: Twins) -> None:
    expected = {"err": "error", "oom": "out_of_memory", "badpayload": "bad_payload",
                "nope": "unknown_hook", "neg7": "bad_result", "oob": "bad_result",
                "zerolen": "bad_result", "notjson": "bad_result"}
    for hook, status in expected.items():
        result = twins.same(lambda p, h=hook: p.invoke_action(h))
        assert result[:3] == ("error", "HookError", status), hook
    assert twins.same(lambda p: p.invoke_filter("upper", "hello")) == ("ok", "HELLO")
    assert twins.same(lambda p: p.invoke_filter("nobody", "same")) == ("ok", "same")
    assert twins.same(lambda p: p.invoke_action("body")) == ("ok", {"html": "<meta>"})


def test_jobs_match(twins: Twins) -> None:
    result = twins.same(lambda p: p.invoke_job("seo.recompute", {"ids": [1, 2]}, task_id="t-1"))
    assert result == ("ok", {"kind": "job", "job": "seo.recompute", "id": "t-1", "payload": {"ids": [1, 2]}})


def test_logs_match(twins: Twins) -> None:
    for hook in ("log", "badlog", "hugelog"):
        twins.same(lambda p, h=hook: p.invoke_action(h))
    assert twins.lines["fast"] == twins.lines["slow"]
    assert (1, "hello from guest", "guest") in twins.lines["fast"]


def test_raw_calls_match(twins: Twins) -> None:
    assert twins.same(lambda p: p.call("add", 7, 35)) == ("ok", 42)
    assert twins.same(lambda p: p.call("no_such_export"))[:3] == ("error", "HookError", "unknown_hook")


def test_fuel_used_matches(twins: Twins) -> None:
    """Same guest work, same buffer policy: the same instructions, so the same fuel, call by call."""
    for hook, value in [("upper", "hello"), ("echo", "x" * 3000), ("nobody", 1), ("upper", "y" * 5000)]:
        twins.same(lambda p, h=hook, v=value: p.invoke_filter(h, v))
        assert dispatcher_of(twins.fast).fuel_used == dispatcher_of(twins.slow).fuel_used > 0


# --- traps, panics, timeouts ---------------------------------------------------------------------


def test_panic_matches(twins: Twins) -> None:
    result = twins.same(lambda p: p.invoke_filter("panic", "v"))
    assert result[1] == "PluginTrap" and result[3] == "boom: something broke"
    # the trapped instance was replaced; the plugin still works
    assert twins.same(lambda p: p.invoke_filter("upper", "ok")) == ("ok", "OK")


def test_out_of_fuel_matches(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(fuel=200_000, hard_timeout_ms=5_000))
    result = twins.same(lambda p: p.invoke_action("loop"))
    assert result[1] == "PluginTrap" and "fuel" in result[4]
    assert twins.same(lambda p: p.call("spin"))[1] == "PluginTrap"
    assert twins.same(lambda p: p.invoke_filter("upper", "after")) == ("ok", "AFTER")


def test_hard_deadline_matches(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(fuel=None, soft_timeout_ms=None, hard_timeout_ms=100))
    result = twins.same(lambda p: p.invoke_action("loop"))  # the same outcome either way
    if result[1] != PluginTimeout.__name__:
        pytest.xfail(f"fuel=None: dispatch.arm leaves a fuel-metering store with no fuel ({result[4]})")
    assert twins.same(lambda p: p.invoke_filter("upper", "after")) == ("ok", "AFTER")


# --- caps, memory growth, host calls -------------------------------------------------------------


def test_payload_cap_refused_before_any_guest_call(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(max_input_bytes=1024))
    before = twins.same(lambda p: p.call("hooks"))
    result = twins.same(lambda p: p.invoke_filter("upper", "x" * 2000))
    assert result[1] == PayloadTooLarge.__name__
    assert twins.same(lambda p: p.call("hooks")) == before


def test_output_cap_matches(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(max_output_bytes=64))
    result = twins.same(lambda p: p.invoke_filter("echo", "x" * 100))
    assert result[:3] == ("error", "HookError", "bad_result")
    assert twins.same(lambda p: p.invoke_filter("echo", "short")) == ("ok", "short")


def test_memory_growth_between_and_during_calls(twins: Twins) -> None:
    # grown by a raw export call (outside the dispatcher's hook path) ...
    twins.same(lambda p: p.call("grow", 3))
    assert twins.same(lambda p: p.invoke_filter("upper", "abc")) == ("ok", "ABC")
    # ... and by gn_alloc while serving payloads that outgrow the reused buffer, several times
    for size in (10, 70_000, 200_000, 5, 400_000):
        value = "q" * size
        assert twins.same(lambda p, v=value: p.invoke_filter("echo", v)) == ("ok", value)
        assert twins.same(lambda p, v=value: p.invoke_filter("upper", v)) == ("ok", value.upper())


def test_memory_cap_gives_out_of_memory(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(memory_pages=3))
    result = twins.same(lambda p: p.invoke_filter("echo", "z" * 300_000))
    assert result[:3] == ("error", "HookError", "out_of_memory")
    assert twins.same(lambda p: p.invoke_filter("echo", "fits")) == ("ok", "fits")


def test_host_calls_match(twins: Twins) -> None:
    @twins.host_functions.register("test.echo", "test.cap")
    def echo(handle: Any, payload: Any) -> Any:
        return {"value": ["from host", payload.get("value")]}

    @twins.host_functions.register("test.denied", "other.cap")
    def denied(handle: Any, payload: Any) -> Any:
        return {"value": "never"}

    @twins.host_functions.register("test.big", "test.cap")
    def big(handle: Any, payload: Any) -> Any:  # forces gn_alloc to grow memory inside the call
        return {"value": "b" * 300_000}

    assert twins.same(lambda p: p.invoke_filter("hc:test.echo", "v")) == ("ok", ["from host", "v"])
    assert twins.same(lambda p: p.invoke_filter("hc:test.big", "v")) == ("ok", "b" * 300_000)
    for hook in ("hc:test.denied", "hc:missing", "hcbad:test.echo", "hcoom:test.echo", "hcloop:test.echo"):
        twins.same(lambda p, h=hook: p.invoke_action(h, 1))


def test_bad_results_from_a_hostile_guest(request: pytest.FixtureRequest) -> None:
    """Results at the edges of memory and of the i32 range: never a crash, always bad_result."""
    cases = {
        1: (0xFFFFFFFF, 1),  # ptr at the top of the 32-bit space
        2: (65536 * 2 - 4, 8),  # straddles the end of memory
        3: (8, 0x7FFFFFFF),  # huge positive len
        4: (8, -5),  # ptr with a negative len
        5: (0, -100),  # unknown negative status
    }
    arms = "".join(
        f"(if (i32.eq (local.get $k) (i32.const {k}))"
        f" (then (return (i64.const {((p << 32) | (n & 0xFFFFFFFF))}))))"
        for k, (p, n) in cases.items())
    source = f"""(module
      (memory (export "memory") 2)
      (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "gn_free") (param i32 i32))
      (func (export "gn_handle_hook") (param $np i32) (param $nl i32) (param $pp i32) (param $pl i32)
        (result i64) (local $k i32)
        (local.set $k (i32.sub (i32.load8_u (local.get $np)) (i32.const 48)))
        {arms}
        (i64.const 0)))"""
    twins = make_twins(request, Limits(), source=source)
    for k in cases:
        result = twins.same(lambda p, k=k: p.invoke_filter(str(k), "v"))
        assert result[:3] == ("error", "HookError", "bad_result"), (k, result)
    assert twins.same(lambda p: p.invoke_filter("0", "v")) == ("ok", "v")


def test_gn_alloc_returning_garbage_is_out_of_memory(request: pytest.FixtureRequest) -> None:
    for ptr in (0, 131070, 0xFFFFFF00):
        signed = ptr if ptr < 2**31 else ptr - 2**32
        source = f"""(module (memory (export "memory") 2)
          (func (export "gn_alloc") (param i32) (result i32) (i32.const {signed}))
          (func (export "gn_free") (param i32 i32))
          (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))"""
        twins = make_twins(request, Limits(), source=source)
        result = twins.same(lambda p: p.invoke_filter("x", "payload"))
        assert result[:3] == ("error", "HookError", "out_of_memory"), ptr


def test_trap_inside_gn_free_matches(request: pytest.FixtureRequest) -> None:
    source = """(module (memory (export "memory") 1)
      (data (i32.const 64) "{\\"value\\":1}")
      (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "gn_free") (param i32 i32) (if (i32.eq (local.get 0) (i32.const 64)) (then unreachable)))
      (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0x400000000b)))"""
    twins = make_twins(request, Limits(), source=source)
    result = twins.same(lambda p: p.invoke_filter("x", "v"))
    assert result[:2] == ("error", "PluginTrap") and result[4].startswith("guest trapped")


# --- upper-casing and arbitrary JSON, generated -----------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children,
                                                                        max_size=5),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def module_twins() -> Iterator[Twins]:
    twins = Twins(Limits(fuel=50_000_000, hard_timeout_ms=5_000))
    yield twins
    twins.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON, args=st.lists(JSON, max_size=3))
def test_json_round_trips_identically(module_twins: Twins, value: Any, args: list[Any]) -> None:
    result = module_twins.same(lambda p: p.invoke_filter("echo", value, *args))
    assert result == ("ok", value)
    job = module_twins.same(lambda p: p.invoke_job("j", value, task_id="id"))
    assert job == ("ok", {"kind": "job", "job": "j", "id": "id", "payload": value})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'),
                    max_size=300))
def test_upper_matches_python(module_twins: Twins, text: str) -> None:
    assert module_twins.same(lambda p: p.invoke_filter("upper", text)) == ("ok", text.upper())


def test_benchmark_guest_upper_cases_any_string(request: pytest.FixtureRequest) -> None:
    """The benchmark guest handles escapes and UTF-8, so the benchmark compares correct work."""
    twins = make_twins(request, Limits(), source=(BENCH_GUESTS / "upper_gonext.wat").read_text())
    for text in ["hello", 'quote " back \\ slash', "tab\tnew\nline", "é ü ✓ 😀 mixed Case", ""]:
        expected = "".join(c.upper() if "a" <= c <= "z" else c for c in text)
        assert twins.same(lambda p, t=text: p.invoke_filter("the_content", t)) == ("ok", expected)


# --- threads --------------------------------------------------------------------------------


def test_threads_on_the_fast_path(request: pytest.FixtureRequest) -> None:
    twins = make_twins(request, Limits(max_instances=4))
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(64):
                value = f"thread {i} call {j} " + "x" * (j * 37 % 500)
                assert twins.fast.invoke_filter("upper", value) == value.upper()
                assert twins.fast.invoke_filter("echo", [i, j, value]) == [i, j, value]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert twins.fast.pool.in_use == 0


def test_errors_are_typed(twins: Twins) -> None:
    with pytest.raises(HookError) as info:
        twins.fast.invoke_action("oob")
    assert info.value.status == "bad_result" and info.value.plugin == "twin"
    with pytest.raises(PluginTrap) as trap:
        twins.fast.invoke_action("panic")
    assert trap.value.guest_message == "boom: something broke"
