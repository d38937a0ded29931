"""Plugin log lines: where ``gn_log`` and the host's own events about a plugin go.

One job per module:

- :mod:`.sink`: the bounded queue and the per-plugin rate limit the runtime's sink feeds, from
  inside a guest call;
- :mod:`.writing`: the background thread that stores queued lines in batches (and :func:`flush`,
  which does its work in the calling thread), and this process's :data:`writer`;
- :mod:`.fanout`: sending stored lines to the Channels group ``gonext-logs.<slug>``;
- :mod:`.backlog`: reading the stored lines (the WebSocket consumer and the API's log endpoint);
- :mod:`.events`: the host's lines about a plugin, from faults and lifecycle signals.

This module re-exports them, so ``from gonext_plugins import logs; logs.flush()`` keeps working.
``logs.writer`` is the :mod:`.writing` module's object itself (``logs.writer.auto_start = False`` reaches
it). The version a line is tagged with comes from :data:`version_source`, which the registry's
owner assigns here in ``AppConfig.ready`` (this package sits beside the registry and does not
import it); the sink reads it from this module at each line.
"""

from __future__ import annotations

from collections.abc import Callable

from ..runtime import levels
from ..runtime.levels import DEBUG, ERROR, INFO, WARNING
from .backlog import backlog, last_line_id
from .events import record_fault
from .fanout import group_name
from .sink import QUEUE_MAX
from .writing import LogWriter, clean_message, flush, log_event, runtime_log_sink, writer

__all__ = ["DEBUG", "ERROR", "INFO", "LEVEL_NAMES", "QUEUE_MAX", "WARNING", "LogWriter", "backlog",
           "clean_message", "flush", "group_name", "last_line_id", "log_event", "record_fault",
           "runtime_log_sink", "version_source", "writer"]

LEVEL_NAMES = levels.NAMES


def _not_loaded(plugin: str) -> str:
    return ""


version_source: Callable[[str], str] = _not_loaded
"""``version_source(slug)``: the version this process runs of a plugin ("" when not loaded here).
A hook, not an import of the registry (which logs through this package): ``AppConfig.ready`` sets
it to the registry's answer."""
