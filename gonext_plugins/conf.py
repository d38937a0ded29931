"""One settings object for the app, read from the ``GONEXT_PLUGINS`` dict in Django settings.

Modelled on DRF's ``api_settings``: every key has a default, dotted import paths are resolved
lazily, and an unknown key is an error (a typo should fail loudly, not be silently ignored). Values
are re-read when Django's ``setting_changed`` signal fires, so ``override_settings(GONEXT_PLUGINS=...)``
works in tests.

Each key is declared once, as a :class:`Setting` (default, type, range, doc) in the body of
:class:`PluginSettings`: that one table generates :data:`DEFAULTS`, the typed attributes
(``settings.HARD_TIMEOUT_MS`` is an ``int`` to mypy, as in django-cors-headers' ``conf.py``) and the
range checks (``gonext_plugins.E003`` in :mod:`gonext_plugins.checks`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from importlib import import_module
from types import FunctionType, NoneType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from . import host_rules

if TYPE_CHECKING:
    from django.core.files.storage import Storage

MiB = 1024 * 1024
GiB = 1024 * MiB

T = TypeVar("T")
#: The Python type(s) a value may have (documentation, and ``None`` allowed or not).
Types = tuple[type[Any], ...]


class Setting(Generic[T]):
    """One key of ``GONEXT_PLUGINS``: its default, its Python type(s), the inclusive range a number
    must fall in (checked by ``gonext_plugins.E003``; ``None`` = not range-checked) and what it means.

    A descriptor: read on the settings object it returns the site's value (typed ``T``), read on
    the class it returns itself, so the class body is the table everything else is generated from.
    """

    def __init__(
        self,
        default: T,
        type: type[Any] | Types,  # the table's column names, shadowing builtins only in here
        range: tuple[float, float] | None = None,
        doc: str = "",
        *,
        import_string: bool = False,
    ) -> None:
        self.default = default
        self.types: Types = type if isinstance(type, tuple) else (type,)
        self.range = range
        self.doc = doc
        self.import_string = import_string  # a dotted path, imported on first access
        self.name = ""

    @property
    def nullable(self) -> bool:
        """``None`` is an allowed value (for ``FUEL``: metering off), whatever the range says."""
        return NoneType in self.types

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, instance: PluginSettings, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: PluginSettings | None, owner: type[Any] | None = None) -> Setting[T] | T:
        if instance is None:
            return self
        return cast("T", instance._value(self))  # the cache holds Any; this key's value is a T

    def __repr__(self) -> str:
        return f"Setting({self.name}={self.default!r})"


def _import(path: str, key: str) -> Any:
    module_path, _, attr = path.rpartition(".")
    try:
        return getattr(import_module(module_path), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"GONEXT_PLUGINS[{key!r}] = {path!r} cannot be imported: {exc}") from exc


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
    """Attribute access to the merged settings; the class body is the table of every key."""

    # --- Signatures and dev mode.
    DEV_MODE = Setting(
        False, bool, doc="allow unsigned bundles and the dev install endpoint; refused with DEBUG off")

    # --- Bundle caps: checked before anything is unpacked.
    MAX_BUNDLE_BYTES = Setting(
        10 * MiB, int, (1024, 512 * MiB), doc="largest .gnplugin file accepted, checked before unpacking")
    MAX_UNPACKED_BYTES = Setting(
        32 * MiB, int, (1024, 2 * GiB), doc="largest total unpacked size of a bundle")
    MAX_COMPRESSION_RATIO = Setting(
        100, int, (1, 10_000), doc="largest unpacked:packed ratio, per entry and overall (zip bombs)")
    MAX_REQUEST_BYTES = Setting(
        12 * MiB, int, (1024, 4 * GiB),
        doc="whole request bodies (uploads included) over this are refused with 413 before being read")

    # --- Host-wide runtime caps; a plugin's manifest may only ask for less.
    MEMORY_PAGES = Setting(256, int, (1, 65_536), doc="linear-memory cap per instance, in 64 KiB pages")
    FUEL: Setting[int | None] = Setting(
        50_000_000, (int, NoneType), (1_000, 10**13),
        doc="instruction budget per call; None turns fuel metering off (deadlines still bound each call)")
    SOFT_TIMEOUT_MS = Setting(100, int, (1, 600_000), doc="a call running longer logs a warning")
    HARD_TIMEOUT_MS = Setting(1_000, int, (1, 600_000), doc="a call running longer is stopped")
    MIN_INSTANCES = Setting(1, int, (1, 1_024), doc="instance pool size per plugin and process, lower bound")
    MAX_INSTANCES = Setting(4, int, (1, 1_024), doc="instance pool size per plugin and process, upper bound")
    MAX_HOST_CALLS = Setting(1_000, int, (1, 10**7), doc="host-function calls allowed in one guest call")
    MAX_INPUT_BYTES = Setting(1 * MiB, int, (1, GiB), doc="largest payload sent to a guest")
    MAX_OUTPUT_BYTES = Setting(4 * MiB, int, (1, GiB), doc="largest body a guest may return")
    CACHE_DIR: Setting[str | None] = Setting(
        None, (str, NoneType), doc="compiled-artifact cache; None = <MEDIA_ROOT>/gonext_plugins/cache")
    PURE_RESULT_BYTES = Setting(
        1 * MiB, int, (0, GiB),
        doc="per plugin and process: results of the hooks its manifest declares pure, kept by exact input "
            "and reused; 0 turns the reuse off")

    # --- Compiling a module: caps checked on its bytes first, then the limits of the child process
    # that compiles a module missing from the cache (CPU seconds of all its threads, address space).
    MAX_MODULE_BYTES = Setting(
        16 * MiB, int, (1024, GiB), doc="largest wasm module, checked before compiling")
    MAX_FUNCTIONS = Setting(
        50_000, int, (1, 1_000_000),  # wasmtime itself refuses more than a million
        doc="most functions a module may define, checked before compiling")
    COMPILE_CPU_SECONDS = Setting(30, int, (1, 3_600), doc="CPU time of the child process that compiles")
    COMPILE_MEMORY_BYTES = Setting(
        2048 * MiB, int, (256 * MiB, 64 * GiB),  # the child needs ~100 MiB to start
        doc="address space of the child process that compiles")

    # --- Cross-process sync and fault handling.
    SYNC_INTERVAL = Setting(
        1.0, float, (0.05, 3_600), doc="seconds between checks of the database generation for plugin changes")
    QUARANTINE_FAULTS = Setting(
        5, int, (1, 10**6), doc="faults of the running version within QUARANTINE_WINDOW that quarantine a "
                                "plugin (a new version, a fixed dev build included, starts with none)")
    QUARANTINE_WINDOW = Setting(60.0, float, (1, 86_400 * 7), doc="seconds over which faults are counted")
    RAISE_FAULTS = Setting(
        False, bool, doc="strict mode: a plugin fault raises instead of passing the value through")

    # --- Storage for plugin blobs: a dotted path to a Storage class (the older way; Django's
    # STORAGES["gonext_plugins"] alias is preferred, see storage.get_storage), or None.
    STORAGE: Setting[type[Storage] | None] = Setting(
        None, (str, type, NoneType), doc="dotted path of a Storage class for plugin blobs",
        import_string=True)

    # --- Previews: a page rendered with one more plugin version active, for one request only.
    PREVIEW_SUGGESTIONS: Setting[Callable[[], Sequence[tuple[str, str]]] | None] = Setting(
        None, (str, FunctionType, NoneType),
        doc="dotted path of a callable() -> [(path, label), ...] of pages to suggest for a preview "
            "(None: the home page)", import_string=True)
    PREVIEW_MAX_HTML_BYTES = Setting(
        2 * MiB, int, (1024, 64 * MiB), doc="bytes of a previewed page kept for the side-by-side and diff")

    # --- Built-in host functions.
    KV_MAX_KEYS = Setting(host_rules.DEFAULT_KV_MAX_KEYS, int, doc="per-plugin key-value quota: keys")
    KV_MAX_VALUE_BYTES = Setting(host_rules.DEFAULT_KV_MAX_VALUE_BYTES, int,
                                 doc="per-plugin key-value quota: bytes of one value")
    KV_MAX_TOTAL_BYTES = Setting(host_rules.DEFAULT_KV_MAX_TOTAL_BYTES, int,
                                 doc="per-plugin key-value quota: bytes of all values")
    HTTP_TIMEOUT = Setting(5.0, float, doc="seconds an http.fetch may take (the call's hard deadline too)")
    HTTP_MAX_RESPONSE_BYTES = Setting(1 * MiB, int, doc="largest http.fetch response body")
    # Let http.fetch reach loopback, private (RFC 1918), shared and unique-local addresses, and let
    # manifests list IP and localhost hosts: for intranet sites only (system check W005 warns).
    # Link-local, cloud metadata, multicast and reserved addresses stay unreachable regardless.
    HTTP_FETCH_ALLOW_PRIVATE = Setting(
        False, bool, doc="intranet sites only: http.fetch may reach loopback and private addresses")

    # --- Background jobs.
    JOB_RETRY_BASE_SECONDS = Setting(
        2.0, float, (0.01, 86_400),
        doc="a trapped job's first retry waits this long, doubling for each next one")
    # Per-plugin quotas on jobs not finished yet (queued, running, waiting for a retry), whoever
    # queued them: past either, jobs.enqueue fails (-1 to a guest, JobQuotaExceeded to site code).
    JOB_MAX_QUEUED = Setting(100, int, (1, 10**6), doc="per-plugin cap on unfinished jobs")
    JOB_MAX_QUEUED_BYTES = Setting(
        4 * MiB, int, (1024, 64 * GiB), doc="per-plugin cap on unfinished jobs' JSON payloads together")
    # A run still "running" this long after its attempt began lost its worker (SIGKILL, machine
    # gone) and is retried; None = five minutes or ten HARD_TIMEOUT_MS, whichever is longer.
    JOB_STALL_SECONDS: Setting[float | None] = Setting(
        None, (float, int, NoneType), (1, 86_400),
        doc="seconds after which a running job whose worker vanished is retried")

    # --- Logs.
    LOG_RATE = Setting(200.0, float, (1, 10**6), doc="per-plugin log rate limit, lines a second")
    LOG_BURST = Setting(1_000, int, (1, 10**7), doc="per-plugin log rate limit, burst")
    LOG_BACKLOG = Setting(2_000, int, (10, 10**7), doc="log lines kept per plugin in the database")
    LOG_MAX_MESSAGE_BYTES = Setting(host_rules.DEFAULT_LOG_MAX_MESSAGE_BYTES, int, (64, MiB),
                                    doc="longer log messages are cut")

    # --- Past one process: state that must be the cluster's, not each process's own.
    SHARED_CACHE: Setting[str | None] = Setting(
        None, (str, NoneType),
        doc="a CACHES alias shared by every process (Redis): the log rate limit and API throttles "
            "become cluster-wide; None keeps them per process")
    STATS_FLUSH_INTERVAL: Setting[float | None] = Setting(
        10.0, (float, int, NoneType), (0.1, 3_600),
        doc="seconds between two flushes of a process's call figures into the database rollup; "
            "None turns the rollup off")
    STATS_RETENTION_HOURS = Setting(
        48, int, (1, 24 * 366), doc="hours of per-minute call figures kept in the rollup")

    # --- Staged rollout (gonext_plugins.rollout): an activation for staff or a share of visitors
    # first, rolled back on its own when its cohort's figures pass these thresholds.
    ROLLOUT_MAX_FAULT_RATE = Setting(
        0.05, (float, int), (0.0, 1.0),
        doc="a plugin in rollout is rolled back when its faults per call exceed this share")
    ROLLOUT_MAX_ADDED_MS = Setting(
        200.0, (float, int), (0.0, 600_000),
        doc="... or when its requests take longer than the others by more than this, in ms (mean)")
    ROLLOUT_MIN_REQUESTS = Setting(
        100, int, (1, 10**7), doc="requests each cohort needs before its figures are judged")
    ROLLOUT_CHECK_INTERVAL = Setting(
        30.0, (float, int), (0.0, 3_600),
        doc="seconds between a process's flushes of rollout figures and its check of the thresholds")

    # --- Trap reports: a module's source map over this size is not parsed (parsing runs at about
    # 2 MB a second, on the request that trapped; each map is parsed once and cached).
    TRAP_SOURCE_MAP_MAX_BYTES = Setting(
        4 * MiB, int, (0, 256 * MiB), doc="a module's source map over this is not parsed for trap reports")

    # --- Metrics endpoint: who may read /metrics beside logged-in staff. Nobody else by default: a
    # reverse proxy on the same host makes every public request come from loopback.
    METRICS_TOKENS: Setting[Sequence[str]] = Setting(
        (), (tuple, list), doc='scrapers sending "Authorization: Bearer <token>"')
    METRICS_ALLOWED_ADDRESSES: Setting[Sequence[str]] = Setting(
        (), (tuple, list), doc='client addresses or networks ("10.0.0.0/8"), REMOTE_ADDR')

    # --- Content-Security-Policy that ContentSecurityPolicyMiddleware sends on the responses of the
    # URL namespaces below (the admin, this app's pages and API): a second wall behind the markup
    # sanitizer. Scripts only from this origin's files; "" sends none.
    CONTENT_SECURITY_POLICY = Setting(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'",
        str, doc="the policy sent on the admin's and this app's responses; \"\" sends none")
    CONTENT_SECURITY_POLICY_NAMESPACES: Setting[Sequence[str]] = Setting(
        ("admin", "gonext_plugins"), (tuple, list), doc="the URL namespaces whose responses carry it")

    # --- The API's OpenAPI schema and its Swagger UI / Redoc pages (``<prefix>api/schema/``,
    # ``docs/``, ``redoc/``). Off: those three answer 404 and the site needs neither
    # drf_spectacular nor drf_spectacular_sidecar in INSTALLED_APPS (system check E011).
    API_DOCS = Setting(True, bool, doc="serve the API's schema and docs pages")

    # --- Start-up: with_plugins() (the site's ASGI entry point, imported by the server before it
    # listens) runs gonext_plugins.warmup.warm_up(), so a process's first visitor does not pay for
    # loading the active plugins and building the template engine (docs/deploy.md "Start-up").
    WARM_UP = Setting(
        False, bool, doc="with_plugins() loads the active plugins and builds the template engine at once")

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        """The site's ``GONEXT_PLUGINS`` dict; an unknown key raises (system check E002)."""
        if self._user is None:
            from django.conf import settings as django_settings  # read late: conf imports before setup

            user = getattr(django_settings, "GONEXT_PLUGINS", {}) or {}
            unknown = sorted(set(user) - set(SETTINGS))
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown GONEXT_PLUGINS setting(s): {', '.join(unknown)}. "
                    f"Known settings: {', '.join(sorted(SETTINGS))}."
                )
            self._user = dict(user)
        return self._user

    @property
    def unknown_keys(self) -> list[str]:
        """Keys of the site's ``GONEXT_PLUGINS`` this version does not know (E002)."""
        from django.conf import settings as django_settings  # read late, like user_settings

        return sorted(set(getattr(django_settings, "GONEXT_PLUGINS", {}) or {}) - set(SETTINGS))

    def known(self, key: str) -> Any:
        """The site's raw value of ``key`` (or its default) even when another key is unknown, so the
        system checks can report every problem at once instead of stopping at E002."""
        from django.conf import settings as django_settings  # read late, like user_settings

        return (getattr(django_settings, "GONEXT_PLUGINS", {}) or {}).get(key, SETTINGS[key].default)

    def _value(self, setting: Setting[Any]) -> Any:
        key = setting.name
        if key in self._cache:
            return self._cache[key]
        value = self.user_settings.get(key, setting.default)
        if setting.import_string and isinstance(value, str):
            value = _import(value, key)
        self._cache[key] = value
        return value

    if not TYPE_CHECKING:  # at runtime only: to mypy, an unknown attribute stays an error

        def __getattr__(self, key: str) -> Any:
            raise AttributeError(f"Invalid GONEXT_PLUGINS setting: {key!r}")

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
        from django.conf import settings as django_settings  # read late, like user_settings

        return str(django_settings.MEDIA_ROOT) + "/gonext_plugins/cache"


#: Every key's declaration, in the order of the class body (the README's table follows it).
SETTINGS: dict[str, Setting[Any]] = {
    name: value for name, value in vars(PluginSettings).items() if isinstance(value, Setting)
}
#: Every key's default (DRF's name for it; ``bundle`` falls back on it without Django settings).
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}
#: Keys whose values are dotted import paths, resolved on first access.
IMPORT_STRINGS = {name for name, setting in SETTINGS.items() if setting.import_string}
#: Inclusive (low, high) bounds of the numeric caps, checked by ``gonext_plugins.E003``: beyond
#: them the sandbox stops meaning much.
RANGES: dict[str, tuple[float, float]] = {
    name: setting.range for name, setting in SETTINGS.items() if setting.range is not None
}

settings = PluginSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "GONEXT_PLUGINS":
        settings.reload()


setting_changed.connect(_reload)
