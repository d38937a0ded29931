"""Log levels of plugin log lines: the one table of ABI.md's ``gn_log`` levels.

The runtime's default sink, the log writer, the ``log`` host function, the WebSocket consumer and
the API all read levels from here, so a name, a number and its Python ``logging`` level cannot drift
apart. Django-free (layer 1), like the rest of ``runtime/``.
"""

from __future__ import annotations

import logging
from typing import Any

DEBUG, INFO, WARNING, ERROR = 0, 1, 2, 3
"""ABI.md's levels, lowest first."""

NAMES: dict[int, str] = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}
"""Each level's one spelling, as the API, the live page and the ``log`` host function show it."""

BY_NAME: dict[str, int] = {name: number for number, name in NAMES.items()}
"""The canonical names the API accepts (``?level=warning``)."""

ALIASES: dict[str, int] = {"warn": WARNING}
"""Extra spellings a plugin may pass to the ``log`` host function (SDKs write ``warn``)."""

PYTHON: dict[int, int] = {DEBUG: logging.DEBUG, INFO: logging.INFO, WARNING: logging.WARNING,
                          ERROR: logging.ERROR}
"""The Python ``logging`` level of each, for the runtime's default sink."""


def parse(value: Any) -> int | None:
    """A level from a name (any case, aliases included) or a number 0-3; None for anything else
    (booleans included, although ``True == 1``)."""
    if isinstance(value, str):
        name = value.lower()
        return BY_NAME.get(name, ALIASES.get(name))
    if isinstance(value, int) and not isinstance(value, bool) and DEBUG <= value <= ERROR:
        return value
    return None


def clamp(value: int) -> int:
    """``value`` forced into DEBUG..ERROR (a stored or requested level from outside)."""
    return min(max(int(value), DEBUG), ERROR)
