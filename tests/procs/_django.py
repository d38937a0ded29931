"""Shared start-up for the helper processes: put the repo on the path and set Django up."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def setup() -> None:
    """Configure Django from the environment the test passed (DATABASE_URL, MEDIA_ROOT, ...)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def emit(**fields: Any) -> None:
    """One JSON line on stdout, flushed at once: the test reads these as they come."""
    fields.setdefault("t", time.time())
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()
