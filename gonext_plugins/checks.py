"""System checks: each misconfiguration gets a stable id and a hint that says the fix.

Ids are stable: ``gonext_plugins.E001`` will always mean the same thing, so sites can silence a
warning knowingly with ``SILENCED_SYSTEM_CHECKS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import DEFAULTS, parse_networks, settings

# Bounds the host will accept for its own caps. Beyond them the sandbox stops meaning much.
RANGES: dict[str, tuple[float, float]] = {
    "MAX_BUNDLE_BYTES": (1024, 512 * 1024 * 1024),
    "MAX_UNPACKED_BYTES": (1024, 2 * 1024 * 1024 * 1024),
    "MAX_COMPRESSION_RATIO": (1, 10_000),
    "MAX_REQUEST_BYTES": (1024, 4 * 1024 * 1024 * 1024),
    "MEMORY_PAGES": (1, 65_536),
    "FUEL": (1_000, 10**13),
    "SOFT_TIMEOUT_MS": (1, 600_000),
    "HARD_TIMEOUT_MS": (1, 600_000),
    "MIN_INSTANCES": (1, 1_024),
    "MAX_INSTANCES": (1, 1_024),
    "MAX_HOST_CALLS": (1, 10**7),
    "MAX_INPUT_BYTES": (1, 1024 * 1024 * 1024),
    "MAX_OUTPUT_BYTES": (1, 1024 * 1024 * 1024),
    "MAX_MODULE_BYTES": (1024, 1024 * 1024 * 1024),
    "MAX_FUNCTIONS": (1, 1_000_000),  # wasmtime itself refuses more than a million
    "COMPILE_CPU_SECONDS": (1, 3_600),
    "COMPILE_MEMORY_BYTES": (256 * 1024 * 1024, 64 * 1024 * 1024 * 1024),  # the child needs ~100 MiB to start
    "SYNC_INTERVAL": (0.05, 3_600),
    "QUARANTINE_FAULTS": (1, 10**6),
    "QUARANTINE_WINDOW": (1, 86_400 * 7),
    "JOB_RETRY_BASE_SECONDS": (0.01, 86_400),
    "JOB_MAX_QUEUED": (1, 10**6),
    "JOB_MAX_QUEUED_BYTES": (1024, 64 * 1024 * 1024 * 1024),
    "LOG_RATE": (1, 10**6),
    "LOG_BURST": (1, 10**7),
    "LOG_BACKLOG": (10, 10**7),
    "LOG_MAX_MESSAGE_BYTES": (64, 1024 * 1024),
    "TRAP_SOURCE_MAP_MAX_BYTES": (0, 256 * 1024 * 1024),
}


@register(Tags.security, deploy=False)
def check_dev_mode(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Dev mode installs unsigned code and opens an install endpoint: never on a live site."""
    try:
        dev_mode = settings.DEV_MODE
    except ImproperlyConfigured:
        return []
    if dev_mode and not django_settings.DEBUG:
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
    """Unknown keys and values out of range."""
    try:
        user = settings.user_settings
    except ImproperlyConfigured as exc:
        return [
            Error(str(exc), hint="Fix the key's spelling or remove it.", id="gonext_plugins.E002")
        ]
    problems: list[CheckMessage] = []
    for key, (low, high) in RANGES.items():
        value = user.get(key, DEFAULTS[key])
        if key == "FUEL" and value is None:
            continue  # fuel metering off: allowed, deadlines still bound each call
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            problems.append(
                Error(
                    f"GONEXT_PLUGINS[{key!r}] = {value!r} is out of range.",
                    hint=f"Use a number from {low:g} to {high:g} (default {DEFAULTS[key]!r}).",
                    id="gonext_plugins.E003",
                )
            )
    soft, hard = user.get("SOFT_TIMEOUT_MS", DEFAULTS["SOFT_TIMEOUT_MS"]), user.get(
        "HARD_TIMEOUT_MS", DEFAULTS["HARD_TIMEOUT_MS"]
    )
    if isinstance(soft, int | float) and isinstance(hard, int | float) and hard < soft:
        problems.append(
            Error(
                f"HARD_TIMEOUT_MS ({hard}) is below SOFT_TIMEOUT_MS ({soft}).",
                hint="The hard deadline stops the call; the soft one only warns. Make hard >= soft.",
                id="gonext_plugins.E004",
            )
        )
    low_inst = user.get("MIN_INSTANCES", DEFAULTS["MIN_INSTANCES"])
    high_inst = user.get("MAX_INSTANCES", DEFAULTS["MAX_INSTANCES"])
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
    try:
        tokens, addresses = settings.METRICS_TOKENS, settings.METRICS_ALLOWED_ADDRESSES
    except ImproperlyConfigured:
        return []
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
    return []


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
    if has_key or settings.DEV_MODE:
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
            "manage.py db_worker --queue-name plugin.",
            id="gonext_plugins.E006",
        ))
    if not getattr(backend, "supports_defer", False):
        problems.append(Warning(
            f"The default Tasks backend ({type(backend).__name__}) cannot defer tasks: plugin jobs run "
            "their retries at once, without backoff.",
            hint="Use django_tasks_db.DatabaseBackend (and run manage.py db_worker --queue-name plugin).",
            id="gonext_plugins.W004",
        ))
    return problems


@register(Tags.security)
def check_http_fetch_private(app_configs: Any = None, **kwargs: Any) -> Iterable[CheckMessage]:
    """Letting plugins reach the site's own network is an intranet's choice; say so whenever it is on."""
    try:
        value = settings.user_settings.get("HTTP_FETCH_ALLOW_PRIVATE", DEFAULTS["HTTP_FETCH_ALLOW_PRIVATE"])
    except ImproperlyConfigured:
        return []  # E002 already says why
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
    try:
        policy = settings.user_settings.get("CONTENT_SECURITY_POLICY", DEFAULTS["CONTENT_SECURITY_POLICY"])
    except ImproperlyConfigured:
        return []  # E002 already says what is wrong with the settings
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
