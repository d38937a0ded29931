"""System checks for every piece a site must provide, all reported at once (issue 15, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.checks import run_checks
from django.core.files.storage import InMemoryStorage, default_storage, storages
from django.test import modify_settings, override_settings

from gonext_plugins.asgi import RequestBodyLimit, with_plugins
from gonext_plugins.storage import get_storage
from tests.conftest import REPO

bare_application = get_asgi_application()
guarded_by_hand = ProtocolTypeRouter({"http": RequestBodyLimit(get_asgi_application())})
wrapped_application = with_plugins(get_asgi_application())


def _ids(**kwargs: Any) -> set[str]:
    return {m.id for m in run_checks(**kwargs) if m.id and m.id.startswith("gonext_plugins.")}


def test_an_unknown_key_does_not_hide_the_other_problems() -> None:
    with override_settings(DEBUG=False, GONEXT_PLUGINS={
        "MAX_BUNDEL_BYTES": 1, "MEMORY_PAGES": 70_000, "DEV_MODE": True,
        "SOFT_TIMEOUT_MS": 500, "HARD_TIMEOUT_MS": 100, "METRICS_TOKENS": ["short"],
        "HTTP_FETCH_ALLOW_PRIVATE": True, "API_DOCS": True,
    }), modify_settings(INSTALLED_APPS={"remove": ["drf_spectacular"]}):
        ids = _ids()
    assert {"gonext_plugins.E002", "gonext_plugins.E003", "gonext_plugins.E001", "gonext_plugins.E004",
            "gonext_plugins.E007", "gonext_plugins.W005", "gonext_plugins.E011"} <= ids


@pytest.mark.parametrize(("app", "check_id"), [
    ("rest_framework.authtoken", "gonext_plugins.E010"),
    ("drf_spectacular", "gonext_plugins.E011"),
    ("drf_spectacular_sidecar", "gonext_plugins.W007"),
    ("channels", "gonext_plugins.E012"),
    ("django.contrib.staticfiles", "gonext_plugins.E014"),
])
def test_a_missing_app_is_named(app: str, check_id: str) -> None:
    assert check_id not in _ids()
    with modify_settings(INSTALLED_APPS={"remove": [app]}):
        assert check_id in _ids()


@override_settings(GONEXT_PLUGINS={"API_DOCS": False})
def test_docs_off_need_no_docs_apps() -> None:
    with modify_settings(INSTALLED_APPS={"remove": ["drf_spectacular", "drf_spectacular_sidecar"]}):
        assert not {"gonext_plugins.E011", "gonext_plugins.W007"} & _ids()


def test_asgi_application_must_be_set() -> None:
    with override_settings(ASGI_APPLICATION=None):
        assert "gonext_plugins.E013" in _ids()


def test_static_files_need_a_server_when_debug_is_off() -> None:
    with override_settings(DEBUG=False, STATIC_ROOT=None):
        assert "gonext_plugins.W008" in _ids()
        with modify_settings(MIDDLEWARE={"append": "whitenoise.middleware.WhiteNoiseMiddleware"}):
            assert "gonext_plugins.W008" not in _ids()
    with override_settings(DEBUG=False, STATIC_ROOT="/srv/static"):
        assert "gonext_plugins.W008" not in _ids()


def test_urls_must_be_included() -> None:
    with override_settings(ROOT_URLCONF="project.blog.urls"):
        assert "gonext_plugins.E015" in _ids()


@pytest.mark.parametrize(("path", "warns"), [
    ("project.asgi.application", False),
    ("tests.test_integration_checks.wrapped_application", False),
    ("tests.test_integration_checks.guarded_by_hand", False),
    ("tests.test_integration_checks.bare_application", True),
    ("tests.test_integration_checks.no_such_application", True),
])
def test_deploy_check_looks_for_the_asgi_guard(path: str, warns: bool) -> None:
    with override_settings(ASGI_APPLICATION=path):
        assert ("gonext_plugins.W009" in _ids(include_deployment_checks=True)) is warns
        assert "gonext_plugins.W009" not in _ids()  # a deploy check only


def test_the_demo_passes_every_check_including_deploy() -> None:
    assert not _ids(include_deployment_checks=True)


def test_the_apps_api_gives_drf_spectacular_nothing_to_warn_about() -> None:
    """drf-spectacular's deploy check builds the site's whole schema, the app's API included: a
    warning there (W001, one choice set under two names) showed on every site that installs the app."""
    spectacular = [m for m in run_checks(include_deployment_checks=True)
                   if m.id and m.id.startswith("drf_spectacular.")]
    assert not spectacular, [m.msg for m in spectacular]


def test_an_empty_media_root_warns() -> None:
    with override_settings(MEDIA_ROOT=""):
        assert "gonext_plugins.W010" in _ids()
        with override_settings(GONEXT_PLUGINS={"CACHE_DIR": "/var/cache/plugins",
                                               "STORAGE": "django.core.files.storage.InMemoryStorage"}):
            assert "gonext_plugins.W010" not in _ids()
        with override_settings(GONEXT_PLUGINS={"CACHE_DIR": "/var/cache/plugins"},
                               STORAGES={**settings.STORAGES, "gonext_plugins": IN_MEMORY}):
            assert "gonext_plugins.W010" not in _ids()


IN_MEMORY = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


def test_the_blob_storage_is_the_storages_alias_or_the_older_setting() -> None:
    """``STORAGES["gonext_plugins"]`` names the blob store; ``GONEXT_PLUGINS["STORAGE"]`` still
    works, wins when both are set, and W012 says so."""
    assert get_storage() is default_storage
    with override_settings(STORAGES={**settings.STORAGES, "gonext_plugins": IN_MEMORY}):
        assert get_storage() is storages["gonext_plugins"]
        assert isinstance(get_storage(), InMemoryStorage)
        assert "gonext_plugins.W012" not in _ids()
        with override_settings(GONEXT_PLUGINS={"STORAGE": "tests.test_integration_checks.OtherStorage"}):
            assert isinstance(get_storage(), OtherStorage)
            assert "gonext_plugins.W012" in _ids()
    with override_settings(GONEXT_PLUGINS={"STORAGE": "tests.test_integration_checks.OtherStorage"}):
        assert isinstance(get_storage(), OtherStorage)
        assert "gonext_plugins.W012" not in _ids()


class OtherStorage(InMemoryStorage):
    """A storage class named by ``GONEXT_PLUGINS["STORAGE"]``."""


NO_PLUGIN_QUEUE = """
from tests.settings import *  # noqa: F403
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
"""

ENQUEUE = """
import django; django.setup()
from gonext_plugins.jobs.enqueue import enqueue_task
from gonext_plugins.errors import JobsNotConfigured
try:
    enqueue_task("demo", "job", {}, key=None, attempt=1, run_after=None)
