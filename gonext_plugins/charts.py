"""Small charts as SVG strings, drawn on the server: the admin's cost pictures of each plugin.

Why server-side SVG: the admin runs under a strict Content-Security-Policy and the app fetches nothing
from a CDN, so a JavaScript chart library would have to be vendored and kept; a few dozen points per
chart need none. The output is inline ``<svg>`` markup that the CSP allows: no script, no ``style``
attribute (a strict ``style-src`` blocks those too), only presentation attributes and CSS classes
(``gn-chart*`` in ``static/gonext_plugins/admin.css``). Every label is escaped here, and each chart
carries ``<title>``/``<desc>`` for screen readers.

Django-free (plain data in, a string out) so it is testable alone; ``Markup`` tells Django's templates
that the string is already safe without this module importing Django.

Values are a sequence with one entry per step; ``None``, NaN and infinities are gaps (a step without
data), drawn as a break in the line or a missing bar, never as zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

Value = float | int | None

_ids = itertools.count(1)


class Markup(str):
    """A string of finished markup: Django's templates and ``format_html`` insert it unescaped
    (they honour ``__html__``), so the charts need not import Django."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def _finite(value: Value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number(value: Value, unit: str = "") -> str:
    """A short human figure: ``1,234``, ``12.3k``, ``4.5M``, ``0.42``; "—" for a gap."""
    figure = _finite(value)
    if figure is None:
        return "—"
    size = abs(figure)
    if size >= 1e15:
        text = f"{figure:.2e}"
    elif size >= 1e9:
        text = f"{figure / 1e9:.1f}G"
    elif size >= 1e6:
        text = f"{figure / 1e6:.1f}M"
    elif size >= 1e4:
        text = f"{figure / 1e3:.1f}k"
    elif figure == int(figure):
        text = f"{int(figure):,}"
    elif size >= 100:
        text = f"{figure:.0f}"
    elif size >= 1:
        text = f"{figure:.2f}"
    else:
        text = f"{figure:.3f}"
    return f"{text} {unit}".rstrip() if unit else text


def byte_size(value: Value) -> str:
    """Bytes as KiB/MiB (wasm memory grows in 64 KiB pages)."""
    figure = _finite(value)
    if figure is None:
        return "—"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if figure >= size:
            return f"{figure / size:.1f} {unit}"
    return f"{figure:.0f} B"


@dataclass(frozen=True)
class Scale:
    """The value range a chart maps to its height: from 0 (or the lowest value, if negative) to the
    highest value; a flat or empty series gets a range of 1 so nothing divides by zero."""

    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Scale:
        present = [v for v in values if v is not None]
        low = min([0.0, *present])
        high = max([0.0, *present])
        return cls(low, high if high > low else low + 1.0)

    def y(self, value: float, top: float, height: float) -> float:
        return top + height - (value - self.low) / (self.high - self.low) * height


