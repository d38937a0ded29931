"""One settings object for the app, read from the ``GONEXT_PLUGINS`` dict in Django settings.

Modelled on DRF's ``api_settings``: every key has a default in :data:`DEFAULTS`, dotted import
paths are resolved lazily, and an unknown key is an error (a typo should fail loudly, not be
silently ignored). Values are re-read when Django's ``setting_changed`` signal fires, so
``override_settings(GONEXT_PLUGINS=...)`` works in tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from importlib import import_module
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

MiB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # Signatures and dev mode.
    "DEV_MODE": False,  # allow unsigned bundles and the dev install endpoint; refused with DEBUG off
    # Bundle caps: checked before anything is unpacked.
    "MAX_BUNDLE_BYTES": 10 * MiB,
    "MAX_UNPACKED_BYTES": 32 * MiB,
    "MAX_COMPRESSION_RATIO": 100,
    # Whole request bodies (uploads included) over this are refused with 413 before being read.
    "MAX_REQUEST_BYTES": 12 * MiB,
    # Host-wide runtime caps; a plugin's manifest may only ask for less.
    "MEMORY_PAGES": 256,
    "FUEL": 50_000_000,
    "SOFT_TIMEOUT_MS": 100,
    "HARD_TIMEOUT_MS": 1_000,
    "MIN_INSTANCES": 1,
    "MAX_INSTANCES": 4,
    "MAX_HOST_CALLS": 1_000,
    "MAX_INPUT_BYTES": 1 * MiB,
    "MAX_OUTPUT_BYTES": 4 * MiB,
    "CACHE_DIR": None,  # compiled-artifact cache; None = <MEDIA_ROOT>/gonext_plugins/cache
    # Compiling a module: caps checked on its bytes first, then the limits of the child process
    # that compiles a module missing from the cache (CPU seconds of all its threads, address space).
    "MAX_MODULE_BYTES": 16 * MiB,
    "MAX_FUNCTIONS": 50_000,
    "COMPILE_CPU_SECONDS": 30,
    "COMPILE_MEMORY_BYTES": 2048 * MiB,
    # Cross-process sync and fault handling.
    "SYNC_INTERVAL": 1.0,
    "QUARANTINE_FAULTS": 5,
    "QUARANTINE_WINDOW": 60.0,
    "RAISE_FAULTS": False,  # strict mode: a plugin fault raises instead of passing the value through
    # Storage for plugin blobs: a dotted path to a Storage class, or None for default_storage.
    "STORAGE": None,
    # Built-in host functions.
    "KV_MAX_KEYS": 1_000,
    "KV_MAX_VALUE_BYTES": 64 * 1024,
    "KV_MAX_TOTAL_BYTES": 4 * MiB,
    "HTTP_TIMEOUT": 5.0,
    "HTTP_MAX_RESPONSE_BYTES": 1 * MiB,
    # Let http.fetch reach loopback, private (RFC 1918), shared and unique-local addresses, and let
    # manifests list IP and localhost hosts: for intranet sites only (system check W005 warns).
    # Link-local, cloud metadata, multicast and reserved addresses stay unreachable regardless.
    "HTTP_FETCH_ALLOW_PRIVATE": False,
    # Background jobs: a trapped job's first retry waits this long, doubling for each next one.
    "JOB_RETRY_BASE_SECONDS": 2.0,
    # Per-plugin quotas on jobs not finished yet (queued, running, waiting for a retry), whoever
    # queued them: past either, jobs.enqueue fails (-1 to a guest, JobQuotaExceeded to site code).
    "JOB_MAX_QUEUED": 100,
    "JOB_MAX_QUEUED_BYTES": 4 * MiB,  # their JSON payloads together
    # Logs.
    "LOG_RATE": 200.0,
    "LOG_BURST": 1_000,
    "LOG_BACKLOG": 2_000,
    "LOG_MAX_MESSAGE_BYTES": 4096,
    # Trap reports: a module's source map over this size is not parsed (parsing runs at about
    # 2 MB a second, on the request that trapped; each map is parsed once and cached).
    "TRAP_SOURCE_MAP_MAX_BYTES": 4 * MiB,
    # Metrics endpoint: who may read /metrics beside logged-in staff. Nobody else by default: a
    # reverse proxy on the same host makes every public request come from loopback.
    "METRICS_TOKENS": (),  # scrapers sending "Authorization: Bearer <token>"
    "METRICS_ALLOWED_ADDRESSES": (),  # client addresses or networks ("10.0.0.0/8"), REMOTE_ADDR
    # Content-Security-Policy that ContentSecurityPolicyMiddleware sends on the responses of the
    # URL namespaces below (the admin, this app's pages and API): a second wall behind the markup
    # sanitizer. Scripts only from this origin's files; "" sends none.
    "CONTENT_SECURITY_POLICY": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "CONTENT_SECURITY_POLICY_NAMESPACES": ("admin", "gonext_plugins"),
}

# Keys whose values are dotted import paths, resolved on first access.
IMPORT_STRINGS = {"STORAGE"}


def _import(path: str, key: str) -> Any:
    module_path, _, attr = path.rpartition(".")
    try:
        return getattr(import_module(module_path), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"GONEXT_PLUGINS[{key!r}] = {path!r} cannot be imported: {exc}")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[object]) -> tuple[list[Network], list[object]]:
    """(networks, values that are not an address or a network); a bare address is a network of
    one. The system check reports the second list; access checks use only the first."""
    networks: list[Network] = []
    invalid: list[object] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            invalid.append(value)
    return networks, invalid


class PluginSettings:
    """Attribute access to the merged settings, validated against :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user is None:
            from django.conf import settings as django_settings

            user = getattr(django_settings, "GONEXT_PLUGINS", {}) or {}
            unknown = sorted(set(user) - set(DEFAULTS))
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown GONEXT_PLUGINS setting(s): {', '.join(unknown)}. "
                    f"Known settings: {', '.join(sorted(DEFAULTS))}."
                )
            self._user = dict(user)
        return self._user

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in DEFAULTS:
            raise AttributeError(f"Invalid GONEXT_PLUGINS setting: {key!r}")
        if key in self._cache:
            return self._cache[key]
        value = self.user_settings.get(key, DEFAULTS[key])
        if key in IMPORT_STRINGS and isinstance(value, str):
            value = _import(value, key)
        self._cache[key] = value
        return value

    def reload(self) -> None:
        """Forget cached values (after ``override_settings``)."""
        self._cache.clear()
        self._user = None

    @property
    def metrics_networks(self) -> list[Network]:
        """``METRICS_ALLOWED_ADDRESSES`` as networks."""
        return parse_networks(self.METRICS_ALLOWED_ADDRESSES)[0]

    @property
    def cache_dir(self) -> str:
        """Where compiled wasm artifacts are cached (a directory path)."""
        if self.CACHE_DIR:
            return str(self.CACHE_DIR)
        from django.conf import settings as django_settings

        return str(django_settings.MEDIA_ROOT) + "/gonext_plugins/cache"


settings = PluginSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "GONEXT_PLUGINS":
        settings.reload()


setting_changed.connect(_reload)
