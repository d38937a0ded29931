"""The rules of the built-in host functions' payloads, with no storage and no Django.

One home for what a ``kv.*``, ``settings.get``, ``log``, ``jobs.enqueue`` or ``http.fetch`` payload
may hold (fields, key lengths, value sizes, quotas, ttl ranges, allowed hosts), so the app's real host
functions (:mod:`gonext_plugins.host_functions`, which store in the database) and the Django-free
harness of :mod:`gonext_plugins.testing` (which stores in memory) refuse exactly the same payloads
with exactly the same messages. Each refusal is a typed error of :mod:`gonext_plugins.errors`:
``MalformedHostCallPayload`` (the guest reads -3), ``BadHostCallPayload`` or another
``HostFunctionError`` (-1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from . import netpolicy
from .errors import (
    BadHostCallPayload,
    FetchDenied,
    HostFunctionError,
    KVQuotaExceeded,
    MalformedHostCallPayload,
)
from .manifest import Manifest, format_path
from .runtime import levels
from .runtime.limits import Limits
from .storable import unstorable_paths

# --- every payload --------------------------------------------------------------------------------


def fields(payload: Any, fn: str, plugin: str, required: Iterable[str] = (),
           optional: Iterable[str] = ()) -> dict[str, Any]:
    """Check a payload is an object with exactly these fields (-3 for the guest otherwise)."""
    required, optional = tuple(required), tuple(optional)
    if not isinstance(payload, dict):
        raise MalformedHostCallPayload(f"{fn}: the payload must be a JSON object, not "
                                       f"{type(payload).__name__}", plugin=plugin)
    missing = [f for f in required if f not in payload]
    if missing:
        raise MalformedHostCallPayload(f"{fn}: missing field(s) {', '.join(missing)}", plugin=plugin)
    if len(payload) == len(required):  # every required field and nothing else (on every host call)
        return payload
    extra = sorted(set(payload) - set(required) - set(optional))
    if extra:
        raise MalformedHostCallPayload(f"{fn}: unknown field(s) {', '.join(extra)}; it takes "
                                       f"{', '.join((*required, *optional))}", plugin=plugin)
    return payload


def require_storable(value: Any, what: str, plugin: str) -> None:
    """Refuse data the plugin will read back when a string in it (a key, an object key, a value)
    holds a character no supported database stores; changing it would hand back other data."""
    path = next(unstorable_paths(value), None)
    if path is not None:
        where = "" if not path else f" at {format_path(path)}"
        raise BadHostCallPayload(f"{what}{where} contains a NUL character or a lone surrogate, which "
                                 "cannot be stored; encode binary data (for example as base64)",
                                 plugin=plugin)


# --- kv ---------------------------------------------------------------------------------------------

MAX_KEY_LENGTH = 255  # PluginKV.key
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600  # ten years: longer is a typo, not a cache
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what every guest language reads as an integer
ALWAYS_GRANTED: frozenset[str] = frozenset({"log", "self"})
"""Capabilities every plugin holds without asking: writing to its own log, and reading facts about
itself and its own settings (``plugin.info``, ``settings.get``). Here, not in ``capabilities``, so
the Django-free test harness grants exactly what the app grants."""
DEFAULT_LOG_MAX_MESSAGE_BYTES = 4096

DEFAULT_KV_MAX_KEYS = 1_000
DEFAULT_KV_MAX_VALUE_BYTES = 64 * 1024
DEFAULT_KV_MAX_TOTAL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class KVQuotas:
    """A plugin's key-value quotas (the site's ``KV_MAX_*`` settings)."""

    max_keys: int = DEFAULT_KV_MAX_KEYS
    max_value_bytes: int = DEFAULT_KV_MAX_VALUE_BYTES
    max_total_bytes: int = DEFAULT_KV_MAX_TOTAL_BYTES


def kv_key(payload: dict[str, Any], fn: str, plugin: str) -> str:
    key = payload["key"]
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"{fn}: key must be a string of 1 to {MAX_KEY_LENGTH} characters",
                                 plugin=plugin)
    require_storable(key, f"{fn}: key", plugin)
    return key


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality for ``kv.cas``: 1 is not 1.0 nor true, and object key order does not matter."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def cas_matches(found: bool, current: Any, expected: Any) -> bool:
    """``kv.cas``'s comparison: ``expected`` null matches an absent key (or a stored null)."""
    return current is None if expected is None else found and same_json(current, expected)


