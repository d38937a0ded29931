"""Preview: one page of the site rendered with one more plugin version active, for that render only.

Why: "activating a plugin broke my site" is the fear that keeps admins from installing plugins.
A preview answers it before anything changes: the page before and after, a diff of its HTML, every
hook call the plugin made (time, fuel, memory, status), its log lines and faults.

How it stays a preview (nothing persists, nobody else sees it):

- The page runs through the site's real middleware, URLconf, views and templates
  (``WSGIHandler.get_response`` on a ``GET`` built by ``RequestFactory``, as an anonymous visitor),
  in a copied ``contextvars`` context; ``request_started``/``request_finished`` are not sent.
- The candidate version is loaded into a runtime of its own (:func:`_runtime`, closed afterwards)
  and joins the hook bus through :func:`hooks.overlay`, seen by this context only: other requests,
  threads and processes never see it. For an upgrade the active version's receivers are hidden in
  the same overlay. Its runtime name is ``<slug>:preview`` so its calls never count as the real
  plugin's figures.
- Its host calls go through :class:`_PreviewHostFunctions`: ``kv.set/incr/cas/delete`` write a
  throwaway in-memory layer over the real store (later calls of the same preview read it back);
  ``jobs.enqueue`` is answered with a fake id (``preview-...``) and nothing is queued; ``http.fetch``
  is refused (the guest sees an error, -1); settings are read-only (the stored values or defaults).
  Every such write is listed in the result. Its log lines and faults are kept in the result, not in
  the plugin's log backlog nor its fault counts (a preview never quarantines anything).
- The site's caches are swapped, in that context only, for Django's dummy cache: the cache
  middleware, template fragment caches and ``cache.get/set`` neither read nor write the real ones.
- Both renders run inside one transaction per database that is rolled back: whatever the site's own
  views (or other active plugins' kv writes and database-queued jobs) write during the preview is
  undone. A task backend outside the database (Redis, rq) is not covered by that rollback: only the
  previewed plugin's own jobs are held back by then.
"""

from __future__ import annotations

import contextvars
import difflib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections, transaction
from django.http import HttpResponseBase
from django.urls import Resolver404, resolve
from wasmtime import Module

from . import bridge, capabilities, hooks, loading
from .bundle import Bundle
from .conf import settings
from .errors import HookError, HostFunctionError, InvalidPreviewPath, PluginError, PreviewError
from .host_functions import kv as kv_store
from .host_functions._payload import slug as slug_of
from .host_rules import (
    KVQuotas,
    cas_matches,
    enqueue_request,
    fields,
    kv_incr_by,
    kv_incremented,
    kv_key,
    kv_list_prefix,
    kv_ttl,
    kv_value_size,
    undeclared_job,
)
from .lifecycle import manifest_of
from .lifecycle.preflight import effective, effective_hosts
from .lifecycle.settings import effective_values
from .loading import LoadedPlugin
from .manifest import Manifest, version_key
from .models import CapabilityGrant, Plugin, PluginState, PluginVersion
from .runtime import Runtime
from .runtime.host import HostFunction, HostFunctions, PluginHandle
from .storage import read_blob

__all__ = ["Candidate", "PreviewResult", "candidate_for_bundle", "candidate_for_plugin", "check_path",
           "preview", "suggestions"]

MAX_LOG_LINES = 500
MAX_DIFF_LINES = 2000
RUNTIME_SUFFIX = ":preview"
_APP_MODULES = ("gonext_plugins.", "django.contrib.admin.", "rest_framework.")


