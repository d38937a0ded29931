"""A process that hammers one plugin's ``kv`` through a real guest, for the cross-process kv tests.

``python tests/procs/kv_actor.py SLUG``: loads the plugin through this process's own registry, then
answers one JSON command per stdin line (``serve_commands``). Every host call goes through the real
guest ``tests/guests/hostcall_guest.wat`` (the filter's name is the host function it calls):

    {"op": "incr", "key": K, "times": N}    -> {"values": [each kv.incr result, or {"hc": -N}]}
    {"op": "cas_race", "prefix": P, "rounds": N, "me": NAME}
        -> {"results": [kv.cas {"key": P+i, "expected": null, "value": NAME} for each round]}
    {"op": "cas_count", "key": K, "times": N}
        -> {"retries": R}: N increments done by kv.get then kv.cas, retried until the cas wins
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _django import serve_commands

SLUG = sys.argv[1]


def _plugin() -> Any:
    from gonext_plugins.registry import registry

    deadline = time.monotonic() + 30
    while (loaded := registry.get(SLUG)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"plugin {SLUG} never loaded in this process")
        time.sleep(0.05)
    return loaded


def run(command: dict[str, Any]) -> dict[str, Any]:
    loaded = _plugin()

    def call(function: str, payload: Any) -> Any:
        return loaded.invoke("filter", function, payload)

    op = command["op"]
    if op == "load":
        return {"version": loaded.version}
    if op == "incr":
        return {"values": [_value(call("kv.incr", {"key": command["key"]})) for _ in range(command["times"])]}
    if op == "cas_race":
        return {"results": [call("kv.cas", {"key": f"{command['prefix']}{n}", "expected": None,
                                            "value": command["me"]})
                            for n in range(command["rounds"])]}
    if op == "cas_count":
        retries = 0
        for _ in range(command["times"]):
            current = call("kv.get", {"key": command["key"]})["value"]
            while True:
                new = (current or 0) + 1
                answer = call("kv.cas", {"key": command["key"], "expected": current, "value": new})
                if answer["ok"]:
                    break
                retries += 1
                current = answer["value"]  # the loser retries from what is stored now
        return {"retries": retries}
    raise ValueError(f"unknown op {op!r}")


def _value(answer: Any) -> Any:
    """The incr result's value, or the whole answer ({"hc": -N}) so the test can show it."""
    return answer["value"] if isinstance(answer, dict) and "value" in answer else answer


def main() -> None:
    serve_commands(run)


if __name__ == "__main__":
    main()