def kv_ttl(data: dict[str, Any], plugin: str) -> float | None:
    ttl = data.get("ttlSeconds")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or not 0 < ttl <= MAX_TTL_SECONDS:
        raise BadHostCallPayload(f"kv.set: ttlSeconds must be a number of seconds above 0 and at most "
                                 f"{MAX_TTL_SECONDS}", plugin=plugin)
    return float(ttl)


def kv_incr_by(data: dict[str, Any], plugin: str) -> int:
    by = data.get("by", 1)
    if not is_int(by) or not INT64_MIN <= by <= INT64_MAX:
        raise BadHostCallPayload("kv.incr: by must be an integer (a signed 64-bit one)", plugin=plugin)
    return int(by)


def kv_incremented(key: str, found: bool, old: Any, by: int, plugin: str) -> int:
    """``kv.incr``'s new value: a missing key counts from 0; both stay within a signed 64-bit integer."""
    if found and not is_int(old):
        raise HostFunctionError(f"kv.incr {key!r}: the stored value is not an integer "
                                f"({type(old).__name__})", plugin=plugin)
    new = (old if found else 0) + by
    if not INT64_MIN <= new <= INT64_MAX:
        raise HostFunctionError(f"kv.incr {key!r}: the result would overflow a signed 64-bit "
                                "integer", plugin=plugin)
    return int(new)


def kv_value_size(value: Any, fn: str, key: str, plugin: str, quotas: KVQuotas) -> int:
    """The stored size of a value, refused when it cannot be stored or is over the value quota."""
    require_storable(value, f"{fn} {key!r}: value", plugin)
    size = len(orjson.dumps(value))
    if size > quotas.max_value_bytes:
        raise KVQuotaExceeded(f"{fn} {key!r}: value of {size} bytes is over KV_MAX_VALUE_BYTES="
                              f"{quotas.max_value_bytes}", plugin=plugin)
    return size


def kv_check_quota(fn: str, key: str, size: int, old_size: int | None, keys: int, total: int,
                   plugin: str, quotas: KVQuotas) -> None:
    """Refuse a write that would pass the key count or the total size (``old_size`` None: a new key).
    Growing past the total is refused; shrinking is allowed even when already over it (the quota may
    have been lowered since the data was written)."""
    if old_size is None and keys + 1 > quotas.max_keys:
        raise KVQuotaExceeded(f"{fn} {key!r}: a new key would make {keys + 1} keys, over "
                              f"KV_MAX_KEYS={quotas.max_keys}", plugin=plugin)
    new_total = total - (old_size or 0) + size
    if new_total > quotas.max_total_bytes and size > (old_size or 0):
        raise KVQuotaExceeded(f"{fn} {key!r}: the store would hold {new_total} bytes, over "
                              f"KV_MAX_TOTAL_BYTES={quotas.max_total_bytes}", plugin=plugin)


def kv_list_prefix(payload: Any, plugin: str) -> str:
    data = fields(payload if payload is not None else {}, "kv.list", plugin, optional=["prefix"])
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise BadHostCallPayload(f"kv.list: prefix must be a string of at most {MAX_KEY_LENGTH} "
                                 "characters", plugin=plugin)
    require_storable(prefix, "kv.list: prefix", plugin)
    return prefix


# --- settings.get, log, jobs.enqueue ---------------------------------------------------------------


