"""ABI.md's calling sequence, envelopes and result table, against both dispatchers."""

from __future__ import annotations

import pytest

from gonext_plugins.errors import HookError, InvalidPayload, PayloadTooLarge, PluginTrap
from gonext_plugins.runtime import Limits, Plugin, Runtime

from .conftest import wat


def test_add(guest: Plugin) -> None:
    assert guest.call("add", 7, 35) == 42


def test_filter_round_trip(guest: Plugin) -> None:
    assert guest.invoke_filter("upper", "hello") == "HELLO"
    assert guest.invoke_filter("upper", "x" * 5000) == "X" * 5000  # grows the reused input block
    assert guest.invoke_filter("upper", "small again") == "SMALL AGAIN"


def test_filter_without_body_keeps_the_value(guest: Plugin) -> None:
    value = {"a": [1, 2]}
    assert guest.invoke_filter("nobody", value, 1, 2) is value


def test_filter_body_must_be_a_value_object(guest: Plugin) -> None:
    with pytest.raises(HookError) as info:
        guest.invoke_filter("body", "x")  # {"html": ...} has no "value"
    assert info.value.status == "bad_result"


def test_action_with_and_without_body(guest: Plugin) -> None:
    assert guest.invoke_action("body") == {"html": "<meta>"}
    assert guest.invoke_action("nobody", 1) is None


def test_envelopes_are_exactly_as_abi_md_says(guest: Plugin) -> None:
    assert guest.invoke_action("echo", 1, "two", None) == {"kind": "action", "hook": "echo",
                                                           "args": [1, "two", None]}
    assert guest.invoke_job("seo.recompute-scores", {"ids": [3]}, task_id="task-1") == {
        "kind": "job", "job": "seo.recompute-scores", "id": "task-1", "payload": {"ids": [3]}}


def test_job_without_gn_handle_job_is_unknown(rt: Runtime) -> None:
    plugin = rt.load(wat("minimal"), name="minimal")
    with pytest.raises(HookError) as info:
        plugin.invoke_job("x", None)
    assert info.value.status == "unknown_hook"


@pytest.mark.parametrize(("hook", "status"), [
    ("err", "error"), ("oom", "out_of_memory"), ("badpayload", "bad_payload"),
    ("no-such-hook", "unknown_hook"),
    ("neg7", "bad_result"), ("oob", "bad_result"), ("zerolen", "bad_result"), ("notjson", "bad_result"),
])
def test_every_status_maps_to_its_error(guest: Plugin, hook: str, status: str) -> None:
    with pytest.raises(HookError) as info:
        guest.invoke_action(hook)
    assert info.value.status == status
    assert info.value.plugin == "guest"
    assert guest.invoke_filter("upper", "still works") == "STILL WORKS"


def test_a_body_that_is_not_json_is_shown_where_it_breaks(guest: Plugin) -> None:
    """The author's clue to a wrong length or pointer: the parser's reason, the byte, and the
    bytes around it, escaped."""
    with pytest.raises(HookError) as info:
        guest.invoke_action("notjson")
    assert info.value.message.startswith("the guest returned a body that is not JSON (")
    assert "at byte 0 of " in info.value.message and "near b'not json'" in info.value.message


def test_body_over_the_output_cap_is_bad_result(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="capped", limits=Limits(max_output_bytes=8))
    with pytest.raises(HookError, match="over max_output_bytes=8") as info:
        plugin.invoke_action("body")
    assert info.value.status == "bad_result"


def test_panic_raises_trap_with_the_guest_message(guest: Plugin) -> None:
    with pytest.raises(PluginTrap) as info:
        guest.invoke_action("panic")
    assert info.value.guest_message == "boom: something broke"
    assert info.value.plugin == "guest"
    assert guest.invoke_filter("upper", "after") == "AFTER"  # a fresh instance serves the next call


def test_payload_over_the_cap_is_refused_before_any_guest_call(rt: Runtime) -> None:
    limits = Limits(max_input_bytes=1000, min_instances=1, max_instances=1)
    plugin = rt.load(wat("abi_guest"), name="small", limits=limits)
    with pytest.raises(PayloadTooLarge, match="over max_input_bytes=1000"):
        plugin.invoke_filter("upper", "x" * 2000)
    assert plugin.call("hooks") == 0
    assert plugin.call("allocs") == 0
    assert plugin.invoke_filter("upper", "ok") == "OK"
    assert plugin.call("hooks") == 1


def test_unencodable_payload_is_refused(guest: Plugin) -> None:
    with pytest.raises(InvalidPayload):
        guest.invoke_action("echo", object())


def test_time_is_wall_clock_ms(guest: Plugin) -> None:
    import time

    assert abs(guest.call("now") - time.time() * 1000) < 5_000


def test_raw_call_of_a_missing_export(guest: Plugin) -> None:
    with pytest.raises(HookError) as info:
        guest.call("nope")
    assert info.value.status == "unknown_hook"