def _svg(kind: str, width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    ident = f"gn-chart-{next(_ids)}"
    return Markup(
        f'<svg class="gn-chart gn-chart-{kind}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{ident}-t {ident}-d">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
        + "".join(body) + "</svg>")


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive present values as separate runs: a gap breaks the line."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        runs.append(current)
    return runs


def _headline(values: Sequence[float | None], counts: bool) -> tuple[str, float | None]:
    """A chart's one figure, the same on the chart and in its description: a count's window total
    (its latest step is the minute or hour under way, often still 0), else the latest value."""
    if counts and any(v is not None for v in values):
        return "total", sum(v for v in values if v is not None)
    return "latest", _latest(values)


def _describe(title: str, values: Sequence[float | None], fmt: Callable[[Value], str], window: str,
              headline: tuple[str, float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return f"{title}: no data {window}."
    return (f"{title} {window}: {len(values)} steps, lowest {fmt(min(present))}, "
            f"highest {fmt(max(present))}, {headline[0]} {fmt(headline[1])}.")


def _latest(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _line_body(values: Sequence[float | None], scale: Scale, left: float, top: float, width: float,
               height: float) -> list[str]:
    step = width / max(1, len(values) - 1)
    body: list[str] = []
    for run in _runs(values):
        points = " ".join(f"{left + i * step:.1f},{scale.y(v, top, height):.1f}" for i, v in run)
        if len(run) == 1:  # one point alone (or between gaps) shows as a dot, not an invisible line
            i, v = run[0]
            body.append(f'<circle class="gn-chart-dot" cx="{left + i * step:.1f}" '
                        f'cy="{scale.y(v, top, height):.1f}" r="1.8" fill="currentColor"/>')
        else:
            body.append(f'<polyline class="gn-chart-line" points="{points}" fill="none" '
                        f'stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/>')
    return body


def sparkline(values: Sequence[Value], title: str, *, window: str = "", width: int = 100,
              height: int = 22, fmt: Callable[[Value], str] = number, counts: bool = False) -> Markup:
    """A wordless line for a table cell; its title and description carry the figures (with
    ``counts``, the window's total rather than the latest step, as :func:`line_chart`'s bars)."""
    clean = [_finite(v) for v in values]
    scale = Scale.of(clean)
    body = [f'<line class="gn-chart-base" x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" '
            f'stroke="currentColor" stroke-width="0.5"/>']
    body += _line_body(clean, scale, 1, 2, width - 2, height - 4)
    return _svg("spark", width, height, title,
                _describe(title, clean, fmt, window, _headline(clean, counts)), body)


def line_chart(values: Sequence[Value], title: str, *, window: str, fmt: Callable[[Value], str] = number,
               bars: bool = False, width: int = 240, height: int = 72, label: str | None = None) -> Markup:
    """A small chart with its range and headline written on it: a line (times, memory) headed by its
    latest value or, with ``bars``, one bar per step (counts: calls, faults, jobs) headed by the
    window's total. Why a total: the latest step of a count is the minute or hour now under way,
    often still 0, which reads as "nothing happened". ``window`` says what span it covers; ``label``
    is the short name written on it (the full ``title`` is for screen readers)."""
    clean = [_finite(v) for v in values]
    scale = Scale.of(clean)
    headline = _headline(clean, bars)
    kind, figure = headline
    corner = f"{fmt(figure)} total" if kind == "total" else fmt(figure)
    left, top, right, bottom = 2.0, 14.0, 2.0, 12.0
    plot_w, plot_h = width - left - right, height - top - bottom
    body = [
        f'<text class="gn-chart-label" x="{left}" y="10" font-size="10" fill="currentColor">'
        f'{escape(label or title)}</text>',
        f'<text class="gn-chart-{kind}" x="{width - right}" y="10" font-size="10" text-anchor="end" '
        f'fill="currentColor">{escape(corner)}</text>',
        f'<line class="gn-chart-base" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}" stroke="currentColor" stroke-width="0.5"/>',
        f'<text class="gn-chart-range" x="{left}" y="{height - 1}" font-size="9" fill="currentColor">'
        f'{escape(f"{fmt(scale.low)} to {fmt(scale.high)}")}</text>',
        f'<text class="gn-chart-window" x="{width - right}" y="{height - 1}" font-size="9" '
        f'text-anchor="end" fill="currentColor">{escape(window)}</text>',
    ]
    if not any(v is not None for v in clean):
        body.append(f'<text class="gn-chart-empty" x="{width / 2}" y="{top + plot_h / 2 + 3}" font-size="10" '
                    f'text-anchor="middle" fill="currentColor">no data</text>')
    elif bars:
        slot = plot_w / max(1, len(clean))
        for i, value in enumerate(clean):
            if value is None or value == 0:
                continue
            y = scale.y(value, top, plot_h)
            zero = scale.y(0.0, top, plot_h)
            body.append(f'<rect class="gn-chart-bar" x="{left + i * slot + slot * 0.1:.1f}" '
                        f'y="{min(y, zero):.1f}" width="{max(slot * 0.8, 0.5):.1f}" '
                        f'height="{max(abs(zero - y), 0.5):.1f}" fill="currentColor"/>')
    else:
        body += _line_body(clean, scale, left, top, plot_w, plot_h)
    return _svg("bars" if bars else "lines", width, height, title,
                _describe(title, clean, fmt, window, headline), body)
