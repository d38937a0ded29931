"""A fresh process of the object-storage tests: one operation, one JSON line, exit.

``python tests/procs/storage_probe.py install BUNDLE GRANT[,GRANT]`` installs and activates.
``python tests/procs/storage_probe.py load SLUG VALUE`` loads the active version the way the registry
does (``loading.load``: artifact cache first, blob store on a miss) and calls its ``upper`` filter.
``python tests/procs/storage_probe.py registry SLUG VALUE`` asks the registry instead (which turns a
failed load into a log line, not an exception).

Every line reports the S3 requests this process made (botocore's ``before-call.s3`` event, counted on
the storage's own client) and the artifact cache's hits, misses and rejected files; a typed error is
reported by its ``code``, anything else would end the process with a traceback (the test fails).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _django import emit, setup


def count_s3_calls(storage: Any) -> Counter[str]:
    """Count the S3 operations the blob storage's client makes, by name."""
    calls: Counter[str] = Counter()

    def seen(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    storage.connection.meta.client.meta.events.register("before-call.s3", seen)
    return calls


def main() -> None:
    op, *args = sys.argv[1:]
    setup()
    from gonext_plugins import bundle, lifecycle, loading
    from gonext_plugins.errors import PluginError
    from gonext_plugins.models import Plugin, PluginFault
    from gonext_plugins.registry import registry
    from gonext_plugins.storage import get_storage

    calls = count_s3_calls(get_storage())
    fields: dict[str, Any] = {"op": op}
    try:
        if op == "install":
            data = bundle.read(Path(args[0]).read_bytes())
            result = lifecycle.install(data, args[1].split(","), "tests: storage probe", activate=True)
            fields.update(changed=result.changed)
        elif op == "load":
            slug, value = args
            version = Plugin.objects.get(slug=slug).active_version
            assert version is not None
            started = time.perf_counter()
            loaded = loading.load(slug, version, frozenset(["hooks.subscribe"]), ())
            # A figure for the report, never asserted on.
            fields.update(load_ms=round((time.perf_counter() - started) * 1000, 1),
                          result=loaded.invoke("filter", "upper", value))
        elif op == "registry":
            slug, value = args
            loaded = registry.get(slug)
            fields.update(loaded=loaded is not None,
                          faults=PluginFault.objects.filter(plugin__slug=slug).count())
            if loaded is not None:
                fields.update(result=loaded.invoke("filter", "upper", value))
        else:
            raise SystemExit(f"unknown op {op!r}")
    except PluginError as exc:
        fields.update(error=exc.code, detail=exc.message)
    cache = loading.runtime().cache
    assert cache is not None
    emit(**fields, s3_calls=dict(calls), cache_hits=cache.hits, cache_misses=cache.misses,
         cache_rejected=cache.rejected)
    registry.close()


if __name__ == "__main__":
    main()
