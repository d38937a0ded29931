"""The harness's host: ABI.md's built-in host functions answered from memory, no database, no network.

Every payload goes through :mod:`gonext_plugins.host_rules`, the same checks (and messages) the app's
real host functions use, so a payload the harness accepts is one the site accepts. What differs is
only where things go: kv into a dict, ``jobs.enqueue`` into a list (recorded, not run), ``http.fetch``
to the fixture's stubs (the manifest's host allowlist still applies), the site's own functions to
the fixture's canned answers or to Python callables.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FetchError, FixtureError, HostFunctionError, PluginError
from ..host_rules import (
    ALWAYS_GRANTED,
    DEFAULT_LOG_MAX_MESSAGE_BYTES,
    KVQuotas,
    allowed_hosts,
    cas_matches,
    enqueue_request,
    fetch_request,
    fetch_target,
    fields,
    kv_check_quota,
    kv_incr_by,
    kv_incremented,
    kv_key,
    kv_list_prefix,
    kv_ttl,
    kv_value_size,
    log_request,
    settings_key,
    undeclared_job,
)
from ..manifest import Manifest
from ..runtime import HostFunctions
from ..runtime.host import PluginHandle

SELF = "self"  # the capability of settings.get and plugin.info, always granted (as in the app)


@dataclass
class HttpStub:
    """One canned ``http.fetch`` answer: the request it matches and the response."""

    url: str
    method: str = "GET"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @classmethod
    def parse(cls, raw: Any, index: int) -> HttpStub:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("url"), str):
            raise FixtureError(f"http[{index}] must be an object with a string url")
        unknown = sorted(set(raw) - {"url", "method", "status", "headers", "body"})
        if unknown:
            raise FixtureError(f"http[{index}]: unknown field(s) {', '.join(unknown)}")
        return cls(raw["url"], str(raw.get("method", "GET")).upper(), int(raw.get("status", 200)),
                   {str(k).lower(): str(v) for k, v in dict(raw.get("headers") or {}).items()},
                   str(raw.get("body", "")))


@dataclass
class HostCall:
    """One host function call a plugin made, and how it ended (``result`` or ``error``)."""

    name: str
    payload: Any
    result: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "payload": self.payload}
        out.update({"error": self.error} if self.error is not None else {"result": self.result})
        return out


SiteFunction = Callable[[Any], Any]
"""A site function for the harness: the decoded payload in, a JSON-able result out (raise a
``HostFunctionError`` for a refusal the guest reads as -1)."""


@dataclass
class _Entry:
    value: Any
    size: int
    expires_at: float | None


class MemoryKV:
    """A plugin's key-value store in a dict, with the app's semantics (expiry, quotas, incr, cas)."""

    def __init__(self, quotas: KVQuotas | None = None, clock: Callable[[], float] = time.time) -> None:
        self.quotas = quotas or KVQuotas()
        self.clock = clock
        self._rows: dict[str, _Entry] = {}

    def load(self, values: Mapping[str, Any]) -> None:
        """Replace the store with ``values`` (no expiry), as a fixture's ``kv`` does."""
        self._rows = {}
        for key, value in values.items():
            self._store("kv", key, value, None, "fixture", keep=False)

    def snapshot(self) -> dict[str, Any]:
        """The live keys and values, sorted by key."""
        self._expire()
        return {key: self._rows[key].value for key in sorted(self._rows)}

    def _expire(self) -> None:
        now = self.clock()
        self._rows = {k: e for k, e in self._rows.items() if e.expires_at is None or e.expires_at > now}

    def _store(self, fn: str, key: str, value: Any, expires_at: float | None, plugin: str, *,
               keep: bool) -> None:
        size = kv_value_size(value, fn, key, plugin, self.quotas)
        old = self._rows.get(key)
        total = sum(entry.size for entry in self._rows.values())
        kv_check_quota(fn, key, size, None if old is None else old.size, len(self._rows), total, plugin,
                       self.quotas)
        self._rows[key] = _Entry(value, size, old.expires_at if keep and old is not None else expires_at)

    # --- the host functions (payload -> result), the app's kv.* on a dict ---------------------------

    def get(self, plugin: str, payload: Any) -> dict[str, Any]:
        key = kv_key(fields(payload, "kv.get", plugin, ["key"]), "kv.get", plugin)
        self._expire()
        entry = self._rows.get(key)
        return {"found": entry is not None, "value": None if entry is None else entry.value}

    def set(self, plugin: str, payload: Any) -> dict[str, Any]:
        data = fields(payload, "kv.set", plugin, ["key", "value"], optional=["ttlSeconds"])
        key = kv_key(data, "kv.set", plugin)
        ttl = kv_ttl(data, plugin)
        self._expire()
        self._store("kv.set", key, data["value"], None if ttl is None else self.clock() + ttl, plugin,
                    keep=False)
        return {"ok": True}

    def delete(self, plugin: str, payload: Any) -> dict[str, Any]:
        key = kv_key(fields(payload, "kv.delete", plugin, ["key"]), "kv.delete", plugin)
        self._expire()
        return {"deleted": self._rows.pop(key, None) is not None}

    def list(self, plugin: str, payload: Any) -> dict[str, Any]:
        prefix = kv_list_prefix(payload, plugin)
        self._expire()
        return {"keys": sorted(k for k in self._rows if k.startswith(prefix))[: self.quotas.max_keys]}

    def incr(self, plugin: str, payload: Any) -> dict[str, Any]:
        data = fields(payload, "kv.incr", plugin, ["key"], optional=["by"])
        key = kv_key(data, "kv.incr", plugin)
        by = kv_incr_by(data, plugin)
        self._expire()
        entry = self._rows.get(key)
        new = kv_incremented(key, entry is not None, None if entry is None else entry.value, by, plugin)
        self._store("kv.incr", key, new, None, plugin, keep=True)
        return {"value": new}

    def cas(self, plugin: str, payload: Any) -> dict[str, Any]:
        data = fields(payload, "kv.cas", plugin, ["key", "expected", "value"])
        key = kv_key(data, "kv.cas", plugin)
        self._expire()
        entry = self._rows.get(key)
        current = None if entry is None else entry.value
        if not cas_matches(entry is not None, current, data["expected"]):
            return {"ok": False, "value": current}
        self._store("kv.cas", key, data["value"], None, plugin, keep=False)
        return {"ok": True, "value": data["value"]}


