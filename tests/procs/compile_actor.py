"""A Django process of the compile-limits test (tests/security/test_compile_limits.py).

``argv[1]`` is a JSON object of ``GONEXT_PLUGINS`` overrides (the compile limits under test).
One JSON command per stdin line, one ``done`` line per command:

    {"op": "install", "bundle": PATH, "grant": [...]}  install and activate; the answer carries
        ``started``/``finished`` and ``child_cpu`` (CPU seconds of the compiler children it waited for)
    {"op": "writes", "stop_file": PATH}  a database write (trusting a fresh publisher key) every
        50 ms until ``stop_file`` exists, each reported as a ``write`` line with its duration
    {"op": "plugins"}  the slugs of the installed plugins
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _django import emit, serve_commands, setup

ACTOR = "tests: compile actor"
WRITES_MAX_SECONDS = 300.0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _writes(stop_file: Path) -> dict[str, Any]:
    from gonext_plugins import lifecycle, signing

    count = 0
    give_up = time.monotonic() + WRITES_MAX_SECONDS
    while not stop_file.exists() and time.monotonic() < give_up:
        _, public = signing.generate_key()
        started = time.time()
        clock = time.perf_counter()
        try:
            lifecycle.trust_key(f"writer {count}", public, ACTOR)
            error = None
        except Exception as exc:  # "database is locked" is what this test is about
            error = f"{type(exc).__name__}: {exc}"
        emit(event="write", started=started, seconds=time.perf_counter() - clock, error=error)
        count += 1
        time.sleep(0.05)
    return {"writes": count}


def run(command: dict[str, Any]) -> dict[str, Any]:
    from gonext_plugins import bundle, lifecycle
    from gonext_plugins.models import Plugin

    op = command["op"]
    if op == "install":
        data = bundle.read(Path(command["bundle"]).read_bytes())
        cpu_before, started = _child_cpu(), time.time()
        try:
            lifecycle.install(data, command.get("grant", []), ACTOR, activate=True)
            outcome: dict[str, Any] = {"installed": True}
        except Exception as exc:
            outcome = {"installed": False, "error_type": type(exc).__name__,
                       "error": getattr(exc, "code", ""), "detail": str(exc)}
        return {**outcome, "started": started, "finished": time.time(),
                "child_cpu": _child_cpu() - cpu_before}
    if op == "writes":
        return _writes(Path(command["stop_file"]))
    if op == "plugins":
        return {"plugins": sorted(Plugin.objects.values_list("slug", flat=True))}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    setup()
    from django.conf import settings

    from gonext_plugins.conf import settings as plugin_settings

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, **json.loads(sys.argv[1])}
    plugin_settings.reload()
    serve_commands(run)


if __name__ == "__main__":
    main()
