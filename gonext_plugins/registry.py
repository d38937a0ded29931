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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
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
from .models import CapabilityGrant, Plugin, PluginState, PluginVersion
from .runtime import Runtime

__all__ = ["LoadedPlugin", "Registry", "_trap_debug_info", "compile_limits", "get", "host_limits",
           "plugin_limits", "registry"]

logger = logging.getLogger("gonext_plugins.registry")

# True while this context serves a request whose start already ran the sync check.
_request_checked: ContextVar[bool] = ContextVar("gonext_registry_request_checked", default=False)

Listener = Callable[[LoadedPlugin], None]
Desired = dict[str, tuple[PluginVersion, frozenset[str], tuple[str, ...], dict[str, Any]]]


class Registry:
    """Loaded plugins of this process, synced from the database generation number."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: dict[str, LoadedPlugin] = {}
        self._generation = -1
        self._next_check = 0.0
        self._stale = True  # a change committed in this process waits for the next sync
        self._swapping = False  # a sync is changing the loaded plugins (another thread may wait)
        self._listeners: list[tuple[Listener | None, Listener | None]] = []
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

    def add_listener(self, on_load: Listener | None = None, on_unload: Listener | None = None) -> None:
        """Call ``on_load(loaded)`` after a plugin loads here and ``on_unload(loaded)`` before it
        goes; listeners added late are replayed for plugins already loaded. Adding the same pair
        again does nothing: ``AppConfig.ready`` runs again whenever ``INSTALLED_APPS`` is
        overridden (tests, ``modify_settings``), and a second pair would connect every plugin's hooks
        twice."""
        with self._lock:
            if (on_load, on_unload) in self._listeners:
                return
            self._listeners.append((on_load, on_unload))
            if on_load:
                for loaded in self._loaded.values():
                    self._notify(on_load, loaded)

    def remove_listener(self, on_load: Listener | None = None, on_unload: Listener | None = None) -> None:
        with self._lock:
            self._listeners = [pair for pair in self._listeners if pair != (on_load, on_unload)]

    def _notify_all(self, loaded: LoadedPlugin, *, load: bool) -> None:
        for on_load, on_unload in list(self._listeners):
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
                desired = self._desired()
            except DatabaseError:  # gone between the two reads: keep what runs, retry next check
                logger.warning("plugin sync skipped: database not reachable", exc_info=True)
                return False
            self._swapping = True
            try:
                changed, complete = self._apply(desired)
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

    def _desired(self) -> Desired:
        """slug → (active PluginVersion, effective capabilities, allowed hosts, effective settings)
        from the database, by the rules of ``lifecycle.preflight`` (two queries for every plugin)."""
        grants: dict[int, dict[str, list[str]]] = {}
        for plugin_id, capability, hosts in CapabilityGrant.objects.filter(
            plugin__state=PluginState.ACTIVE
        ).values_list("plugin_id", "capability", "hosts"):
            grants.setdefault(plugin_id, {})[capability] = hosts or []
        desired: Desired = {}
        site = compat.this_site()
        self._incompatible, self._judged_on = {}, compat.site_fingerprint(site)
        for plugin in Plugin.objects.filter(state=PluginState.ACTIVE, active_version__isnull=False) \
                .select_related("active_version"):
            version = plugin.active_version
            assert version is not None  # the query asks for active_version__isnull=False
            if not self._compatible(plugin, version, site):
                continue
            manifest = manifest_of(version)
            granted = grants.get(plugin.pk, {})
            desired[plugin.slug] = (version, effective(granted, manifest),
                                    effective_hosts(granted.get("http.fetch", []), manifest),
                                    effective_values(manifest, plugin.settings))
        return desired

    def _apply(self, desired: Desired) -> tuple[bool, bool]:
        """(anything changed, every desired plugin is loaded or failed for good)."""
        changed = False
        complete = True
        for slug in list(self._loaded):
            if slug not in desired:
                self._unload(slug)
                changed = True
        # Every version to load, compiled (or read from the artifact cache) at once, not one by one.
        modules = loading.compile_versions({
            slug: version for slug, (version, *_rest) in desired.items()
            if slug not in self._loaded or self._loaded[slug].version_pk != version.pk})
        for slug, (version, caps, hosts, values) in desired.items():
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
                module = modules[slug]
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
                self._unload(slug)
            self._adopt(loaded, values)
            changed = True
        return changed, complete

    def _adopt(self, loaded: LoadedPlugin, values: dict[str, Any] | None = None) -> LoadedPlugin:
        """Put a loaded plugin in service: its settings, the table, the listeners (its hooks)."""
        loaded.settings = values or {}
        self._loaded[loaded.slug] = loaded
        logger.info("plugin %s %s loaded", loaded.slug, loaded.version)
        self._notify_all(loaded, load=True)
        return loaded

    def _unload(self, slug: str) -> None:
        loaded = self._loaded.pop(slug)
        self._notify_all(loaded, load=False)
        # In-flight calls finish on the old instances; the pool refuses new ones.
        threading.Thread(target=loaded.runtime_plugin.close, daemon=True,
                         name=f"gonext-close-{slug}").start()
        logger.info("plugin %s %s unloaded", slug, loaded.version)

    def reset(self) -> None:
        """Unload everything and forget the generation (tests, and process shutdown)."""
        with self._lock:
            for slug in list(self._loaded):
                self._unload(slug)
            self._generation = -1
            self._next_check = 0.0
            self._stale = True
            self._incompatible = {}

    def close(self) -> None:
        with self._lock:
            self.reset()
            loading.close_runtime()


registry = Registry()


def get(slug: str) -> LoadedPlugin | None:
    return registry.get(slug)