@dataclass
class HostState:
    """Everything the harness's host functions read and write, for one plugin."""

    manifest: Manifest
    settings: dict[str, Any]
    hosts: tuple[str, ...]
    site_hooks: tuple[tuple[str, str], ...]
    kv: MemoryKV = field(default_factory=MemoryKV)
    http: list[HttpStub] = field(default_factory=list)
    allow_private_hosts: bool = False
    enqueued: list[dict[str, Any]] = field(default_factory=list)
    calls: list[HostCall] = field(default_factory=list)
    log_line: Callable[[int, str], None] = lambda level, message: None


def canned(name: str, spec: Any) -> tuple[str, SiteFunction]:
    """A fixture's ``functions`` entry ``{"capability", "result"|"error"}`` as (capability, function)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("capability"), str) \
            or ("result" in spec) == ("error" in spec) or set(spec) - {"capability", "result", "error"}:
        raise FixtureError(f'functions.{name} must be {{"capability": "...", "result": ...}} or '
                           f'{{"capability": "...", "error": "..."}}')
    if "error" in spec:
        message = str(spec["error"])

        def refuse(payload: Any) -> Any:
            raise HostFunctionError(f"{name}: {message}")
        return spec["capability"], refuse
    result = spec["result"]
    return spec["capability"], lambda payload: result


def build_registry(state: HostState, site: Iterable[tuple[str, str, SiteFunction]]) -> HostFunctions:
    """The runtime's host-function registry for one harness: the built-ins on ``state``, then the
    site's functions (which may replace a built-in, as a site's registration does)."""
    registry = HostFunctions()
    slug = state.manifest.slug

    def fetch(payload: Any) -> dict[str, Any]:
        request = fetch_request(payload, slug)
        fetch_target(request.url, allowed_hosts(state.hosts), slug, allow_private=state.allow_private_hosts)
        for stub in state.http:
            if stub.url == request.url and stub.method == request.method:
                return {"status": stub.status, "headers": dict(stub.headers), "body": stub.body,
                        "url": stub.url}
        raise FetchError(f"http.fetch: no stub for {request.method} {request.url}: add "
                         f'{{"url": "{request.url}", "method": "{request.method}", "status": 200, "body": '
                         '"..."} to the fixture\'s http list', plugin=slug)

    def enqueue(payload: Any) -> dict[str, Any]:
        job, job_payload, delay = enqueue_request(payload, slug)
        if state.manifest.job(job) is None:
            raise undeclared_job(job, slug)
        task_id = uuid.uuid4().hex
        state.enqueued.append({"job": job, "payload": job_payload, "delaySeconds": delay, "id": task_id})
        return {"id": task_id}

    def settings_get(payload: Any) -> dict[str, Any]:
        key = settings_key(payload, slug)
        if key is None:
            return {"settings": dict(state.settings)}
        return {"found": key in state.settings, "value": state.settings.get(key)}

    def log(payload: Any) -> dict[str, Any]:
        state.log_line(*log_request(payload, DEFAULT_LOG_MAX_MESSAGE_BYTES, slug))
        return {"ok": True}

    builtins: list[tuple[str, str, SiteFunction]] = [
        ("kv.get", "kv", lambda p: state.kv.get(slug, p)),
        ("kv.set", "kv", lambda p: state.kv.set(slug, p)),
        ("kv.delete", "kv", lambda p: state.kv.delete(slug, p)),
        ("kv.list", "kv", lambda p: state.kv.list(slug, p)),
        ("kv.incr", "kv", lambda p: state.kv.incr(slug, p)),
        ("kv.cas", "kv", lambda p: state.kv.cas(slug, p)),
        ("http.fetch", "http.fetch", fetch),
        ("log", "log", log),
        ("plugin.info", SELF, lambda p: None),  # answered in _recorded: it needs the grants
        ("jobs.enqueue", "jobs.enqueue", enqueue),
        ("settings.get", SELF, settings_get),
    ]
    for name, capability, func in [*builtins, *site]:
        registry.register(name, capability, _recorded(state, name, func))
    return registry


def _recorded(state: HostState, name: str, func: SiteFunction) -> Callable[[PluginHandle, Any], Any]:
    """Wrap a function so each call is recorded with its outcome; errors go on to the runtime, which
    turns them into the guest's status and the host's log line exactly as in the app."""

    def call(handle: PluginHandle, payload: Any) -> Any:
        record = HostCall(name, payload)
        state.calls.append(record)
        try:
            if name == "plugin.info":
                fields(payload, "plugin.info", state.manifest.slug)
                result: Any = {
                    "slug": state.manifest.slug, "version": state.manifest.version,
                    "capabilities": sorted(handle.capabilities), "hosts": sorted(state.hosts),
                    "hooks": [{"name": hook, "kind": kind} for hook, kind in sorted(state.site_hooks)]}
            else:
                result = func(payload)
        except PluginError as exc:
            record.error = f"{exc.code}: {exc.message}"
            raise
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        record.result = result
        return result

    return call


__all__ = ["ALWAYS_GRANTED", "HostCall", "HostState", "HttpStub", "MemoryKV", "SiteFunction",
           "build_registry", "canned"]
