"""Settings of the test suite: the demo site's settings, with what only tests want.

pytest runs with these (``[tool.pytest.ini_options]`` in pyproject.toml), and so do the child
processes a test starts when it needs one of the knobs below (``DJANGO_SETTINGS_MODULE=tests.settings``);
children that exercise the demo site as a user runs it (``make demo``, the plugin authors' guide)
keep ``project.settings``. The demo's settings read no test knob from the environment: the knobs live
here, where a test that starts a child process can still pass them through the environment.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403  (the demo site, overridden below)
from project.settings import DATABASES, GONEXT_PLUGINS

# The default hasher (PBKDF2) costs over a second per user on the 2-core test machine; tests create
# many users. MD5 is only acceptable because nothing here protects a real password.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A named test database (an SQLite file instead of Django's in-memory default, or a PostgreSQL
# database name): pytest-django suffixes it per xdist worker, so parallel workers do not share it.
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"]["NAME"] = os.environ["TEST_DATABASE_NAME"]
elif DATABASES["default"]["ENGINE"].endswith(".sqlite3"):
    # Said explicitly, the in-memory default is left alone by pytest-django's per-worker suffix (it
    # only recognises Django's own engine path, not django_prometheus' wrapper, and would otherwise
    # name a file "test_<path>_gw0"). Each xdist worker is its own process: its memory is its own.
    DATABASES["default"]["TEST"]["NAME"] = ":memory:"

GONEXT_PLUGINS = {**GONEXT_PLUGINS}
# Test modules build the ASGI application at import, before the test database exists: no warm-up
# there; the start-up tests turn it on in the processes they start (GONEXT_WARM_UP=1).
GONEXT_PLUGINS["WARM_UP"] = os.environ.get("GONEXT_WARM_UP") == "1"
# Knobs the tests lower in the child processes they start (the test process itself overrides
# ``settings.GONEXT_PLUGINS`` directly):
#   GONEXT_SYNC_INTERVAL           how often a process polls the generation number (cross-process tests)
#   GONEXT_JOB_RETRY_BASE_SECONDS  first retry delay of a trapped job (the jobs worker tests)
#   GONEXT_LOG_RATE / _BURST       the plugin log rate limit (the live-log browser test shows drops)
#   GONEXT_JOB_MAX_QUEUED          unfinished jobs per plugin (the RQ jobs test fills the quota)
#   GONEXT_HARD_TIMEOUT_MS         a guest call's hard deadline (the cross-process kv races wait for
#                                  SQLite's write lock, whose busy handler is not fair, on a loaded box)
for _key, _var in (("SYNC_INTERVAL", "GONEXT_SYNC_INTERVAL"),
                   ("JOB_RETRY_BASE_SECONDS", "GONEXT_JOB_RETRY_BASE_SECONDS"),
                   ("LOG_RATE", "GONEXT_LOG_RATE"), ("LOG_BURST", "GONEXT_LOG_BURST")):
    if os.environ.get(_var):
        GONEXT_PLUGINS[_key] = float(os.environ[_var])
#   GONEXT_FUEL                    "none" turns fuel metering off (the cluster test's job spins
#                                  until its worker is killed); a number sets the budget
#   GONEXT_JOB_STALL_SECONDS       when a killed worker's job is retried (the cluster test)
if os.environ.get("GONEXT_FUEL"):
    GONEXT_PLUGINS["FUEL"] = None if os.environ["GONEXT_FUEL"] == "none" else int(os.environ["GONEXT_FUEL"])
if os.environ.get("GONEXT_JOB_STALL_SECONDS"):
    GONEXT_PLUGINS["JOB_STALL_SECONDS"] = float(os.environ["GONEXT_JOB_STALL_SECONDS"])
if os.environ.get("GONEXT_HARD_TIMEOUT_MS"):
    GONEXT_PLUGINS["HARD_TIMEOUT_MS"] = int(os.environ["GONEXT_HARD_TIMEOUT_MS"])

# The stats rollup (a flush at request end every STATS_FLUSH_INTERVAL) is off in tests unless one
# turns it on (override, or GONEXT_STATS_FLUSH_INTERVAL in a child process): a flush due in the middle
# of an unrelated test would add queries to its request.
GONEXT_PLUGINS["STATS_FLUSH_INTERVAL"] = (float(os.environ["GONEXT_STATS_FLUSH_INTERVAL"])
                                          if os.environ.get("GONEXT_STATS_FLUSH_INTERVAL") else None)
# GONEXT_TEST_BLOB_STORAGE: a JSON ``STORAGES`` entry for the plugin blob store (tests/servers.py's
# ``S3Server.storages_entry()``), so a child process keeps its blobs on the S3 server the test
# started. boto3's client settings are not JSON: short timeouts and few retries are set here, so an
# unreachable server fails a call in seconds, as the outage tests expect.
if os.environ.get("GONEXT_TEST_BLOB_STORAGE"):
    import json

    from botocore.config import Config
    from django.conf import global_settings

    _blob_storage = json.loads(os.environ["GONEXT_TEST_BLOB_STORAGE"])
    if _blob_storage["BACKEND"].startswith("storages.backends.s3"):
        _blob_storage["OPTIONS"]["client_config"] = Config(
            connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"})
    STORAGES = {**global_settings.STORAGES, "gonext_plugins": _blob_storage}
for _key, _var in (("HARD_TIMEOUT_MS", "GONEXT_HARD_TIMEOUT_MS"),
                   ("JOB_MAX_QUEUED", "GONEXT_JOB_MAX_QUEUED")):
    if os.environ.get(_var):
        GONEXT_PLUGINS[_key] = int(os.environ[_var])
