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
# Knobs the tests lower in the child processes they start (the test process itself overrides
# ``settings.GONEXT_PLUGINS`` directly):
#   GONEXT_SYNC_INTERVAL           how often a process polls the generation number (cross-process tests)
#   GONEXT_JOB_RETRY_BASE_SECONDS  first retry delay of a trapped job (the jobs worker tests)
#   GONEXT_LOG_RATE / _BURST       the plugin log rate limit (the live-log browser test shows drops)
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