def settings_key(payload: Any, plugin: str) -> str | None:
    """The key ``settings.get`` asks for; None asks for all of them."""
    data = fields(payload if payload is not None else {}, "settings.get", plugin, optional=["key"])
    if "key" not in data:
        return None
    key = data["key"]
    if not isinstance(key, str) or not key:
        raise BadHostCallPayload("settings.get: key must be a non-empty string", plugin=plugin)
    return key


def log_message(message: Any, max_bytes: int, plugin: str) -> str:
    """The ``log`` function's message, cut to ``max_bytes`` of UTF-8 (LOG_MAX_MESSAGE_BYTES)."""
    if not isinstance(message, str):
        raise BadHostCallPayload("log: message must be a string", plugin=plugin)
    raw = message.encode("utf-8")
    if len(raw) > max_bytes:
        return raw[:max_bytes].decode("utf-8", "ignore") + " [truncated]"
    return message


def log_request(payload: Any, max_bytes: int, plugin: str) -> tuple[int, str]:
    """The ``log`` function's (level, message): level a name or 0-3 (default info)."""
    data = fields(payload, "log", plugin, ["message"], ["level"])
    number = levels.parse(data.get("level", "info"))
    if number is None:
        raise BadHostCallPayload("log: level must be debug, info, warning or error (or 0-3)", plugin=plugin)
    return number, log_message(data["message"], max_bytes, plugin)


MAX_DELAY_SECONDS = 30 * 86_400  # a job queued further ahead is a mistake, not a schedule


def enqueue_request(payload: Any, plugin: str) -> tuple[str, Any, float]:
    """``jobs.enqueue``'s (job, payload, delay seconds). Whether the job is declared is the caller's."""
    data = fields(payload, "jobs.enqueue", plugin, ["job"], ["payload", "delaySeconds"])
    job = data["job"]
    if not isinstance(job, str) or not job:
        raise BadHostCallPayload("jobs.enqueue: job must be a non-empty string", plugin=plugin)
    delay = data.get("delaySeconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise BadHostCallPayload(f"jobs.enqueue: delaySeconds must be a number from 0 to {MAX_DELAY_SECONDS}",
                                 plugin=plugin)
    return job, data.get("payload"), float(delay)


def undeclared_job(job: str, plugin: str) -> HostFunctionError:
    return HostFunctionError(f"jobs.enqueue: {job!r} is not a job this plugin declares; a plugin "
                             "queues only its own declared jobs", plugin=plugin)


# --- http.fetch ----------------------------------------------------------------------------------------

METHODS = ("GET", "HEAD", "POST")
MAX_URL_LENGTH = 8192
MAX_REQUEST_HEADERS = 50
DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers the host owns: Host would reach other virtual hosts than the one granted; the framing
# headers are computed by http.client.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "proxy-authorization", "proxy-connection", "expect",
})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class FetchRequest:
    url: str
    method: str
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True)
class FetchTarget:
    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def fetch_request(payload: Any, plugin: str) -> FetchRequest:
    """An ``http.fetch`` payload checked: url, method, headers (the host's own refused), body."""
    data = fields(payload, "http.fetch", plugin, ["url"], ["method", "headers", "body"])
    url, method = data["url"], data.get("method", "GET")
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise BadHostCallPayload(f"http.fetch: url must be a string of at most {MAX_URL_LENGTH} characters",
                                 plugin=plugin)
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise BadHostCallPayload(f"http.fetch: method must be one of {', '.join(METHODS)}", plugin=plugin)
    method = method.upper()
    headers = fetch_headers(data.get("headers"), plugin)
    body_text = data.get("body")
    if body_text is not None and (not isinstance(body_text, str) or method != "POST"):
        raise BadHostCallPayload("http.fetch: body must be a string, and only a POST has one", plugin=plugin)
    body = body_text.encode("utf-8") if body_text is not None else (b"" if method == "POST" else None)
    return FetchRequest(url, method, headers, body)


