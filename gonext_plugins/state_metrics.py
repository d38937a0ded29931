"""Prometheus figures of the site's plugin state, read at scrape time: what an operator alerts on.

The runtime's metrics (:mod:`gonext_plugins.runtime.metrics`) count what this process did. Plugin
states and jobs are cluster-wide facts that live in the database, and job workers serve no
``/metrics`` of their own, so these are read from the database when ``/metrics`` is scraped (two
grouped queries): every web process reports the same cluster-wide values (aggregate with ``max``).
Log lines dropped by the rate limit are counted per process, as the limiter is.

A scrape during a database outage still answers: the database figures are left out and
``gonext_plugins_database_up`` says 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .logs.writing import writer
from .models import Plugin, PluginJobRun

logger = logging.getLogger("gonext_plugins.metrics")

RECENT = timedelta(hours=1)
"""The window of ``gonext_plugin_jobs_finished_recent``."""


class PluginStateCollector(Collector):
    """Plugin states, unfinished and recently finished jobs (database), log drops (this process)."""

    def describe(self) -> Iterator[Metric]:
        """The families, empty: what registration asks for, so importing this runs no query."""
        yield CounterMetricFamily("gonext_plugin_log_dropped", "", labels=["plugin"])
        yield GaugeMetricFamily("gonext_plugins_database_up", "")
        yield GaugeMetricFamily("gonext_plugin_state", "", labels=["plugin", "state"])
        yield GaugeMetricFamily("gonext_plugin_jobs_unfinished", "", labels=["plugin", "status"])
        yield GaugeMetricFamily("gonext_plugin_jobs_finished_recent", "", labels=["plugin", "status"])

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "gonext_plugin_log_dropped", "Log lines this process dropped over the plugin's log rate limit.",
            labels=["plugin"])
        for plugin, bucket in list(writer.buckets.items()):
            dropped.add_metric([plugin], bucket.total_dropped)
        yield dropped
        up = GaugeMetricFamily("gonext_plugins_database_up",
                               "1 when the plugin state and job figures could be read from the database.")
        try:
            states, unfinished, finished = self._from_database()
        except Exception as exc:  # an outage must not take /metrics down with it
            logger.warning("plugin state metrics: the database could not be read: %s: %s",
                           type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (up, states, unfinished, finished)

    @staticmethod
    def _from_database() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        states = GaugeMetricFamily("gonext_plugin_state",
                                   "1 for each installed plugin, labelled with its state.",
                                   labels=["plugin", "state"])
        for slug, state in Plugin.objects.values_list("slug", "state"):
            states.add_metric([slug, state], 1)
        unfinished = GaugeMetricFamily("gonext_plugin_jobs_unfinished",
                                       "Jobs queued, running, retrying or waiting, by status.",
                                       labels=["plugin", "status"])
        finished = GaugeMetricFamily("gonext_plugin_jobs_finished_recent",
                                     "Jobs that finished within the last hour, by final status.",
                                     labels=["plugin", "status"])
        rows = (PluginJobRun.objects
                .filter(~Q(status__in=PluginJobRun.FINAL) | Q(finished_at__gte=timezone.now() - RECENT))
                .values_list("plugin_slug", "status").annotate(count=Count("pk")).order_by())
        for slug, status, count in rows:
            (finished if status in PluginJobRun.FINAL else unfinished).add_metric([slug, status], count)
        return states, unfinished, finished


REGISTRY.register(PluginStateCollector())
