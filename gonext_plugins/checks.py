"""System checks: each misconfiguration gets a stable id and a hint that says the fix.

Ids are stable: ``gonext_plugins.E001`` will always mean the same thing, so sites can silence a
warning knowingly with ``SILENCED_SYSTEM_CHECKS``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from .asgi import PluginsApplication, RequestBodyLimit, inspecting
from .conf import DEFAULTS, RANGES, SETTINGS, parse_networks, settings
from .lifecycle.compat import incompatible_active
from .models import PluginRollout
from .storage import STORAGE_ALIAS

logger = logging.getLogger("gonext_plugins.checks")

# RANGES is imported from conf for the check below (and so that checks.RANGES, its old home, still
# works): each bound is declared once, beside its setting's default, type and doc.


@register(Tags.security, deploy=False)
def check_dev_mode(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Dev mode installs unsigned code and opens an install endpoint: never on a live site."""
    if settings.known("DEV_MODE") and not django_settings.DEBUG:
        return [
            Error(
                "GONEXT_PLUGINS['DEV_MODE'] is on while DEBUG is off.",
                hint="Dev mode installs unsigned plugins and exposes /_/plugins/dev/install. "
                "Turn it off in production, or turn DEBUG on for local development.",
                id="gonext_plugins.E001",
            )
        ]
    return []


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Unknown keys and values out of range: an unknown key is reported beside, not instead of, the
    problems of the known ones (every check reads known keys through ``settings.known``)."""
    problems: list[CheckMessage] = []
    unknown = settings.unknown_keys
    if unknown:
        problems.append(Error(
            f"Unknown GONEXT_PLUGINS setting(s): {', '.join(unknown)}.",
            hint=f"Fix the key's spelling or remove it. Known settings: {', '.join(sorted(SETTINGS))}.",
            id="gonext_plugins.E002",
        ))
    for key, (low, high) in RANGES.items():  # generated from conf's table: each Setting's range
        value = settings.known(key)
        if value is None and SETTINGS[key].nullable:
            continue  # e.g. FUEL None: metering off, allowed; deadlines still bound each call
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            problems.append(
                Error(
                    f"GONEXT_PLUGINS[{key!r}] = {value!r} is out of range.",
                    hint=f"Use a number from {low:g} to {high:g} (default {DEFAULTS[key]!r}).",
                    id="gonext_plugins.E003",
                )
            )
    soft, hard = settings.known("SOFT_TIMEOUT_MS"), settings.known("HARD_TIMEOUT_MS")
    if isinstance(soft, int | float) and isinstance(hard, int | float) and hard < soft:
        problems.append(
            Error(
                f"HARD_TIMEOUT_MS ({hard}) is below SOFT_TIMEOUT_MS ({soft}).",
                hint="The hard deadline stops the call; the soft one only warns. Make hard >= soft.",
                id="gonext_plugins.E004",
            )
        )
    low_inst, high_inst = settings.known("MIN_INSTANCES"), settings.known("MAX_INSTANCES")
    if isinstance(low_inst, int) and isinstance(high_inst, int) and low_inst > high_inst:
        problems.append(
            Error(
                f"MIN_INSTANCES ({low_inst}) is above MAX_INSTANCES ({high_inst}).",
                hint="Lower MIN_INSTANCES or raise MAX_INSTANCES.",
                id="gonext_plugins.E005",
            )
        )
    return problems


MIN_METRICS_TOKEN_LENGTH = 16


@register(Tags.security)
def check_metrics_access(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Who may read /metrics beside staff: bearer tokens long enough not to guess, and addresses
    that parse (a typo would silently lock the scraper out, or a ``/0`` let everyone in)."""
    tokens, addresses = settings.known("METRICS_TOKENS"), settings.known("METRICS_ALLOWED_ADDRESSES")
    problems: list[CheckMessage] = []
    if isinstance(tokens, str) or not all(isinstance(t, str) and len(t) >= MIN_METRICS_TOKEN_LENGTH
                                          for t in tokens):
        problems.append(Error(
            "GONEXT_PLUGINS['METRICS_TOKENS'] must be a list of strings of at least "
            f"{MIN_METRICS_TOKEN_LENGTH} characters.",
            hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            id="gonext_plugins.E007",
        ))
    networks, invalid = parse_networks([addresses] if isinstance(addresses, str) else addresses)
    if isinstance(addresses, str) or invalid:
        problems.append(Error(
            f"GONEXT_PLUGINS['METRICS_ALLOWED_ADDRESSES'] has values that are not addresses or "
            f"networks: {invalid or addresses!r}.",
            hint="Give a list such as ['10.0.0.5', '192.168.0.0/24'].",
            id="gonext_plugins.E008",
        ))
    if any(network.prefixlen == 0 for network in networks):
        problems.append(Error(
            "GONEXT_PLUGINS['METRICS_ALLOWED_ADDRESSES'] includes every address (a /0 network).",
            hint="List only the scrapers' addresses, or use METRICS_TOKENS.",
            id="gonext_plugins.E009",
        ))
    return problems


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """The in-memory channel layer cannot carry log lines or control messages between processes."""
    layers = getattr(django_settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if not backend:
        return [
            Warning(
                "No default channel layer is configured.",
                hint="Live logs need a channel layer: set CHANNEL_LAYERS['default'] "
                "(channels.layers.InMemoryChannelLayer for one process, channels_redis for several).",
                id="gonext_plugins.W002",
            )
        ]
    engine = django_settings.DATABASES.get("default", {}).get("ENGINE", "")
    several = int(os.environ.get("WEB_CONCURRENCY", "1") or 1) > 1 or "sqlite" not in engine
    if backend.endswith("InMemoryChannelLayer") and several:
        return [
            Warning(
                "The in-memory channel layer is used while several processes serve this site.",
                hint="Log lines reach only pages served by the process that logged them. "
                "Use channels_redis.core.RedisChannelLayer (set REDIS_URL in the demo).",
                id="gonext_plugins.W003",
            )
        ]
    if backend == "channels_redis.core.RedisChannelLayer":
        return _redis_layer_read_timeouts(layers["default"].get("CONFIG") or {})
    return []


def _redis_layer_read_timeouts(config: dict[str, Any]) -> list[CheckMessage]:
    """channels-redis receives by blocking pops of ``brpop_timeout`` (5 s); a Redis read that times
    out first raises inside the consumer and closes its WebSocket. redis-py 8 made 5 s the default
    read timeout, so a live log page with nothing to show for 5 s closed. Each host must set a
    longer ``socket_timeout`` (or none)."""
    try:
        from channels_redis.core import RedisChannelLayer
        from redis.asyncio import Connection
    except ImportError:
        return []  # channels' own checks and imports say so
    default = Connection().socket_timeout  # redis-py's own default (no I/O until connected)
    pop = RedisChannelLayer.brpop_timeout
    short = []
    for host in config.get("hosts") or ["redis://localhost:6379"]:
        address = host.get("address", "a host") if isinstance(host, dict) else host
        timeout = host.get("socket_timeout", default) if isinstance(host, dict) else default
        if timeout is not None and timeout <= pop:
            short.append(f"{_without_password(address)} ({timeout} s)")
    if not short:
        return []
    return [Warning(
        f"The Redis channel layer's reads time out no later than its {pop} s waits for a message: "
        f"{', '.join(short)}.",
        hint="A quiet WebSocket (a live log page with no new line) closes with a redis TimeoutError. "
        'Give each host a longer read timeout: "hosts": [{"address": "redis://...", '
        '"socket_timeout": 15}].',
        id="gonext_plugins.W016",
    )]


def _without_password(address: Any) -> str:
    """A Redis address to print: a URL's user and password left out."""
    if not isinstance(address, str):
        return str(address)
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if parts.netloc else address


@register(Tags.database)
def check_trusted_keys(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Without a trusted key, nothing signed can be installed (run with ``check --database``)."""
    databases = kwargs.get("databases") or []
    if "default" not in databases:
        return []
    from django.db import DatabaseError

    from .models import PublisherKey

    try:
        has_key = PublisherKey.objects.filter(trusted=True, revoked_at__isnull=True).exists()
    except DatabaseError:
        return []  # not migrated yet; migrate's own messages say so
    if has_key or settings.known("DEV_MODE"):
        return []
    return [
        Warning(
            "No trusted publisher key: no signed plugin can be installed.",
            hint="Add one with `manage.py plugin trust-key NAME PUBLIC_KEY` or in the admin "
            "under Plugins → Publisher keys.",
            id="gonext_plugins.W001",
        )
    ]


@register()
def check_task_backend(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Plugin jobs go to the ``plugin`` queue of the default Tasks backend: it must accept that queue,
    and without deferred tasks a retry cannot wait out its backoff."""
    try:
        from .tasks import run_plugin_job

        backend = run_plugin_job.get_backend()
    except Exception as exc:  # an unimportable backend: Django's own task checks say more
        return [Error(f"The Tasks backend for plugin jobs cannot be loaded: {exc}",
                      hint="Fix TASKS['default'] (for example django_tasks_db.DatabaseBackend).",
                      id="gonext_plugins.E006")]
    problems: list[CheckMessage] = []
    queues = getattr(backend, "queues", None)
    if queues and "plugin" not in queues:
        problems.append(Error(
            f"The default Tasks backend does not accept the 'plugin' queue (QUEUES = {sorted(queues)}).",
            hint="Add 'plugin' to TASKS['default']['QUEUES'], and run a worker for it: "
            "manage.py plugin_worker (db_worker on the plugin queue that waits out a database restart).",
            id="gonext_plugins.E006",
        ))
    if not getattr(backend, "supports_defer", False):
        problems.append(Warning(
            f"The default Tasks backend ({type(backend).__name__}) cannot defer tasks: plugin jobs run "
            "their retries at once, without backoff.",
            hint="Use django_tasks_db.DatabaseBackend (and run manage.py plugin_worker).",
            id="gonext_plugins.W004",
        ))
    return problems


@register(Tags.security)
def check_http_fetch_private(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Letting plugins reach the site's own network is an intranet's choice; say so whenever it is on."""
    value = settings.known("HTTP_FETCH_ALLOW_PRIVATE")
    if not isinstance(value, bool):
        return [Error(
            f"GONEXT_PLUGINS['HTTP_FETCH_ALLOW_PRIVATE'] = {value!r} is not True or False.",
            hint="Leave it out (False) unless plugins must fetch from this site's intranet.",
            id="gonext_plugins.E003",
        )]
    if value:
        return [Warning(
            "GONEXT_PLUGINS['HTTP_FETCH_ALLOW_PRIVATE'] is on: plugins granted http.fetch may reach "
            "loopback, private (RFC 1918), shared and unique-local addresses, and manifests may list "
            "IP and localhost hosts.",
            hint="Only for sites whose plugins must fetch from an intranet; each such host is still "
            "listed in the manifest and granted by an admin. Link-local and cloud metadata addresses "
            "stay unreachable. Turn it off otherwise.",
            id="gonext_plugins.W005",
        )]
    return []


CSP_MIDDLEWARE = "gonext_plugins.middleware.ContentSecurityPolicyMiddleware"


@register(Tags.security)
def check_content_security_policy(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """The admin and the API should carry the CSP: the second wall behind the markup sanitizer."""
    policy = settings.known("CONTENT_SECURITY_POLICY")
    if policy and CSP_MIDDLEWARE not in getattr(django_settings, "MIDDLEWARE", []):
        return [
            Warning(
                "The admin and the plugin API are served without a Content-Security-Policy.",
                hint=f"Add {CSP_MIDDLEWARE!r} to MIDDLEWARE (or set "
                "GONEXT_PLUGINS['CONTENT_SECURITY_POLICY'] = '' to opt out on purpose).",
                id="gonext_plugins.W006",
            )
        ]
    return []


def _installed(app: str) -> bool:
    return apps.is_installed(app)


@register()
def check_required_apps(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """The apps the plugin API, its docs and the live logs stand on must be in INSTALLED_APPS."""
    problems: list[CheckMessage] = []
    missing = [app for app in ("rest_framework", "rest_framework.authtoken") if not _installed(app)]
    if missing:
        problems.append(Error(
            f"{' and '.join(missing)} not in INSTALLED_APPS: the plugin API (and its tokens) cannot work.",
            hint='Add "rest_framework" and "rest_framework.authtoken" to INSTALLED_APPS, then migrate.',
            id="gonext_plugins.E010",
        ))
    if settings.known("API_DOCS") and not _installed("drf_spectacular"):
        problems.append(Error(
            "drf_spectacular is not in INSTALLED_APPS: the API's docs pages would fail (their templates "
            "are missing).",
            hint='Add "drf_spectacular" and "drf_spectacular_sidecar" to INSTALLED_APPS, or set '
            "GONEXT_PLUGINS['API_DOCS'] = False to serve no schema or docs.",
            id="gonext_plugins.E011",
        ))
    if settings.known("API_DOCS") and not _installed("drf_spectacular_sidecar"):
        problems.append(Warning(
            "drf_spectacular_sidecar is not in INSTALLED_APPS: the API's docs pages load Swagger UI and "
            "Redoc from a CDN, which the Content-Security-Policy (script-src 'self') blocks.",
            hint='Add "drf_spectacular_sidecar" to INSTALLED_APPS (and run collectstatic).',
            id="gonext_plugins.W007",
        ))
    if not _installed("channels"):
        problems.append(Error(
            "channels is not in INSTALLED_APPS: the live log page's WebSocket has no consumer runtime.",
            hint='Add "channels" to INSTALLED_APPS.',
            id="gonext_plugins.E012",
        ))
    if not getattr(django_settings, "ASGI_APPLICATION", None):
        problems.append(Error(
            "ASGI_APPLICATION is not set: the live log WebSocket and the request-body guard need the "
            "site served over ASGI.",
            hint='Set ASGI_APPLICATION = "<project>.asgi.application", with asgi.py as in the README '
            '("Using it in your site").',
            id="gonext_plugins.E013",
        ))
    if not _installed("django.contrib.staticfiles"):
        problems.append(Error(
            "django.contrib.staticfiles is not in INSTALLED_APPS: the log page's script and the docs' "
            "assets are never collected.",
            hint='Add "django.contrib.staticfiles" to INSTALLED_APPS.',
            id="gonext_plugins.E014",
        ))
    return problems


STATIC_STORAGE_DEFAULT = "django.contrib.staticfiles.storage.StaticFilesStorage"


@register()
def check_static_files(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """With DEBUG off Django serves no static files: something must (collectstatic into STATIC_ROOT
    for a front server, WhiteNoise, or a storage that serves them), or the log page has no script."""
    if django_settings.DEBUG or getattr(django_settings, "STATIC_ROOT", None):
        return []
    storages = getattr(django_settings, "STORAGES", {}) or {}
    backend = storages.get("staticfiles", {}).get("BACKEND", STATIC_STORAGE_DEFAULT)
    whitenoise = any("whitenoise" in entry for entry in getattr(django_settings, "MIDDLEWARE", []))
    if whitenoise or backend != STATIC_STORAGE_DEFAULT:
        return []
    return [Warning(
        "DEBUG is off and STATIC_ROOT is not set: nothing serves the app's static files (the live log "
        "page's script, the API docs' assets).",
        hint='Set STATIC_ROOT = BASE_DIR / "staticfiles", run manage.py collectstatic and serve it at '
        "STATIC_URL from the front server (or use WhiteNoise, or a static files storage).",
        id="gonext_plugins.W008",
    )]


@register(Tags.urls)
def check_urls_included(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Without ``include("gonext_plugins.urls")`` the admin's links to the log page and the API break."""
    try:
        reverse("gonext_plugins:api:schema")
    except NoReverseMatch:
        return [Error(
            "gonext_plugins.urls is not included in the site's URLconf.",
            hint='Add path("plugins/", include("gonext_plugins.urls")) to urlpatterns (any prefix works).',
            id="gonext_plugins.E015",
        )]
    return []


ASGI_SNIPPET = ("from gonext_plugins.asgi import with_plugins\n"
                "application = with_plugins(get_asgi_application())")
ASGI_WRAPPER_ATTRIBUTES = ("app", "application", "inner", "http")


def _guarded(app: Any, depth: int = 0) -> bool:
    """Whether an ASGI application has the request-body guard on its HTTP path, looking through the
    wrappers sites commonly put around it (static files handlers, Channels' ProtocolTypeRouter,
    middleware that keep the next app in ``app``/``application``/``inner``)."""
    if isinstance(app, PluginsApplication | RequestBodyLimit):
        return True
    if depth > 8 or app is None:
        return False
    mapping = getattr(app, "application_mapping", None)  # channels.routing.ProtocolTypeRouter
    if isinstance(mapping, dict):
        return _guarded(mapping.get("http"), depth + 1)
    return any(_guarded(getattr(app, name, None), depth + 1)
               for name in ASGI_WRAPPER_ATTRIBUTES if getattr(app, name, None) is not app)


@register(Tags.security, deploy=True)
def check_asgi_guard(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Django's ASGI handler buffers a whole request body before any middleware runs: only the ASGI
    guard (``with_plugins``) bounds an upload's memory before it is read."""
    path = getattr(django_settings, "ASGI_APPLICATION", None)
    if not path:
        return []  # E013 says so
    looking = inspecting.set(True)  # imported to be looked at, not served: no warm-up
    try:
        application = import_string(path)
    except Exception as exc:  # any import error of the site's asgi.py is worth reporting as such
        return [Warning(
            f"ASGI_APPLICATION {path!r} cannot be imported to look for the request-body guard: {exc}",
            hint=f"Fix the import; asgi.py should end with:\n{ASGI_SNIPPET}",
            id="gonext_plugins.W009",
        )]
    finally:
        inspecting.reset(looking)
    if _guarded(application):
        return []
    return [Warning(
        f"ASGI_APPLICATION {path!r} does not pass through the plugin app's request-body guard: large "
        "uploads are buffered whole before any size check.",
        hint=f"Wrap the application (README, \"Using it in your site\"):\n{ASGI_SNIPPET}",
        id="gonext_plugins.W009",
    )]


FILE_STORAGE_DEFAULT = "django.core.files.storage.FileSystemStorage"


@register()
def check_media_root(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Plugin bundles go to the default storage and compiled modules under MEDIA_ROOT unless told
    otherwise: with MEDIA_ROOT empty (Django's default) they would land in the working directory
    and under ``/gonext_plugins/cache``."""
    if getattr(django_settings, "MEDIA_ROOT", ""):
        return []
    storages = getattr(django_settings, "STORAGES", {}) or {}
    default_backend = storages.get("default", {}).get("BACKEND", FILE_STORAGE_DEFAULT)
    blobs_on_disk = (settings.known("STORAGE") is None and STORAGE_ALIAS not in storages
                     and default_backend == FILE_STORAGE_DEFAULT)
    if not blobs_on_disk and settings.known("CACHE_DIR"):
        return []
    return [Warning(
        "MEDIA_ROOT is empty: plugin bundles and compiled modules would be stored relative to the "
        "working directory and under /gonext_plugins/cache.",
        hint='Set MEDIA_ROOT = BASE_DIR / "media" (or STORAGES["gonext_plugins"] and '
             'GONEXT_PLUGINS["CACHE_DIR"]).',
        id="gonext_plugins.W010",
    )]


@register(Tags.caches)
def check_shared_cache(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """``SHARED_CACHE`` must name a configured cache, and one every process sees (not a local one)."""
    alias = settings.known("SHARED_CACHE")
    if not alias:
        return []
    if not isinstance(alias, str):
        return [Error(f"GONEXT_PLUGINS['SHARED_CACHE'] = {alias!r} is not a CACHES alias or None.",
                      hint='Set it to the alias of a shared cache, e.g. "shared", or None.',
                      id="gonext_plugins.E016")]
    caches = getattr(django_settings, "CACHES", {}) or {}
    if alias not in caches:
        return [Error(f"GONEXT_PLUGINS['SHARED_CACHE'] = {alias!r} is not an alias in CACHES.",
                      hint=f"Add CACHES[{alias!r}] (django.core.cache.backends.redis.RedisCache) or set "
                           "SHARED_CACHE to None for per-process limits.",
                      id="gonext_plugins.E016")]
    backend = str(caches[alias].get("BACKEND", ""))
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [Warning(f"GONEXT_PLUGINS['SHARED_CACHE'] = {alias!r} is a {backend.rsplit('.', 1)[-1]}, "
                        "which no other process sees.",
                        hint="Point it at a cache all processes share (Redis, Memcached), or set it to None.",
                        id="gonext_plugins.W011")]
    return []


@register()
def check_blob_storage(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Two ways to name the blob store, one of which silently wins: say which."""
    storages = getattr(django_settings, "STORAGES", {}) or {}
    if settings.known("STORAGE") is None or STORAGE_ALIAS not in storages:
        return []
    return [Warning(
        f'Both GONEXT_PLUGINS["STORAGE"] and STORAGES["{STORAGE_ALIAS}"] are set: plugin blobs go '
        'to GONEXT_PLUGINS["STORAGE"].',
        hint=f'Keep one: STORAGES["{STORAGE_ALIAS}"] (Django\'s storage aliases) is the way to '
             'configure it; remove GONEXT_PLUGINS["STORAGE"].',
        id="gonext_plugins.W012",
    )]


@register()
def check_incompatible_plugins(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """An active plugin this site cannot run any more (after an upgrade of the site or the app) is
    skipped, not fatal: say so at start-up, with why, so the site owner can act."""
    try:
        found = incompatible_active()
    except Exception:  # no database yet, not migrated, or not reachable: nothing to report here
        logger.debug("incompatible plugins not checked: the database cannot be read", exc_info=True)
        return []
    return [Warning(
        f"Plugin {slug!r} is active but this site cannot run it, so it is skipped: "
        f"{'; '.join(reason.message for reason in reasons)}.",
        hint="Register what it needs again (the site's capabilities and host functions), install a version "
        "of the plugin made for this site, or deactivate it. It runs again by itself once compatible.",
        obj=slug, id="gonext_plugins.W013",
    ) for slug, reasons in found.items()]


@register()
def check_job_stall_seconds(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Stall recovery takes back a job still ``running`` after ``JOB_STALL_SECONDS``: at or below
    the hard deadline of its guest call, a job that is merely slow would be retried while it still
    runs (twice the work, and side effects done twice)."""
    stall, hard_ms = settings.known("JOB_STALL_SECONDS"), settings.known("HARD_TIMEOUT_MS")
    numbers = all(isinstance(value, int | float) and not isinstance(value, bool)
                  for value in (stall, hard_ms))
    if stall is None or not numbers or stall > hard_ms / 1000:
        return []  # unset (the safe default) or not numbers (E003 says so)
    return [Warning(
        f"JOB_STALL_SECONDS ({stall:g}) is not above the hard timeout of a job's call "
        f"(HARD_TIMEOUT_MS {hard_ms:g} ms): a job still running would be taken back and retried.",
        hint="Set JOB_STALL_SECONDS well above HARD_TIMEOUT_MS / 1000 (a few times it), or to None "
             "for the default.",
        id="gonext_plugins.W014",
    )]


ROLLOUT_MIDDLEWARE = "gonext_plugins.middleware.RolloutMiddleware"


@register()
def check_rollout_middleware(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Without the middleware nothing excludes a request from a plugin in rollout: a "staff only"
    rollout would run for everyone. Said only when a rollout is running (a site that never rolls
    out needs no middleware)."""
    if ROLLOUT_MIDDLEWARE in getattr(django_settings, "MIDDLEWARE", []):
        return []
    try:
        slugs = list(PluginRollout.objects.values_list("plugin__slug", flat=True))
    except Exception:  # no database yet, not migrated, or not reachable: nothing to report here
        logger.debug("rollouts not checked: the database cannot be read", exc_info=True)
        return []
    return [Warning(
        f"Plugin {slug!r} is in a staged rollout, but {ROLLOUT_MIDDLEWARE} is not in MIDDLEWARE: it runs "
        "for every request.",
        hint=f"Add {ROLLOUT_MIDDLEWARE!r} to MIDDLEWARE after AuthenticationMiddleware, or promote or roll "
        "back the rollout.", obj=slug, id="gonext_plugins.W015",
    ) for slug in slugs]
