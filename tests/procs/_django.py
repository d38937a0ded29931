"""Shared start-up for the helper processes: put the repo on the path and set Django up."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def setup() -> None:
    """Configure Django from the environment the test passed (DATABASE_URL, MEDIA_ROOT, ...)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


def emit(**fields: Any) -> None:
    """One JSON line on stdout, flushed at once: the test reads these as they come."""
    fields.setdefault("t", time.time())
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def serve_commands(run: Callable[[dict[str, Any]], dict[str, Any]], *, stamp_commit: bool = False) -> None:
    """The actors' loop: one JSON command per stdin line, one ``done`` line per command (typed
    errors as the API's error shape). ``stamp_commit`` adds ``committed_at``, taken right after
    ``run`` returned (after its transaction committed)."""
    setup()
    from gonext_plugins.errors import PluginError

    emit(event="ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            fields = run(command)
        except PluginError as exc:
            emit(event="done", op=command.get("op"), ok=False, **exc.as_dict())
            continue
        if stamp_commit:
            fields = {"committed_at": time.time(), **fields}
        emit(event="done", op=command["op"], ok=True, **fields)