# --- what to preview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """The one plugin version a preview makes active: installed (a ``PluginVersion``) or staged (a
    verified bundle held by the install or upgrade dialog, not installed)."""

    slug: str
    version: str
    manifest: Manifest
    wasm: bytes
    wasm_sha256: str
    capabilities: frozenset[str]
    hosts: tuple[str, ...]
    settings: dict[str, Any]
    origin: str  # "installed" or "staged"
    blob_name: str = ""


def _grants(plugin: Plugin | None) -> dict[str, list[str]]:
    if plugin is None:
        return {}
    return {capability: hosts or [] for capability, hosts in
            CapabilityGrant.objects.filter(plugin=plugin).values_list("capability", "hosts")}


def candidate_for_plugin(plugin: Plugin, version: str | None = None) -> Candidate:
    """An installed version of ``plugin`` with the grants it holds: ``version`` when named, else the
    one activation would run (an inactive plugin's chosen version, or its newest), else for an active
    plugin the newest version that is not the active one."""
    versions = sorted(plugin.versions.all(), key=lambda v: version_key(v.version), reverse=True)
    chosen: PluginVersion | None
    if version is not None:
        chosen = next((v for v in versions if v.version == version), None)
        if chosen is None:
            raise PreviewError(f"version {version} of {plugin.slug} is not installed", plugin=plugin.slug)
    elif plugin.state != PluginState.ACTIVE:
        chosen = plugin.active_version or (versions[0] if versions else None)
    else:
        chosen = next((v for v in versions if v.pk != plugin.active_version_id), None)
    if chosen is None:
        raise PreviewError("nothing to preview: the active version is the only one installed; upload a "
                           "new version from the upgrade dialog to preview it", plugin=plugin.slug)
    if plugin.state == PluginState.ACTIVE and chosen.pk == plugin.active_version_id:
        raise PreviewError(f"version {chosen.version} is already active for every visitor",
                           plugin=plugin.slug)
    manifest = manifest_of(chosen)
    granted = _grants(plugin)
    return Candidate(slug=plugin.slug, version=chosen.version, manifest=manifest,
                     wasm=read_blob(chosen.blob_name, chosen.wasm_sha256, plugin=plugin.slug),
                     wasm_sha256=chosen.wasm_sha256, capabilities=effective(granted, manifest),
                     hosts=effective_hosts(granted.get("http.fetch", []), manifest),
                     settings=effective_values(manifest, plugin.settings), origin="installed",
                     blob_name=chosen.blob_name)


def candidate_for_bundle(bundle: Bundle, plugin: Plugin | None = None) -> Candidate:
    """A staged bundle (already verified), as if every capability it asks for were granted: what the
    admin is deciding about. Settings are the plugin's stored values (an upgrade) or the defaults."""
    manifest = bundle.manifest
    return Candidate(slug=manifest.slug, version=manifest.version, manifest=manifest, wasm=bundle.wasm,
                     wasm_sha256=bundle.wasm_sha256,
                     capabilities=effective(manifest.all_capabilities, manifest),
                     hosts=tuple(sorted(manifest.allowed_hosts)),
                     settings=effective_values(manifest, plugin.settings if plugin else {}),
                     origin="staged")


def check_path(path: str) -> str:
    """``path`` if a visitor of this site could open it: starts with one ``/``, no scheme or host, no
    control characters, and not the admin's, the API's or this app's own pages."""
    path = (path or "").strip()
    parts = urlsplit(path)
    if (not path.startswith("/") or path.startswith("//") or "\\" in path or parts.scheme
            or parts.netloc or any(ord(ch) < 32 or ord(ch) == 127 for ch in path) or len(path) > 2000):
        raise InvalidPreviewPath(f"{path!r} is not a path of this site: give one starting with / "
                                 "(no scheme, no host)")
    try:
        match = resolve(parts.path)
    except Resolver404:
        return path  # the page's own 404 is what a visitor would see; the preview shows it
    module = getattr(match.func, "__module__", "") or ""
    if "admin" in match.namespaces or module.startswith(_APP_MODULES):
        raise InvalidPreviewPath(f"{path!r} is one of the admin's or the plugin app's own pages; "
                                 "preview a page of the site that visitors see")
    return path


def suggestions() -> list[tuple[str, str]]:
    """Pages to offer in the preview form: ``PREVIEW_SUGGESTIONS()`` (the site's own, e.g. its latest
    post), the home page when unset. A failing or malformed hook falls back to the home page."""
    hook = settings.PREVIEW_SUGGESTIONS
    if hook is None:
        return [("/", "Home page")]
    try:
        found = [(str(path), str(label)) for path, label in hook()]
    except Exception:
        return [("/", "Home page")]
    return found or [("/", "Home page")]


# --- what a preview saw --------------------------------------------------------------------------------


@dataclass
class Page:
    status: int
    content_type: str
    html: str
    truncated: bool = False


@dataclass
class PreviewResult:
    slug: str
    version: str
    origin: str
    path: str
    before_label: str
    before: Page
    after: Page
    diff: str
    calls: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    writes: list[dict[str, Any]]
    policy: dict[str, str]
    elapsed_ms: float  # both renders, the candidate's load excluded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


POLICY = {
    "kv": "throwaway: kv.set/incr/cas/delete write an in-memory layer over the real store, read back "
          "by the preview's later calls and dropped at its end",
    "jobs": "not queued: jobs.enqueue answers a fake id (preview-...)",
    "http.fetch": "refused: the guest gets an error (-1)",
    "settings": "read-only: the stored values, or the defaults",
    "caches": "bypassed: the site's caches are replaced by a dummy cache for the preview request",
    "database": "rolled back: whatever the page's views write during the preview is undone",
}


@dataclass
class _Session:
    """What the preview of one candidate collects while its page renders."""

    slug: str
    kv: dict[str, tuple[bool, Any]] = field(default_factory=dict)  # key -> (present, value)
    calls: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    dropped_logs: int = 0

    def write(self, function: str, outcome: str, target: str, **details: Any) -> None:
        """Note one write held back: ``target`` is what it named (a key, a job, a URL)."""
        self.writes.append({"function": function, "outcome": outcome, "target": target, **details})


_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("gonext_preview_session",
                                                                            default=None)


def _current(plugin: PluginHandle, function: str) -> _Session:
    session = _session.get()
    if session is None or session.slug != slug_of(plugin):  # a preview runtime outside its preview
        raise HostFunctionError(f"{function} is refused outside a preview", plugin=slug_of(plugin))
    return session


# --- host functions of the preview runtime --------------------------------------------------------------


def _kv_lookup(session: _Session, plugin: PluginHandle, key: str) -> tuple[bool, Any]:
    if key in session.kv:
        return session.kv[key]
    found = kv_store.kv_get(plugin, {"key": key})
    return bool(found["found"]), found["value"]


def _kv_get(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.get")
    key = kv_key(fields(payload, "kv.get", session.slug, ["key"]), "kv.get", session.slug)
    found, value = _kv_lookup(session, plugin, key)
    return {"found": found, "value": value}


def _kv_list(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.list")
    prefix = kv_list_prefix(payload, session.slug)
    keys = set(kv_store.kv_list(plugin, payload)["keys"])
    for key, (present, _) in session.kv.items():
        if key.startswith(prefix):
            (keys.add if present else keys.discard)(key)
    return {"keys": sorted(keys)[: settings.KV_MAX_KEYS]}


def _kv_put(session: _Session, function: str, key: str, value: Any) -> None:
    quotas = KVQuotas(settings.KV_MAX_KEYS, settings.KV_MAX_VALUE_BYTES, settings.KV_MAX_TOTAL_BYTES)
    kv_value_size(value, function, key, session.slug, quotas)
    session.kv[key] = (True, value)
    session.write(function, "throwaway", key, value=value)


def _kv_set(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.set")
    data = fields(payload, "kv.set", session.slug, ["key", "value"], optional=["ttlSeconds"])
    key = kv_key(data, "kv.set", session.slug)
    kv_ttl(data, session.slug)  # checked as for real; a preview ends before any expiry matters
    _kv_put(session, "kv.set", key, data["value"])
    return {"ok": True}


def _kv_incr(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.incr")
    data = fields(payload, "kv.incr", session.slug, ["key"], optional=["by"])
    key = kv_key(data, "kv.incr", session.slug)
    found, old = _kv_lookup(session, plugin, key)
    new = kv_incremented(key, found, old, kv_incr_by(data, session.slug), session.slug)
    _kv_put(session, "kv.incr", key, new)
    return {"value": new}


def _kv_cas(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.cas")
    data = fields(payload, "kv.cas", session.slug, ["key", "expected", "value"])
    key = kv_key(data, "kv.cas", session.slug)
    found, current = _kv_lookup(session, plugin, key)
    if not cas_matches(found, current, data["expected"]):
        return {"ok": False, "value": current}
    _kv_put(session, "kv.cas", key, data["value"])
    return {"ok": True, "value": data["value"]}


def _kv_delete(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "kv.delete")
    key = kv_key(fields(payload, "kv.delete", session.slug, ["key"]), "kv.delete", session.slug)
    found, _ = _kv_lookup(session, plugin, key)
    session.kv[key] = (False, None)
    session.write("kv.delete", "throwaway", key)
    return {"deleted": found}


def _jobs_enqueue(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "jobs.enqueue")
    job, job_payload, delay = enqueue_request(payload, session.slug)
    manifest = getattr(getattr(plugin, "context", None), "manifest", None)
    if manifest is None or manifest.job(job) is None:
        raise undeclared_job(job, session.slug)
    fake = f"preview-{uuid.uuid4().hex}"
    session.write("jobs.enqueue", "not queued", job, payload=job_payload, delaySeconds=delay, id=fake)
    return {"id": fake}


def _http_fetch(plugin: PluginHandle, payload: Any) -> dict[str, Any]:
    session = _current(plugin, "http.fetch")
    url = payload.get("url") if isinstance(payload, dict) else None
    session.write("http.fetch", "refused", str(url or ""))
    raise HostFunctionError("http.fetch is refused in a preview: nothing leaves the site",
                            plugin=session.slug)


_OVERRIDES: dict[str, Callable[[PluginHandle, Any], Any]] = {
    "kv.get": _kv_get, "kv.list": _kv_list, "kv.set": _kv_set, "kv.incr": _kv_incr,
    "kv.cas": _kv_cas, "kv.delete": _kv_delete, "jobs.enqueue": _jobs_enqueue,
    "http.fetch": _http_fetch,
}


class _PreviewHostFunctions(HostFunctions):
    """The site's host functions, with the writing ones replaced by the preview's (same capability,
    so the grant check is unchanged); everything else (``settings.get``, ``plugin.info``, ``log``,
    the site's own) is the real function."""

    def get(self, name: str) -> HostFunction | None:
        real = capabilities.host_functions.get(name)
        override = _OVERRIDES.get(name)
        if real is None or override is None:
            return real
        return HostFunction(name, real.capability, override)

    def __contains__(self, name: object) -> bool:
        return name in capabilities.host_functions

    def __iter__(self) -> Iterator[HostFunction]:
        return iter([fn for fn in (self.get(f.name) for f in capabilities.host_functions) if fn])

    def __len__(self) -> int:
        return len(capabilities.host_functions)


def _log_sink(plugin: str, level: int, message: str, source: str) -> None:
    session = _session.get()
    if session is None:
        return
    if len(session.logs) >= MAX_LOG_LINES:
        session.dropped_logs += 1
        return
    session.logs.append({"level": level, "message": message, "source": source})


def _runtime() -> Runtime:
    """A runtime for one preview (closed after it): its own host functions and log sink, the site's
    limits, and the shared compiled-artifact cache, so a version compiled before loads at once."""
    return Runtime(limits=loading.host_limits(), log_sink=_log_sink, cache_dir=settings.cache_dir,
                   host_functions=_PreviewHostFunctions(), json_default=bridge.json_default,
                   compile_limits=loading.compile_limits())


# --- the candidate on the bus ------------------------------------------------------------------------------


class _PreviewPlugin(LoadedPlugin):
    """The candidate as loaded for a preview: runs as ``<slug>:preview`` and reports its calls and
    faults to the preview instead of the plugin's figures and fault record."""

    def __post_init__(self, module: Module, runtime: Runtime) -> None:
        self.runtime_plugin = runtime.load(
            module, name=self.slug + RUNTIME_SUFFIX,
            limits=loading.plugin_limits(self.manifest, runtime.limits),
            capabilities=self.capabilities, context=self)
        self.runtime_plugin.denial_hint = self.denial_hint
        self.runtime_plugin.call_observer = self._observe

    def _observe(self, kind: str, hook: str, seconds: float, fuel: int, memory: int) -> None:
        session = _session.get()
        if session is not None:
            session.calls.append({"hook": hook, "kind": kind, "ms": round(seconds * 1000, 3),
                                  "fuel": fuel, "memory_bytes": memory, "status": "ok"})

    def _fault(self, kind: str, hook: str, exc: PluginError) -> None:
        session = _session.get()
        if session is not None:
            report = self.trap_report(exc)
            session.faults.append({"hook": hook, "kind": kind, "message": exc.message,
                                   "trace": (report or {}).get("text", "")})


class _PreviewHookProxy(bridge.PluginHookProxy):
    """A candidate's hook on the preview's overlay: a fault is the preview's news (the call's row
    says it; a refusal before any guest call gets a row of its own), not a counter nor a raised
    error."""

    def _fault(self, exc: PluginError) -> None:
        session = _session.get()
        if session is None:
            return
        status = exc.status if isinstance(exc, HookError) else exc.code
        if session.calls and session.calls[-1]["hook"] == self.hook and session.calls[-1]["status"] == "ok":
            session.calls[-1]["status"] = status
        else:
            session.calls.append({"hook": self.hook, "kind": self.kind, "ms": 0.0, "fuel": 0,
                                  "memory_bytes": 0, "status": status})
        if not any(f["hook"] == self.hook and f["message"] == exc.message for f in session.faults):
            session.faults.append({"hook": self.hook, "kind": status, "message": exc.message, "trace": ""})


def _is_plugin(slug: str) -> Callable[[Any], bool]:
    def hide(callback: Any) -> bool:
        return isinstance(callback, bridge.PluginHookProxy) and callback.loaded.slug == slug
    return hide


# --- rendering ------------------------------------------------------------------------------------------

_VOLATILE = [
    (re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]*'), r"\1…"),
    (re.compile(r'(nonce=")[^"]*'), r"\1…"),
]


def _normalized_lines(html: str) -> list[str]:
    """Lines for the diff: one tag boundary per line, trailing space and blank lines dropped, and the
    values that differ on every render (CSRF tokens, CSP nonces) masked."""
    for pattern, replacement in _VOLATILE:
        html = pattern.sub(replacement, html)
    html = re.sub(r">\s*<", ">\n<", html)
    return [line.rstrip() for line in html.splitlines() if line.strip()]


def html_diff(before: str, after: str) -> str:
    """A unified diff of two pages' HTML after :func:`_normalized_lines`; empty when they match."""
    lines = list(difflib.unified_diff(_normalized_lines(before), _normalized_lines(after),
                                      "before", "after", n=2, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)


def _body(response: HttpResponseBase) -> tuple[str, bool]:
    cap = settings.PREVIEW_MAX_HTML_BYTES
    if getattr(response, "streaming", False):
        raw = b""
        for chunk in response.streaming_content:  # type: ignore[attr-defined]
            raw += bytes(chunk)
            if len(raw) > cap:
                break
    else:
        raw = response.content  # type: ignore[attr-defined]
    charset = getattr(response, "charset", None) or "utf-8"
    return raw[:cap].decode(charset, "replace"), len(raw) > cap


def _render(path: str, host: str, secure: bool) -> Page:
    """One anonymous ``GET`` of ``path`` through the site's middleware and views, in this context
    (signals of a request's start and end are not sent: they would close the connection that holds
    the preview's transaction)."""
    # django.test (with unittest and the test runner's machinery, ~17 ms) is imported on the first
    # preview, not with the admin's forms in every process's django.setup() (issue #18, start-up).
    from django.test import RequestFactory

    request = RequestFactory().get(path, HTTP_HOST=host, secure=secure)
    response = WSGIHandler().get_response(request)
    html, truncated = _body(response)
    return Page(status=response.status_code, content_type=response.get("Content-Type", ""), html=html,
                truncated=truncated)


@contextmanager
def _sandbox() -> Iterator[None]:
    """Dummy caches in this context and a rolled-back transaction on every database."""
    per_context: Any = caches._connections  # type: ignore[attr-defined]  # asgiref Local: per context
    for alias in django_settings.CACHES:
        setattr(per_context, alias, DummyCache(f"gonext-preview-{alias}", {}))
    with ExitStack() as stack:
        for alias in connections:
            stack.enter_context(transaction.atomic(using=alias))
        try:
            yield
        finally:
            for alias in connections:
                transaction.set_rollback(True, using=alias)


def default_host() -> str:
    """The host a preview's request names when the caller has none (the CLI): the first of
    ``ALLOWED_HOSTS`` that is a plain name, else ``localhost``."""
    for host in django_settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


def _before_label(plugin: Plugin | None) -> str:
    if plugin is None or plugin.state != PluginState.ACTIVE or plugin.active_version is None:
        return "without the plugin"
    return f"with {plugin.active_version.version} (active now)"


def preview(candidate: Candidate, path: str, *, host: str | None = None,
            secure: bool | None = None) -> PreviewResult:
    """Render ``path`` before and with ``candidate`` active, for this call only (module doc).
    ``host`` and ``secure`` describe the request (the admin's own; by default the first plain
    ``ALLOWED_HOSTS`` name, and HTTPS when ``SECURE_SSL_REDIRECT`` is on, so the page is not a
    redirect)."""
    path = check_path(path)
    host = host or default_host()
    secure = django_settings.SECURE_SSL_REDIRECT if secure is None else secure
    plugin = Plugin.objects.filter(slug=candidate.slug).select_related("active_version").first()
    session = _Session(slug=candidate.slug)
    runtime = _runtime()
    try:
        try:
            loaded = _PreviewPlugin(slug=candidate.slug, version=candidate.version, version_pk=0,
                                    wasm_sha256=candidate.wasm_sha256, manifest=candidate.manifest,
                                    capabilities=candidate.capabilities, hosts=candidate.hosts,
                                    blob_name=candidate.blob_name, runtime=runtime,
                                    module=runtime.compile(candidate.wasm, candidate.slug))
        except PluginError as exc:
            raise PreviewError(f"version {candidate.version} cannot be loaded: {exc.message}",
                               plugin=candidate.slug) from exc
        loaded.settings = dict(candidate.settings)
        proxies = bridge.proxies_for(loaded, _PreviewHookProxy)
        added = [(proxy.hook, proxy, proxy.priority) for proxy in proxies]

        def run() -> tuple[Page, Page]:
            _session.set(session)
            with _sandbox():
                before = contextvars.copy_context().run(_render, path, host, secure)
                with hooks.overlay(added, _is_plugin(candidate.slug)):
                    after = contextvars.copy_context().run(_render, path, host, secure)
            return before, after

        started = time.perf_counter()
        before, after = contextvars.copy_context().run(run)
        elapsed = time.perf_counter() - started
    finally:
        runtime.close()
    logs = list(session.logs)
    if session.dropped_logs:
        logs.append({"level": 2, "message": f"{session.dropped_logs} more lines not kept", "source": "host"})
    return PreviewResult(
        slug=candidate.slug, version=candidate.version, origin=candidate.origin, path=path,
        before_label=_before_label(plugin), before=before, after=after,
        diff=html_diff(before.html, after.html), calls=session.calls, logs=logs,
        faults=session.faults, writes=session.writes,
        policy=dict(POLICY), elapsed_ms=round(elapsed * 1000, 1))
