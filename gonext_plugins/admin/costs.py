"""Each plugin's cost, drawn: the charts of the plugin page, the "Plugin costs" dashboard, and the
changelist's sparkline and added-time column.

Why: a site owner's fear is not knowing what a plugin costs their pages. Every figure here comes
from the stats rollup (``gonext_plugins.stats``: all processes, per minute), never from one process,
and every chart says so and names its window. The SVG is drawn by ``gonext_plugins.charts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from .. import permissions as policy
from ..charts import Markup, byte_size, line_chart, number, sparkline
from ..models import Plugin
from ..stats import Point, RequestPoint, added_ms, added_ms_per_request, request_series, rollup, series
from ._common import AdminViewsMixin

SOURCE = "all processes"


@dataclass(frozen=True)
class Window:
    """A span the charts cover and the step of their points."""

    key: str
    span: timedelta
    step: timedelta
    label: str  # written on every chart of the window


HOUR = Window("hour", timedelta(hours=1), timedelta(minutes=1), "last hour · 1 min")
DAY = Window("day", timedelta(days=1), timedelta(hours=1), "last day · 1 h")
WINDOWS = (HOUR, DAY)


def _ms(value: float | int | None) -> str:
    return number(value, "ms")


@dataclass(frozen=True)
class Metric:
    """One chart of a plugin: what it shows, where the value comes from, how it is printed."""

    key: str
    title: str
    value: Callable[[Point, RequestPoint], float | int | None]
    fmt: Callable[[float | int | None], str] = number
    bars: bool = False


METRICS = (
    Metric("calls", "Calls", lambda p, _: p.calls, bars=True),
    Metric("p50", "p50 time", lambda p, _: p.p50_ms, _ms),
    Metric("p99", "p99 time", lambda p, _: p.p99_ms, _ms),
    Metric("added", "Added time per request", lambda p, r: added_ms(p, r.requests), _ms),
    Metric("fuel", "Fuel", lambda p, _: p.fuel if p.calls else None),
    Metric("memory", "Peak memory", lambda p, _: p.memory_peak or None, byte_size),
    Metric("faults", "Faults", lambda p, _: p.faults, bars=True),
    Metric("jobs", "Jobs run", lambda p, _: p.jobs_run, bars=True),
)


def window_charts(slug: str, window: Window, now: datetime, requests: list[RequestPoint] | None = None,
                  *, width: int = 220) -> list[dict[str, Any]]:
    """``slug``'s charts over ``window``: one per :data:`METRICS`, each with its SVG and latest value.
    ``requests`` (the site's, the same for every plugin) may be passed in to read them once."""
    since = now - window.span + window.step
    points = series(slug, since, window.step, until=now)
    if requests is None:
        requests = request_series(since, window.step, until=now)
    charts = []
    for metric in METRICS:
        values = [metric.value(point, req) for point, req in zip(points, requests, strict=True)]
        charts.append({"key": metric.key, "title": metric.title, "values": values,
                       "svg": line_chart(values, f"{metric.title} of {slug} ({SOURCE})", label=metric.title,
                                         window=window.label, fmt=metric.fmt, bars=metric.bars,
                                         width=width)})
    return charts


def plugin_page_charts(slug: str) -> dict[str, Any]:
    """The plugin page's cost section: the last hour and the last day, after this process's flush."""
    rollup.flush()
    now = datetime.now(tz=UTC)
    return {"enabled": rollup.enabled, "source": SOURCE,
            "windows": [{"window": window, "charts": window_charts(slug, window, now)} for window in WINDOWS]}


def calls_sparklines(slugs: list[str]) -> dict[str, Markup]:
    """The changelist's sparkline per plugin: calls per minute over the last hour, all processes."""
    now = datetime.now(tz=UTC)
    since = now - HOUR.span + HOUR.step
    return {slug: sparkline([p.calls for p in series(slug, since, HOUR.step, until=now)],
                            f"Calls per minute of {slug}", window=f"{HOUR.label}, {SOURCE}", counts=True)
            for slug in slugs}


def added_cell(value: float | None) -> str:
    """The changelist's added-time column: hook time per request, or why there is no figure."""
    if value is None:
        return format_html('<span class="gn-quiet">{}</span>', "no requests counted")
    return format_html('<span class="gn-added" title="{}">{}</span>',
                       "guest time in hook calls ÷ the site's requests, all processes, last hour",
                       f"+{value:.3f} ms")


SORTS = {"added": "added", "calls": "calls", "name": "name"}


def cost_rows(order: str) -> list[dict[str, Any]]:
    """The dashboard's rows: every plugin with its last-hour figures and charts, sorted by ``order``
    (``added``, ``calls`` or ``name``; a leading ``-`` reverses it)."""
    rollup.flush()
    plugins = list(Plugin.objects.order_by("slug"))
    now = datetime.now(tz=UTC)
    added = added_ms_per_request([p.slug for p in plugins], now - HOUR.span)
    since = now - HOUR.span + HOUR.step
    requests = request_series(since, HOUR.step, until=now)
    rows = []
    for plugin in plugins:
        charts = window_charts(plugin.slug, HOUR, now, requests, width=180)
        calls = sum(value or 0 for value in charts[0]["values"])
        rows.append({"plugin": plugin, "added": added.get(plugin.slug), "calls": calls, "charts": charts})
    key = order.lstrip("-")
    sort_key: Callable[[dict[str, Any]], Any] = {
        "added": lambda row: (row["added"] is not None, row["added"] or 0.0),
        "calls": lambda row: row["calls"],
        "name": lambda row: row["plugin"].name.lower(),
    }[SORTS.get(key, "added")]
    rows.sort(key=sort_key, reverse=order.startswith("-"))
    return rows


class CostAdminViews(AdminViewsMixin):
    """The "Plugin costs" dashboard of ``PluginAdmin`` (``<changelist>/costs/``): who may see plugins
    may see it (``can_view_plugins``)."""

    def costs_view(self, request: HttpRequest) -> HttpResponse:
        if not policy.can_view_plugins(request.user):
            raise PermissionDenied
        order = request.GET.get("o", "-added")
        if order.lstrip("-") not in SORTS:
            order = "-added"
        return self._render(request, "admin/gonext_plugins/plugin/costs.html", "Plugin costs",
                            rows=cost_rows(order), order=order, window=HOUR, source=SOURCE,
                            enabled=rollup.enabled, metrics=METRICS)
