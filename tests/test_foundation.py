"""The app's ground: settings object, system checks, models and metrics (the demo blog: tests/site/)."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from gonext_plugins.conf import DEFAULTS, settings
from gonext_plugins.models import AuditEvent, Plugin, PublisherKey


def _ids(**kwargs: object) -> set[str]:
    return {message.id for message in run_checks(**kwargs) if message.id}


def test_settings_have_defaults_and_reject_unknown_keys() -> None:
    assert settings.MAX_BUNDLE_BYTES == 10 * 1024 * 1024
    assert settings.SYNC_INTERVAL == DEFAULTS["SYNC_INTERVAL"]
    with override_settings(GONEXT_PLUGINS={"MAX_BUNDEL_BYTES": 1}):
        with pytest.raises(ImproperlyConfigured, match="MAX_BUNDEL_BYTES"):
            _ = settings.MAX_BUNDLE_BYTES
        assert "gonext_plugins.E002" in _ids()
    with override_settings(GONEXT_PLUGINS={"MAX_BUNDLE_BYTES": 2048}):
        assert settings.MAX_BUNDLE_BYTES == 2048
    assert settings.MAX_BUNDLE_BYTES == 10 * 1024 * 1024
    with pytest.raises(AttributeError):
        _ = settings.NOT_A_SETTING


@override_settings(DEBUG=False, GONEXT_PLUGINS={"DEV_MODE": True})
def test_dev_mode_without_debug_is_an_error() -> None:
    assert "gonext_plugins.E001" in _ids()


@override_settings(DEBUG=True, GONEXT_PLUGINS={"DEV_MODE": True})
def test_dev_mode_with_debug_is_fine() -> None:
    assert "gonext_plugins.E001" not in _ids()


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"MEMORY_PAGES": 70_000}, "gonext_plugins.E003"),
        ({"FUEL": -5}, "gonext_plugins.E003"),
        ({"SYNC_INTERVAL": 0}, "gonext_plugins.E003"),
        ({"SOFT_TIMEOUT_MS": 500, "HARD_TIMEOUT_MS": 100}, "gonext_plugins.E004"),
        ({"MIN_INSTANCES": 8, "MAX_INSTANCES": 2}, "gonext_plugins.E005"),
    ],
)
def test_limits_out_of_range_are_errors(overrides: dict[str, object], check_id: str) -> None:
    with override_settings(GONEXT_PLUGINS=overrides):
        assert check_id in _ids()


def test_default_configuration_is_clean() -> None:
    assert not {i for i in _ids() if i.startswith("gonext_plugins.")}


@override_settings(DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}})
def test_in_memory_layer_with_several_processes_warns() -> None:
    assert "gonext_plugins.W003" in _ids()


def test_a_redis_channel_layer_whose_reads_time_out_first_warns() -> None:
    """redis-py 8 reads time out at 5 s, as channels-redis's pops wait 5 s: a quiet WebSocket
    closed. The check names the host (without its password) until it reads for longer."""

    def layer(*hosts: object) -> dict[str, object]:
        return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                            "CONFIG": {"hosts": list(hosts)}}}

    url = "redis://:s3cret@cache.internal:6379/0"
    with override_settings(CHANNEL_LAYERS=layer(url)):
        [warning] = [m for m in run_checks() if m.id == "gonext_plugins.W016"]
        assert "redis://cache.internal:6379/0 (5 s)" in warning.msg and "s3cret" not in warning.msg
    with override_settings(CHANNEL_LAYERS=layer({"address": url, "socket_timeout": 3})):
        assert "gonext_plugins.W016" in _ids()
    for good in ({"address": url, "socket_timeout": 15}, {"address": url, "socket_timeout": None}):
        with override_settings(CHANNEL_LAYERS=layer(good)):
            assert "gonext_plugins.W016" not in _ids()


@pytest.mark.django_db
def test_no_trusted_key_warns_on_database_checks() -> None:
    assert "gonext_plugins.W001" in _ids(databases=["default"])
    PublisherKey.objects.create(name="k", public_key="A" * 44, fingerprint="f" * 64)
    assert "gonext_plugins.W001" not in _ids(databases=["default"])


@pytest.mark.django_db
def test_audit_events_are_append_only() -> None:
    plugin = Plugin.objects.create(slug="demo", name="Demo")
    event = AuditEvent.objects.create(action="install", plugin=plugin, plugin_slug="demo")
    event.details = {"changed": True}
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "install"


@pytest.mark.django_db
def test_metrics_endpoint_is_for_staff(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics").status_code == 403  # loopback is not trusted (a proxy is loopback)
    remote = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert remote.status_code == 403
    client.force_login(admin_user)
    staff = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert staff.status_code == 200
    assert b"django_http_requests_total" in staff.content


@pytest.mark.django_db
def test_huge_upload_is_refused_early(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(admin_user)
    too_big = b"x" * (settings.MAX_REQUEST_BYTES + 1)
    response = client.post("/admin/", data=too_big, content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert client.post("/admin/logout/").status_code in (200, 302)