def fetch_headers(raw: Any, plugin: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_REQUEST_HEADERS:
        raise BadHostCallPayload(f"http.fetch: headers must be an object of at most {MAX_REQUEST_HEADERS} "
                                 "string values", plugin=plugin)
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if not _TOKEN.fullmatch(name) or not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise BadHostCallPayload(f"http.fetch: invalid header {name!r}", plugin=plugin)
        lower = name.lower()
        if lower in FORBIDDEN_HEADERS or lower.startswith("proxy-"):
            raise BadHostCallPayload(f"http.fetch: the {name} header is set by the host, not the plugin",
                                     plugin=plugin)
        headers[name] = value
    return headers


def allowed_hosts(hosts: Iterable[str]) -> set[tuple[str, int | None]]:
    """(host, port or None) pairs from the hosts a plugin may reach (listed and granted)."""
    pairs: set[tuple[str, int | None]] = set()
    for entry in hosts:
        name, port = netpolicy.split_host(str(entry).lower())
        pairs.add((name.rstrip("."), int(port) if port.isdigit() else None))
    return pairs


def fetch_target(url: str, allowed: set[tuple[str, int | None]], plugin: str, *,
                 allow_private: bool) -> FetchTarget:
    """Parse and authorize one URL. A listed ``host:port`` allows that port; a bare ``host``
    allows the scheme's default port only (as CSP host sources do)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchDenied(f"http.fetch: not a valid URL {url!r}: {exc}", plugin=plugin) from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchDenied(f"http.fetch: only http and https URLs are allowed, not {scheme or 'no'} scheme "
                          f"({url!r})", plugin=plugin)
    if parts.username is not None or parts.password is not None:
        raise FetchDenied("http.fetch: credentials in the URL are not allowed; send an Authorization "
                          "header instead", plugin=plugin)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchDenied(f"http.fetch: the URL {url!r} has no host", plugin=plugin)
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise FetchDenied(f"http.fetch: invalid host name {host!r}", plugin=plugin) from exc
    refusal = netpolicy.host_refusal(host, allow_private=allow_private)
    if refusal:
        raise FetchDenied(f"http.fetch: {refusal}", plugin=plugin)
    port = port or DEFAULT_PORTS[scheme]
    if (host, port) not in allowed and not (port == DEFAULT_PORTS[scheme] and (host, None) in allowed):
        shown = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        raise FetchDenied(f"http.fetch: {shown} is not an allowed host for this plugin (it must be "
                          "listed in the manifest's http.allowedHosts and granted by an admin)",
                          plugin=plugin)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return FetchTarget(url, scheme, host, port, path)


# --- grants and limits -----------------------------------------------------------------------------


def denial_hint(manifest: Manifest, capability: str) -> str:
    """What would give a plugin ``capability``, for the log line of its first denied call: the
    manifest change when this version does not ask for it, else the admin's grant."""
    quoted = f'"{capability}"'
    if capability in manifest.optional_capabilities:
        return (f"{quoted} is in the manifest's optionalCapabilities but not granted: an admin can "
                "grant it on the plugin's page (no manifest change needed)")
    if capability in manifest.capabilities:
        return f"{quoted} is a required capability of the manifest, not granted: an admin must grant it"
    return (f"add {quoted} to optionalCapabilities in the manifest (or to capabilities if the plugin "
            "cannot work without it), release a new version and have an admin grant it")


def plugin_limits(manifest: Manifest, host: Limits) -> Limits:
    """What a manifest asks for, lowered to the host's caps (a plugin can only ask for less)."""
    asked = manifest.limits
    changes: dict[str, Any] = {}
    if asked.memory_pages:
        changes["memory_pages"] = min(asked.memory_pages, host.memory_pages)
    if asked.fuel and host.fuel is not None:
        changes["fuel"] = min(asked.fuel, host.fuel)
    if asked.timeout_ms:
        hard = min(asked.timeout_ms, host.hard_timeout_ms)
        changes["hard_timeout_ms"] = hard
        if host.soft_timeout_ms is not None:
            changes["soft_timeout_ms"] = min(host.soft_timeout_ms, hard)
    return host.replace(**changes) if changes else host
