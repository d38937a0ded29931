"""The process-local view of plugins: which ones this process has loaded, and keeping that in step
with the database.

Every process (web worker, task worker, management command) owns one :class:`Registry`. The
``lifecycle`` service bumps a generation number in the database on every change; the registry
reads it at most once per ``SYNC_INTERVAL`` (at once after a change committed in this process) and
loads or unloads plugins to match. Loading (:mod:`gonext_plugins.loading`) goes through the
runtime's compiled-artifact cache, so a second process (or a restart) does not compile again.

The registry is wired in ``AppConfig.ready`` by :meth:`Registry.install`: it receives
``signals.generation_changed`` (a change committed in this process: sync at the next call), checks
once when each request starts (Django's ``request_started``), and installs its check as the hook
bus's before-dispatch step (skipped within a request that already checked), so neither
``lifecycle`` nor ``hooks`` imports it.

Other layers react to loads and unloads through listeners (the hook bridge connects a plugin's
receivers, the jobs bridge registers its jobs): ``registry.add_listener(on_load, on_unload)``.

A plugin in an upgrade's staged rollout (``lifecycle.rollout``) runs two versions here: the new one,
its active version, in the table every other layer reads, and the previous one, kept for the
requests outside the cohort (:meth:`Registry.previous`). Only listeners added with
``previous=True`` (the hook bridge, which picks one per request) see the previous one: its jobs are
not registered (the active version runs the jobs). When the rollout starts, the running version
moves to that role instead of being unloaded; a rollback moves it back; a promotion unloads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import DatabaseError

from . import compat, hooks, loading, signals
from .conf import settings
from .errors import BlobStorageUnavailable, PluginError
from .lifecycle import current_generation, manifest_of, record_fault
from .lifecycle.compat import version_reasons
from .lifecycle.preflight import effective, effective_hosts
from .lifecycle.settings import effective_values
from .loading import (  # re-exported: their home was here
    LoadedPlugin,
    _trap_debug_info,
    compile_limits,
    host_limits,
    plugin_limits,
)
from .models import CapabilityGrant, Plugin, PluginRollout, PluginState, PluginVersion
from .runtime import Runtime

__all__ = ["LoadedPlugin", "Registry", "_trap_debug_info", "compile_limits", "get", "host_limits",
           "plugin_limits", "registry"]

logger = logging.getLogger("gonext_plugins.registry")

# True while this context serves a request whose start already ran the sync check.
_request_checked: ContextVar[bool] = ContextVar("gonext_registry_request_checked", default=False)

Listener = Callable[[LoadedPlugin], None]
Desired = dict[str, tuple[PluginVersion, frozenset[str], tuple[str, ...], dict[str, Any]]]
_ServingVersion: ContextVar[LoadedPlugin | None] = ContextVar("gonext_registry_serving", default=None)


class Registry:
    """Loaded plugins of this process, synced from the database generation number."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: dict[str, LoadedPlugin] = {}
        self._previous: dict[str, LoadedPlugin] = {}  # upgrades in rollout: the version others run
        self._generation = -1
        self._next_check = 0.0
        self._stale = True  # a change committed in this process waits for the next sync
        self._swapping = False  # a sync is changing the loaded plugins (another thread may wait)
        self._listeners: list[tuple[Listener | None, Listener | None]] = []
        self._previous_listeners: list[tuple[Listener | None, Listener | None]] = []
        # Active plugins this site cannot run now (lifecycle.compat), skipped with one warning per
        # process, and the site they were judged on: when it changes they are judged again.
        self._incompatible: dict[str, list[compat.Reason]] = {}
        self._warned: set[tuple[str, tuple[compat.Reason, ...]]] = set()
        self._judged_on: tuple[Any, ...] = ()

    # --- runtime ---------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """This process's runtime (owned by :mod:`gonext_plugins.loading`)."""
        return loading.runtime()

    # --- wiring (AppConfig.ready) ------------------------------------------------------------

    def install(self) -> None:
        """React to committed lifecycle changes, check for changes once when a request starts, and
        before each hook dispatch outside requests (task workers, commands, consumers)."""
        signals.generation_changed.connect(self._on_generation_changed, weak=False,
                                           dispatch_uid="gonext_registry_generation")
        request_started.connect(self._on_request_started, weak=False,
                                dispatch_uid="gonext_registry_request_started")
        request_finished.connect(self._on_request_finished, weak=False,
                                 dispatch_uid="gonext_registry_request_finished")
        hooks.set_before_dispatch(self.before_dispatch)

    def _on_generation_changed(self, sender: Any, **kwargs: Any) -> None:
        self.invalidate()

    def _on_request_started(self, sender: Any, **kwargs: Any) -> None:
        self.maybe_sync()
        _request_checked.set(True)

    def _on_request_finished(self, sender: Any, **kwargs: Any) -> None:
        _request_checked.set(False)

    def before_dispatch(self) -> None:
        """The hook bus's step before each dispatch. Within a request the check ran when it started:
        every hook of the page sees the same plugins (no version swap between ``wp_head`` and
        ``the_content``) and a page with many hook calls pays for one check; a change this request
        committed itself still applies at once. Elsewhere each dispatch checks."""
        if self._swapping:  # another thread is swapping plugins: dispatch after it, not halfway
            with self._lock:
                pass
        if _request_checked.get() and not self._stale:
            return
        self.maybe_sync()

    # --- listeners -------------------------------------------------------------------------

    def add_listener(self, on_load: Listener | None = None, on_unload: Listener | None = None, *,
                     previous: bool = False) -> None:
        """Call ``on_load(loaded)`` after a plugin loads here and ``on_unload(loaded)`` before it
        goes; listeners added late are replayed for plugins already loaded. Adding the same pair
        again does nothing: ``AppConfig.ready`` runs again whenever ``INSTALLED_APPS`` is
        overridden (tests, ``modify_settings``), and a second pair would connect every plugin's hooks
        twice. ``previous=True``: the pair hears of the previous versions of upgrades in rollout
        instead (:meth:`previous`)."""
        with self._lock:
            pairs = self._previous_listeners if previous else self._listeners
            if (on_load, on_unload) in pairs:
                return
            pairs.append((on_load, on_unload))
            if on_load:
                for loaded in (self._previous if previous else self._loaded).values():
                    self._notify(on_load, loaded)

    def remove_listener(self, on_load: Listener | None = None, on_unload: Listener | None = None, *,
                        previous: bool = False) -> None:
        with self._lock:
            if previous:
                self._previous_listeners = [p for p in self._previous_listeners if p != (on_load, on_unload)]
            else:
                self._listeners = [pair for pair in self._listeners if pair != (on_load, on_unload)]

    def _notify_all(self, loaded: LoadedPlugin, *, load: bool, previous: bool = False) -> None:
        for on_load, on_unload in list(self._previous_listeners if previous else self._listeners):
            listener = on_load if load else on_unload
            if listener:
                self._notify(listener, loaded)

    def _notify(self, listener: Listener, loaded: LoadedPlugin) -> None:
        try:
            listener(loaded)
        except Exception:
            logger.exception("plugin listener failed for %s", loaded.slug)

    # --- queries ---------------------------------------------------------------------------

    def get(self, slug: str, *, sync: bool = True) -> LoadedPlugin | None:
        if sync:
            self.maybe_sync()
        return self._loaded.get(slug)

    def loaded(self, *, sync: bool = True) -> dict[str, LoadedPlugin]:
        if sync:
            self.maybe_sync()
        return dict(self._loaded)

    def previous(self, slug: str, *, sync: bool = True) -> LoadedPlugin | None:
        """The version the requests outside an upgrade's rollout cohort run (None: no such rollout)."""
        if sync:
            self.maybe_sync()
        return self._previous.get(slug)

    def version_of(self, slug: str) -> str:
        """The version of ``slug`` this context is running ("" when not loaded here): the previous
        one inside :meth:`serving` it, else the active one. Log lines are tagged with it."""
        serving = _ServingVersion.get()
        if serving is not None and serving.slug == slug:
            return serving.version
        loaded = self._loaded.get(slug)
        return loaded.version if loaded is not None else ""

    @staticmethod
    def serving(loaded: LoadedPlugin) -> Token[LoadedPlugin | None]:
        """Mark ``loaded`` as the version this context calls (until :meth:`done_serving`)."""
        return _ServingVersion.set(loaded)

    @staticmethod
    def done_serving(token: Token[LoadedPlugin | None]) -> None:
        _ServingVersion.reset(token)

    @property
    def generation(self) -> int:
        return self._generation

    def incompatible(self) -> dict[str, list[compat.Reason]]:
        """Active plugins this process skipped at its last sync because this site cannot run them."""
        return dict(self._incompatible)

    # --- syncing ---------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Make the next call re-read the database (after a change committed in this process)."""
        self._next_check = 0.0
        self._stale = True

    def maybe_sync(self) -> None:
        """Sync if ``SYNC_INTERVAL`` has passed since the last check. Cheap when it has not."""
        if time.monotonic() >= self._next_check:
            self.sync()

    def sync(self, *, force: bool = False) -> bool:
        """Bring loaded plugins in line with the database. Returns True when anything changed."""
        with self._lock:
            self._next_check = time.monotonic() + settings.SYNC_INTERVAL
            self._stale = False
            try:
                generation = current_generation()
            except DatabaseError:
                logger.warning("plugin sync skipped: database not reachable", exc_info=True)
                return False
            if generation == self._generation and not force and not self._site_changed():
                return False
            try:
                desired, previous = self._desired()
            except DatabaseError:  # gone between the two reads: keep what runs, retry next check
                logger.warning("plugin sync skipped: database not reachable", exc_info=True)
                return False
            self._swapping = True
            try:
                changed, complete = self._apply(desired, previous)
            finally:
                self._swapping = False
            # A plugin the blob store could not deliver is retried at the next sync, not only at the
            # next change: forget the generation so the next check applies it again.
            self._generation = generation if complete else -1
            return changed

    def _site_changed(self) -> bool:
        """Whether a skipped incompatible plugin may run now (a capability registered again...)."""
        return bool(self._incompatible) and compat.site_fingerprint() != self._judged_on

    def _compatible(self, plugin: Plugin, version: PluginVersion, site: compat.Site) -> bool:
        """Skip a version this site cannot run, with a warning once per process (not per request)."""
        reasons = version_reasons(plugin.slug, version, site)
        if not reasons:
            return True
        self._incompatible[plugin.slug] = reasons
        if (plugin.slug, tuple(reasons)) not in self._warned:
            self._warned.add((plugin.slug, tuple(reasons)))
            logger.warning("plugin %s %s is skipped: this site cannot run it: %s", plugin.slug,
                           version.version, "; ".join(reason.message for reason in reasons))
        return False

    def _desired(self) -> tuple[Desired, Desired]:
        """slug → (active PluginVersion, effective capabilities, allowed hosts, effective settings)
        from the database, by the rules of ``lifecycle.preflight`` (three queries for every plugin);
        and the same for the previous versions of upgrades in rollout (each with the capabilities
        its own manifest asks for, never the union of both versions')."""
        grants: dict[int, dict[str, list[str]]] = {}
        for plugin_id, capability, hosts in CapabilityGrant.objects.filter(
            plugin__state=PluginState.ACTIVE
        ).values_list("plugin_id", "capability", "hosts"):
            grants.setdefault(plugin_id, {})[capability] = hosts or []
        desired: Desired = {}
        previous: Desired = {}
        previous_versions = {rollout.plugin_id: rollout.previous_version for rollout in
                             PluginRollout.objects.filter(plugin__state=PluginState.ACTIVE,
                                                          previous_version__isnull=False)
                             .select_related("previous_version")}
        site = compat.this_site()
        self._incompatible, self._judged_on = {}, compat.site_fingerprint(site)
        for plugin in Plugin.objects.filter(state=PluginState.ACTIVE, active_version__isnull=False) \
                .select_related("active_version"):
            version = plugin.active_version
            assert version is not None  # the query asks for active_version__isnull=False
            if not self._compatible(plugin, version, site):
                continue
            granted = grants.get(plugin.pk, {})
            desired[plugin.slug] = _wanted(version, granted, plugin.settings)
            older = previous_versions.get(plugin.pk)
            if older is not None and self._compatible(plugin, older, site):
                previous[plugin.slug] = _wanted(older, granted, plugin.settings)
        return desired, previous

    def _apply(self, desired: Desired, previous: Desired | None = None) -> tuple[bool, bool]:
        """(anything changed, every desired plugin is loaded or failed for good)."""
        previous = previous or {}
        changed = False
        complete = True
        for slug in list(self._loaded):
            if slug not in desired:
                self._unload(slug)
                changed = True
        # Every version to load, compiled (or read from the artifact cache) at once, not one by one.
        # (Not the version a rolled-back upgrade returns to: it is loaded already, as the previous.)
        modules = loading.compile_versions({
            slug: version for slug, (version, *_rest) in desired.items()
            if self._version_pk(self._loaded, slug) != version.pk
            and self._version_pk(self._previous, slug) != version.pk})
        for slug, (version, caps, hosts, values) in desired.items():
            if self._promote_previous(slug, version, caps, hosts, values, previous):
                changed = True
                continue
            current = self._loaded.get(slug)
            if current is not None and current.version_pk != version.pk:
                # Another version: compiled and loaded before the running one goes, so a request
                # served meanwhile (other threads do not wait for this sync) still has a plugin.
                replaced = current
                current = None
            else:
                replaced = None
            if current is not None and current.settings != values:
                current.settings = values  # settings.get reads them from here: no re-wiring
                changed = True
            if current is not None:
                if current.capabilities != caps or current.hosts != hosts:
                    # Grants changed: listeners re-wire (a revoked hooks.subscribe drops the hooks).
                    self._notify_all(current, load=False)
                    current.capabilities = caps
                    current.hosts = hosts
                    current.runtime_plugin.capabilities = caps
                    self._notify_all(current, load=True)
                    changed = True
                continue
            try:
                module = modules.get(slug)  # None: compiled (or read from the cache) by load()
                if isinstance(module, Exception):
                    raise module
                loaded = loading.load(slug, version, caps, hosts, module)
            except BlobStorageUnavailable as exc:  # an outage, not the plugin's fault: no quarantine
                logger.warning("plugin %s not loaded yet (retried at the next sync): %s", slug, exc)
                complete = False
                continue
            except PluginError as exc:
                logger.error("plugin %s could not be loaded: %s", slug, exc)
                record_fault(slug, "load_error", exc.message, version=version.version)
                if replaced is not None:  # the version asked for cannot run: neither does the old one
                    self._unload(slug)
                    changed = True
                continue
            if replaced is not None:
                self._retire(slug, previous)
            self._adopt(loaded, values)
            changed = True
        return self._apply_previous(previous) or changed, complete

    @staticmethod
    def _version_pk(held: dict[str, LoadedPlugin], slug: str) -> int | None:
        loaded = held.get(slug)
        return None if loaded is None else loaded.version_pk

    def _promote_previous(self, slug: str, version: PluginVersion, caps: frozenset[str],
                          hosts: tuple[str, ...], values: dict[str, Any], previous: Desired) -> bool:
        """A rolled-back upgrade: the previous version, loaded already, becomes the active one again
        (no reload, no moment without it). False when that is not the case."""
        held = self._previous.get(slug)
        if held is None or held.version_pk != version.pk or slug in previous:
            return False
        self._unload_previous(slug, close=False)
        if slug in self._loaded:
            self._unload(slug)
        self._rewire(held, caps, hosts)
        self._adopt(held, values)
        return True

    def _retire(self, slug: str, previous: Desired) -> None:
        """The active version is replaced: unload it, or (an upgrade's rollout starting) keep it
        loaded as the previous version the requests outside the cohort run."""
        replaced = self._loaded[slug]
        wanted = previous.get(slug)
        if wanted is None or wanted[0].pk != replaced.version_pk or slug in self._previous:
            self._unload(slug)
            return
        self._unload(slug, close=False)
        _, caps, hosts, values = wanted
        self._rewire(replaced, caps, hosts)
        replaced.settings = values
        self._previous[slug] = replaced
        logger.info("plugin %s %s kept for the requests outside the rollout", slug, replaced.version)
        self._notify_all(replaced, load=True, previous=True)

    @staticmethod
    def _rewire(loaded: LoadedPlugin, caps: frozenset[str], hosts: tuple[str, ...]) -> None:
        loaded.capabilities = caps
        loaded.hosts = hosts
        loaded.runtime_plugin.capabilities = caps

    def _apply_previous(self, previous: Desired) -> bool:
        """Load or unload the previous versions of upgrades in rollout; True when anything changed."""
        changed = False
        for slug in list(self._previous):
            wanted = previous.get(slug)
            if wanted is None or wanted[0].pk != self._previous[slug].version_pk:
                self._unload_previous(slug)
                changed = True
        for slug, (version, caps, hosts, values) in previous.items():
            held = self._previous.get(slug)
            if held is not None:
                held.settings = values
                if held.capabilities != caps or held.hosts != hosts:
                    self._notify_all(held, load=False, previous=True)
                    self._rewire(held, caps, hosts)
                    self._notify_all(held, load=True, previous=True)
                    changed = True
                continue
            try:
                loaded = loading.load(slug, version, caps, hosts)
            except PluginError as exc:  # the outside requests then run nothing of it
                logger.error("plugin %s %s (previous version) could not be loaded: %s", slug,
                             version.version, exc)
                continue
            loaded.settings = values
            self._previous[slug] = loaded
            logger.info("plugin %s %s loaded for the requests outside the rollout", slug, version.version)
            self._notify_all(loaded, load=True, previous=True)
            changed = True
        return changed

    def _adopt(self, loaded: LoadedPlugin, values: dict[str, Any] | None = None) -> LoadedPlugin:
        """Put a loaded plugin in service: its settings, the table, the listeners (its hooks)."""
        loaded.settings = values or {}
        self._loaded[loaded.slug] = loaded
        logger.info("plugin %s %s loaded", loaded.slug, loaded.version)
        self._notify_all(loaded, load=True)
        return loaded

    def _unload(self, slug: str, *, close: bool = True) -> None:
        loaded = self._loaded.pop(slug)
        self._notify_all(loaded, load=False)
        if close:
            _close(loaded)

    def _unload_previous(self, slug: str, *, close: bool = True) -> None:
        loaded = self._previous.pop(slug)
        self._notify_all(loaded, load=False, previous=True)
        if close:
            _close(loaded)

    def reset(self) -> None:
        """Unload everything and forget the generation (tests, and process shutdown)."""
        with self._lock:
            for slug in list(self._loaded):
                self._unload(slug)
            for slug in list(self._previous):
                self._unload_previous(slug)
            self._generation = -1
            self._next_check = 0.0
            self._stale = True
            self._incompatible = {}

    def close(self) -> None:
        with self._lock:
            self.reset()
            loading.close_runtime()


def _wanted(version: PluginVersion, granted: dict[str, list[str]], stored: dict[str, Any]) \
        -> tuple[PluginVersion, frozenset[str], tuple[str, ...], dict[str, Any]]:
    """What ``version`` runs with: its effective capabilities, hosts and settings."""
    manifest = manifest_of(version)
    return (version, effective(granted, manifest), effective_hosts(granted.get("http.fetch", []), manifest),
            effective_values(manifest, stored))


def _close(loaded: LoadedPlugin) -> None:
    """Close a plugin's pool: in-flight calls finish on the old instances; new ones are refused."""
    threading.Thread(target=loaded.runtime_plugin.close, daemon=True,
                     name=f"gonext-close-{loaded.slug}").start()
    logger.info("plugin %s %s unloaded", loaded.slug, loaded.version)


registry = Registry()


def get(slug: str) -> LoadedPlugin | None:
    return registry.get(slug)