except JobsNotConfigured as exc:
    print("refused:", exc.code)
"""


def test_a_site_without_the_plugin_queue_starts_and_is_told_how_to_fix_it(tmp_path: Any) -> None:
    """The task is defined when the app loads, where the backend refuses an unknown queue: the site
    must still start, its checks name the fix (E006), and nothing is queued meanwhile."""
    (tmp_path / "no_plugin_queue.py").write_text(NO_PLUGIN_QUEUE)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "no_plugin_queue",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    checked = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert "gonext_plugins.E006" in checked.stderr, checked.stderr
    assert "Traceback" not in checked.stderr, checked.stderr
    enqueued = subprocess.run([sys.executable, "-c", ENQUEUE], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert enqueued.stdout.strip() == "refused: jobs_not_configured", enqueued.stdout + enqueued.stderr


def test_shared_cache_must_name_a_cache_every_process_sees() -> None:
    redis = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    local = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    with override_settings(GONEXT_PLUGINS={"SHARED_CACHE": "shared"}):
        with override_settings(CACHES={"default": local}):
            assert "gonext_plugins.E016" in _ids()
        with override_settings(CACHES={"default": local, "shared": local}):
            assert {"gonext_plugins.W011"} <= _ids() and "gonext_plugins.E016" not in _ids()
        with override_settings(CACHES={"default": local, "shared": redis}):
            assert not {"gonext_plugins.E016", "gonext_plugins.W011"} & _ids()


def test_a_job_stall_limit_within_the_hard_timeout_warns() -> None:
    """W014: stall recovery would retry a job whose call may still be running."""
    for stall, hard_ms, warns in ((1, 1000, True), (2.0, 3000, True), (1.5, 1000, False),
                                  (None, 600_000, False)):
        with override_settings(GONEXT_PLUGINS={"JOB_STALL_SECONDS": stall, "HARD_TIMEOUT_MS": hard_ms}):
            assert ("gonext_plugins.W014" in _ids()) is warns, (stall, hard_ms)
