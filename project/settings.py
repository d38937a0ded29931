"""Settings of the demo site. Everything environment-specific comes from environment variables,
so the same settings serve `make demo` and a multi-process deployment; tests/settings.py builds on
them for the test suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "demo-insecure-secret-key-change-me")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served locally: no CDN needed
    "django_tasks",
    "django_tasks_db",  # the database task backend and its `db_worker` command
    "gonext_plugins",
    "project.blog",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "gonext_plugins.middleware.DatabaseUnavailableMiddleware",
    "gonext_plugins.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gonext_plugins.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gonext_plugins.middleware.RolloutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = None

# Database: DATABASE_URL (sqlite:///path by default, postgres://... past one machine).
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# CONN_HEALTH_CHECKS: a connection cut by a database restart is replaced at the next request
# instead of failing it (matters when CONN_MAX_AGE keeps connections between requests).
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes share the file: wait for locks instead of failing at once, and use WAL
    # so readers do not block the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
DATABASES["default"].setdefault("TEST", {})  # tests/settings.py may name the test database

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channels: the in-memory layer serves one process; REDIS_URL switches to channels-redis. Its
# receive waits on Redis in pops of 5 s; redis-py 8 ends any read after 5 s (socket_timeout), so a
# quiet WebSocket (a live log page with nothing to show) would close at the first 5 s without a
# line. A longer read timeout fixes that (check gonext_plugins.W016 says when it is missing).
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Background jobs: Django's Tasks framework (the django-tasks backport on Django 5.2) with the database
# backend; `manage.py db_worker --queue-name plugin` runs plugin jobs (`make demo` starts one).
# TASKS_BACKEND=rq (with REDIS_URL) queues them in Redis instead, run by
# `manage.py rqworker plugin --job-class django_tasks_rq.Job --worker-class rq.worker.SimpleWorker
# --with-scheduler` (docs/jobs.md "Queue engines").
TASK_BACKENDS = {"db": "django_tasks_db.DatabaseBackend", "rq": "django_tasks_rq.RQBackend"}
TASKS_BACKEND = os.environ.get("TASKS_BACKEND", "db")
if TASKS_BACKEND not in TASK_BACKENDS:
    raise ValueError(f"TASKS_BACKEND must be 'db' or 'rq', not {TASKS_BACKEND!r}")
if TASKS_BACKEND == "rq":
    if not REDIS_URL:
        raise ValueError("TASKS_BACKEND=rq needs REDIS_URL")
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    RQ_QUEUES = {name: {"URL": REDIS_URL} for name in ("default", "plugin")}
TASKS = {
    "default": {
        "BACKEND": TASK_BACKENDS[TASKS_BACKEND],
        "QUEUES": ["default", "plugin"],
    }
}

CACHES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"},
}
# GONEXT_SHARED_CACHE_URL (redis://...; usually REDIS_URL's server): a cache every process shares, so
# the plugin log rate limit and the API throttles are the cluster's, not each process's. Short
# socket timeouts: a hung Redis costs a log call one second, after which the process falls back to
# its local limit for a few seconds (gonext_plugins/cluster.py).
SHARED_CACHE_URL = os.environ.get("GONEXT_SHARED_CACHE_URL")
if SHARED_CACHE_URL:
    CACHES["shared"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": SHARED_CACHE_URL,
        "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
    }

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))

# Plugin blobs: on local disk under MEDIA_ROOT, or in S3-compatible object storage shared by every
# machine when GONEXT_S3_BUCKET is set (django-storages; credentials from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, which boto3 reads itself). Compiled modules stay per machine, under
# MEDIA_ROOT (GONEXT_PLUGINS["CACHE_DIR"]).
if os.environ.get("GONEXT_S3_BUCKET"):
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "gonext_plugins": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": os.environ["GONEXT_S3_BUCKET"],
            "endpoint_url": os.environ.get("GONEXT_S3_ENDPOINT_URL") or None,  # None: AWS itself
            "region_name": os.environ.get("GONEXT_S3_REGION") or None,
            # "path" for servers without virtual-host buckets (MinIO, SeaweedFS).
            "addressing_style": os.environ.get("GONEXT_S3_ADDRESSING_STYLE") or None,
            "file_overwrite": True,  # blob names are their sha256: the same name is the same bytes
        }},
    }

# Form fields (not files) up to the body cap: a bundle is capped at 10 MiB, the body at 12 MiB
# (GONEXT_PLUGINS["MAX_REQUEST_BYTES"], enforced by gonext_plugins.asgi.RequestBodyLimit).
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
# FILE_UPLOAD_MAX_MEMORY_SIZE stays at Django's 2.5 MiB: it is also how much of each request body
# Django's ASGI handler keeps in memory before spooling to disk, so concurrent uploads near the cap
# do not each hold 12 MiB of RAM.

LOGIN_URL = "admin:login"

# The plugin API needs nothing here: its views carry their own authentication, permissions,
# renderers, exception handler and schema class. A site may tune the API's throttle budgets with
# "DEFAULT_THROTTLE_RATES": {"gonext_plugins.read": "600/min", "gonext_plugins.write": "120/min"}.
REST_FRAMEWORK: dict[str, object] = {}

GONEXT_PLUGINS = {
    # Dev mode (unsigned bundles, the dev install endpoint) only where DEBUG is on and asked for.
    "DEV_MODE": DEBUG and os.environ.get("GONEXT_DEV_MODE", "0") == "1",
    # The pages "Preview on a page" suggests: the home page and the latest post.
    "PREVIEW_SUGGESTIONS": "project.blog.plugins.preview_suggestions",
    "SHARED_CACHE": "shared" if SHARED_CACHE_URL else None,
    # Load the active plugins and build the template engine when asgi.py is imported, before the
    # server accepts connections (docs/deploy.md "Start-up"); GONEXT_WARM_UP=0 leaves it to the
    # first request.
    "WARM_UP": os.environ.get("GONEXT_WARM_UP", "1") == "1",
}
# The test knobs (sync interval, job retry delay, log rate) live in tests/settings.py.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"gonext_plugins": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")}},
}
