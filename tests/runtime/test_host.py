"""The env host module: gn_log, gn_host_call statuses, capabilities, limits."""

from __future__ import annotations

from typing import Any

import pytest

from gonext_plugins.errors import PluginTrap
from gonext_plugins.runtime import HostFunctions, Limits, Plugin, Runtime

from .conftest import LogRecorder, wat


@pytest.fixture
def hosted(rt: Runtime) -> Plugin:
    seen: list[tuple[str, Any]] = []

    def kv_get(plugin: Any, payload: Any) -> Any:
        seen.append((plugin.name, payload))
        return {"value": 42, "context": plugin.context}

    def boom(plugin: Any, payload: Any) -> Any:
        raise RuntimeError("database is down")

    rt.host_functions.register("kv.get", "kv", kv_get)
    rt.host_functions.register("kv.boom", "kv", boom)
    rt.host_functions.register("kv.weird", "kv", lambda plugin, payload: {1, 2})  # not JSON
    plugin = rt.load(wat("abi_guest"), name="hosted", capabilities=frozenset({"kv"}), context="ctx-1")
    plugin.seen = seen  # type: ignore[attr-defined]
    return plugin


def test_host_call_success_returns_the_json_result_to_the_guest(hosted: Plugin) -> None:
    assert hosted.invoke_action("hc:kv.get", "key") == {"value": 42, "context": "ctx-1"}
    assert hosted.seen == [("hosted", {"kind": "action", "hook": "hc:kv.get", "args": ["key"]})]  # type: ignore[attr-defined]


def test_unknown_function_is_minus_6(hosted: Plugin) -> None:
    assert hosted.invoke_action("hc:no.such") == {"hc": -6}


def test_undecodable_payload_is_minus_3(hosted: Plugin) -> None:
    assert hosted.invoke_action("hcbad:kv.get") == {"hc": -3}
    assert hosted.seen == []  # type: ignore[attr-defined]


def test_guest_out_of_memory_is_minus_2(hosted: Plugin) -> None:
    assert hosted.invoke_action("hcoom:kv.get") == {"hc": -2}


def test_raising_host_function_is_minus_1_and_logged(hosted: Plugin, logs: LogRecorder) -> None:
    assert hosted.invoke_action("hc:kv.boom") == {"hc": -1}
    assert any(line[0] == "hosted" and line[1] == 3 and "database is down" in line[2] and line[3] == "host"
               for line in logs.lines), logs.lines
    assert hosted.invoke_action("hc:kv.get") == {"value": 42, "context": "ctx-1"}  # keeps serving


def test_unserializable_result_is_minus_1(hosted: Plugin) -> None:
    assert hosted.invoke_action("hc:kv.weird") == {"hc": -1}


def test_capability_is_checked_on_every_call_and_can_be_revoked(hosted: Plugin) -> None:
    assert hosted.invoke_action("hc:kv.get") == {"value": 42, "context": "ctx-1"}
    hosted.capabilities = frozenset()
    assert hosted.invoke_action("hc:kv.get") == {"hc": -5}
    hosted.capabilities = frozenset({"kv", "other"})
    assert hosted.invoke_action("hc:kv.get") == {"value": 42, "context": "ctx-1"}


def test_max_host_calls_traps_the_call(rt: Runtime) -> None:
    rt.host_functions.register("kv.get", "kv", lambda plugin, payload: 1)
    few = rt.load(wat("abi_guest"), name="few", capabilities={"kv"}, limits=Limits(max_host_calls=10))
    with pytest.raises(PluginTrap, match="max_host_calls=10"):
        few.invoke_action("hcloop:kv.get")  # 50 host calls
    enough = rt.load(wat("abi_guest"), name="enough", capabilities={"kv"}, limits=Limits(max_host_calls=50))
    assert enough.invoke_action("hcloop:kv.get") == 1


def test_gn_log_reaches_the_sink_with_source_guest(guest: Plugin, logs: LogRecorder) -> None:
    guest.invoke_action("log")
    assert ("guest", 1, "hello from guest", "guest") in logs.lines


def test_gn_log_with_bad_pointers_does_not_crash(guest: Plugin, logs: LogRecorder) -> None:
    assert guest.invoke_action("badlog") is None
    host_lines = [line for line in logs.lines if line[3] == "host"]
    assert len(host_lines) == 2 and all(line[1] == 2 for line in host_lines)
    assert not [line for line in logs.lines if line[3] == "guest"]


def test_gn_log_reads_at_most_max_log_bytes(rt: Runtime, logs: LogRecorder) -> None:
    plugin = rt.load(wat("abi_guest"), name="biglog", limits=Limits(max_log_bytes=100))
    plugin.invoke_action("hugelog")  # asks for 100000 bytes
    (line,) = [line for line in logs.lines if line[3] == "guest"]
    assert len(line[2]) == 100  # 100 bytes decoded with errors="replace"


def test_host_functions_registry() -> None:
    registry = HostFunctions()

    @registry.register("posts.get", "posts.read")
    def posts_get(plugin: Any, payload: Any) -> Any:
        return payload

    entry = registry.get("posts.get")
    assert entry is not None and entry.capability == "posts.read" and entry.func is posts_get
    assert "posts.get" in registry and len(registry) == 1
    registry.unregister("posts.get")
    assert registry.get("posts.get") is None
