"""Warming a web process up before it accepts connections, so its first visitor is served like the
second one.

A fresh process pays for three things the first time a page is asked for, none of them per request:
loading the active plugins (the registry's first sync: compiled modules, instances, ``_initialize``),
building the template engine (Django imports every installed app's ``templatetags`` then, DRF's
bringing in requests and django.contrib.postgres) and filling the URL resolvers' reverse tables.
:func:`warm_up` does them at once. A server imports the site's ASGI (or WSGI) application before it
accepts a connection (uvicorn, and gunicorn in each worker), so ``with_plugins()`` runs it there when
``GONEXT_PLUGINS["WARM_UP"]`` is on; a site calls it itself from any other entry point.

Warming up is an optimisation, never a condition of starting: a plugin that cannot load is skipped
by the registry (with its usual log line and fault record), and any other failure of a step is
logged and left to the first request, which does the same work again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.template import Engine, engines
from django.urls import URLResolver, get_resolver
from django.urls.resolvers import get_ns_resolver

from .conf import settings
from .registry import registry
from .urls import DeferredURLResolver

logger = logging.getLogger("gonext_plugins.warmup")


@dataclass
class WarmUpReport:
    """What a warm-up did: plugins loaded (and skipped as incompatible), milliseconds per step, and
    the steps that failed (their work is left to the first request)."""

    plugins: int = 0
    incompatible: int = 0
    steps_ms: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return sum(self.steps_ms.values())


def _load_plugins(report: WarmUpReport) -> None:
    """The registry's first sync, as the first request would run it."""
    registry.sync()
    report.plugins = len(registry.loaded(sync=False))
    report.incompatible = len(registry.incompatible())


def _build_template_engines(report: WarmUpReport) -> None:
    """Every configured engine (a Django engine imports all template tag libraries as it is built),
    with a Django engine's loaders and context processors, which it imports on its first render."""
    for backend in engines.all():
        engine = getattr(backend, "engine", None)
        if isinstance(engine, Engine):
            engine.template_loaders  # noqa: B018  (cached properties: the first read imports)
            engine.template_context_processors  # noqa: B018


def _populate(resolver: URLResolver, ns_pattern: str = "", converters: dict[str, Any] | None = None) -> None:
    """Fill the reverse tables ``reverse()`` reads, for this resolver and every namespace under it.
    Django fills them lazily, one namespace at a time, and reverses a name inside a prefixed
    namespace (``admin:index``) through a resolver of its own, built and cached by
    ``get_ns_resolver`` from the prefix accumulated the way ``reverse()`` accumulates it: that
    resolver is built and filled here too. The API's URLconf stays deferred
    (``urls.DeferredURLResolver``): it brings DRF and drf-spectacular, which a page never needs."""
    if isinstance(resolver, DeferredURLResolver):
        return
    resolver._populate()
    if ns_pattern:
        get_ns_resolver(ns_pattern, resolver, tuple((converters or {}).items()))._populate()
    for extra, child in resolver.namespace_dict.values():
        _populate(child, ns_pattern + extra, {**(converters or {}), **child.pattern.converters})


def _populate_url_resolvers(report: WarmUpReport) -> None:
    _populate(get_resolver())


_STEPS = (("plugins", _load_plugins), ("templates", _build_template_engines),
          ("urls", _populate_url_resolvers))


def warm_up() -> WarmUpReport:
    """Load the active plugins, build the template engines and fill the URL resolvers now. Call it
    after ``django.setup()`` (``get_asgi_application()`` does that) and before serving. Never raises:
    a step that fails is logged with its traceback and left to the first request."""
    report = WarmUpReport()
    for name, step in _STEPS:
        started = time.perf_counter()
        try:
            step(report)
        except Exception:
            logger.exception("warm-up step %r failed; the first request will do it", name)
            report.failed.append(name)
        report.steps_ms[name] = round((time.perf_counter() - started) * 1000, 1)
    logger.info("warmed up in %.0f ms: %d plugins loaded, %d skipped as incompatible (%s)",
                report.total_ms, report.plugins, report.incompatible,
                ", ".join(f"{name} {ms:.0f} ms" for name, ms in report.steps_ms.items()))
    return report


def warm_up_on_start() -> WarmUpReport | None:
    """:func:`warm_up` when ``GONEXT_PLUGINS["WARM_UP"]`` is on (``with_plugins()`` calls this)."""
    return warm_up() if settings.WARM_UP else None
