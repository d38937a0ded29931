"""/metrics carries the figures an operator alerts on: plugin states and jobs from the database
(cluster-wide), log lines dropped by the rate limit (this process), and whether the database
answered. Real database, real log writer, real guest; nothing mocked."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from gonext_plugins import lifecycle
from gonext_plugins.logs.writing import writer
from gonext_plugins.models import JobStatus, PluginJobRun

pytestmark = pytest.mark.django_db


def scrape(client, admin_user) -> str:  # type: ignore[no-untyped-def]
    client.force_login(admin_user)
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    return str(response.content.decode())


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample of ``name`` with exactly these labels, or None."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    return None


def job(slug: str, status: str, **fields: object) -> None:
    PluginJobRun.objects.create(id=f"{slug}-{status}-{PluginJobRun.objects.count()}", plugin_slug=slug,
                                job="echo", status=status, enqueued_at=timezone.now(), **fields)


def test_plugin_states_and_jobs_come_from_the_database(  # type: ignore[no-untyped-def]
        client, admin_user, make_bundle) -> None:
    lifecycle.install(make_bundle(slug="calm"), ["kv"], "tests", activate=True)
    lifecycle.install(make_bundle(slug="noisy"), ["kv"], "tests", activate=True)
    lifecycle.quarantine("noisy", "too many traps")
    job("calm", JobStatus.QUEUED)
    job("calm", JobStatus.QUEUED)
    job("calm", JobStatus.RETRYING)
    job("calm", JobStatus.FAILED, finished_at=timezone.now())
    job("calm", JobStatus.FAILED, finished_at=timezone.now() - timedelta(hours=2))  # outside the window
    job("calm", JobStatus.SUCCEEDED, finished_at=timezone.now())

    text = scrape(client, admin_user)
    assert value(text, "gonext_plugins_database_up") == 1
    assert value(text, "gonext_plugin_state", plugin="calm", state="active") == 1
    assert value(text, "gonext_plugin_state", plugin="noisy", state="quarantined") == 1
    assert value(text, "gonext_plugin_state", plugin="noisy", state="active") is None
    assert value(text, "gonext_plugin_jobs_unfinished", plugin="calm", status="queued") == 2
    assert value(text, "gonext_plugin_jobs_unfinished", plugin="calm", status="retrying") == 1
    assert value(text, "gonext_plugin_jobs_finished_recent", plugin="calm", status="failed") == 1
    assert value(text, "gonext_plugin_jobs_finished_recent", plugin="calm", status="succeeded") == 1


def test_log_lines_over_the_rate_limit_are_counted(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    with override_settings(GONEXT_PLUGINS={"LOG_RATE": 1, "LOG_BURST": 5}):
        writer.reset()
        for n in range(20):
            writer.submit("flooder", 1, f"line {n}", "guest")
        text = scrape(client, admin_user)
    assert value(text, "gonext_plugin_log_dropped_total", plugin="flooder") == 15


def test_a_database_outage_leaves_the_rest_of_metrics_up(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    client.force_login(admin_user)
    with connection.execute_wrapper(refuse_plugin_tables):
        response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    text = response.content.decode()
    assert value(text, "gonext_plugins_database_up") == 0
    assert "gonext_plugin_state{" not in text and "django_http_requests_total" in text


def refuse_plugin_tables(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
    """The database refusing the figures' queries, as a server going away mid-scrape does."""
    from django.db import OperationalError

    if "gonext_plugins_plugin" in sql and "SELECT" in sql and "session" not in sql:
        raise OperationalError("server closed the connection unexpectedly")
    return execute(sql, params, many, context)
