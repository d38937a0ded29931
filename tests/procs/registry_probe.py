"""Process B of the cross-process tests: watch what this process's registry has loaded.

``python tests/procs/registry_probe.py SLUG [--every 0.02] [--value hello]``

Every ``--every`` seconds it asks ``registry.get(SLUG)`` (which syncs at most every
``SYNC_INTERVAL``), and prints a JSON line whenever the loaded state changes: ``loaded`` true with
the version and the result of calling the plugin's ``upper`` filter, or false once it is gone,
followed by a ``stale_call`` line saying whether a call through the old handle is now refused.
It runs until stdin closes, so it never outlives the test.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from _django import emit, setup


def call(loaded: Any, value: str) -> dict[str, Any]:
    """Call the plugin's ``upper`` filter; the outcome as JSON fields (never raises)."""
    try:
        return {"result": loaded.invoke("filter", "upper", value)}
    except Exception as exc:  # the probe reports failures, the test judges them
        return {"error": getattr(exc, "code", type(exc).__name__), "message": str(exc)}


def stale_call(loaded: Any, value: str, unloaded_at: float, limit: float = 2.0) -> None:
    """After an unload, retry a call through the old handle until the pool refuses it."""
    outcome = call(loaded, value)
    while "error" not in outcome and time.time() - unloaded_at < limit:
        time.sleep(0.01)
        outcome = call(loaded, value)
    emit(event="stale_call", slug=loaded.slug, after=round(time.time() - unloaded_at, 4), **outcome)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("slug")
    parser.add_argument("--every", type=float, default=0.02)
    parser.add_argument("--value", default="hello")
    args = parser.parse_args()
    setup()
    from gonext_plugins.conf import settings
    from gonext_plugins.registry import registry

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    current = registry.get(args.slug)
    emit(event="ready", slug=args.slug, loaded=current is not None, sync_interval=settings.SYNC_INTERVAL,
         generation=registry.generation)
    while not stop.wait(args.every):
        seen = registry.get(args.slug)
        now = time.time()
        if seen is current:
            continue
        if seen is not None:
            emit(event="change", t=now, loaded=True, version=seen.version, generation=registry.generation,
                 **call(seen, args.value))
        else:
            emit(event="change", t=now, loaded=False, generation=registry.generation)
            stale_call(current, args.value, now)
        current = seen
    registry.close()


if __name__ == "__main__":
    main()
