"""Reading a plugin's stored log lines: the one backlog query of the WebSocket consumer and the
API's log endpoint."""

from __future__ import annotations

from datetime import datetime

from ..models import PluginLogEntry
from ..runtime.levels import DEBUG


def backlog(slug: str, *, limit: int, min_level: int = DEBUG, after_id: int | None = None,
            since: datetime | None = None, text: str = "") -> list[PluginLogEntry]:
    """Stored lines of one plugin, oldest first: the first ``limit`` lines after line ``after_id``
    (tailing), or else the newest ``limit`` lines (at or after ``since`` when given). ``min_level``
    and ``text`` (already casefolded; matched like the live page matches, after the database
    narrowed the lines) filter them. The one backlog query of the WebSocket consumer and the API."""
    rows = PluginLogEntry.objects.filter(plugin=slug)
    if min_level:
        rows = rows.filter(level__gte=min_level)
    if text:
        rows = rows.filter(message__icontains=text)
    if after_id is not None:
        lines = list(rows.filter(id__gt=after_id).order_by("id")[:limit])
    else:
        if since is not None:
            rows = rows.filter(time__gte=since)
        lines = list(reversed(rows.order_by("-id")[:limit]))
    if text:
        lines = [line for line in lines if text in line.message.casefold()]
    return lines


def last_line_id(slug: str) -> int:
    """The id of the newest stored line of one plugin (0 when it has none), whatever its level."""
    newest = PluginLogEntry.objects.filter(plugin=slug).order_by("-id").values_list("id", flat=True)
    return newest.first() or 0
