"""Child process of tests/security/test_reentrant_host_calls.py: every ``env`` import made from
inside ``gn_alloc`` and ``gn_free``, through one dispatcher, on the bare runtime (no Django).

``python tests/procs/reentrant_runtime.py fast|slow``

One JSON line per case: ``{"case", "outcome": "ok"|<error code>, "message", "logs"}``, then
``{"event": "end"}``. If the host recursed or let an exception out of a callback, the process
dies before ``end`` and the test sees its exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from _django import emit  # noqa: E402  (the path is set just above)

from gonext_plugins.errors import PluginError  # noqa: E402
from gonext_plugins.runtime import HostFunctions, Limits, Runtime  # noqa: E402

WHERE = ("alloc", "free", "payload")
IMPORTS = ("gn_log", "gn_panic", "gn_time_ms", "gn_host_call")
BIG = "x" * 4096  # over the dispatcher's first 1 KiB buffer, so the payload block is re-placed


def main(dispatcher: str) -> None:
    logs: list[str] = []
    functions = HostFunctions()
    functions.register("log", "log", lambda plugin, payload: {"ok": True})
    wat = (REPO / "tests" / "guests" / "reentrant_guest.wat").read_text()
    with Runtime(Limits(min_instances=1, max_instances=1), host_functions=functions, dispatcher=dispatcher,
                 log_sink=lambda plugin, level, message, source: logs.append(message)) as runtime:
        plugin = runtime.load(wat, "reentrant", capabilities={"log"})
        for where in WHERE:
            for name in IMPORTS:
                hook = f"{where}:{name}"
                logs.clear()
                fields: dict[str, Any] = {"outcome": "ok", "message": ""}
                try:
                    plugin.invoke_action(hook)
                    if where == "payload":  # armed; this call's payload placement re-enters
                        plugin.invoke_action(hook, BIG)
                except PluginError as exc:
                    fields = {"outcome": exc.code, "message": exc.message}
                emit(case=hook, logs=list(logs), **fields)
    emit(event="end")


if __name__ == "__main__":
    main(sys.argv[1])
