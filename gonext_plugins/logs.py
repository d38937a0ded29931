"""Plugin log lines: where ``gn_log`` and the host's own events about a plugin go."""

from __future__ import annotations

import logging

logger = logging.getLogger("gonext_plugins.plugin")

_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


def runtime_log_sink(plugin: str, level: int, message: str, source: str) -> None:
    """The runtime's ``log_sink``: one line from a guest (``source="guest"``) or the host."""
    logger.log(_LEVELS.get(level, logging.INFO), "[%s:%s] %s", plugin, source, message)
