"""The process-local view of plugins: which ones this process has loaded, and keeping that in step
with the database.

Every process (web worker, task worker, management command) owns one :class:`Registry`. The
``lifecycle`` service bumps a generation number in the database on every change; the registry
reads it at most once per ``SYNC_INTERVAL`` (at once after a change committed in this process) and
loads or unloads plugins to match. Loading goes through the runtime's compiled-artifact cache, so a
second process (or a restart) does not compile again.

Other layers react to loads and unloads through listeners (the hook bridge connects a plugin's
receivers, the jobs bridge registers its jobs): ``registry.add_listener(on_load, on_unload)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import DatabaseError
from wasmtime import Module

from .conf import settings
from .diagnostics import traps
from .errors import HookError, PluginError, PluginLoadError, PluginTrap
from .manifest import Manifest
from .runtime import Limits, Runtime
from .runtime import Plugin as RuntimePlugin
from .runtime.limits import CompileLimits
from .runtime.loader import check_shape

logger = logging.getLogger("gonext_plugins.registry")


@dataclass
class LoadedPlugin:
    """One active plugin as this process runs it."""

    slug: str
    version: str
    version_pk: int
    wasm_sha256: str
    manifest: Manifest
    runtime_plugin: RuntimePlugin
    capabilities: frozenset[str]
    hosts: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)  # for listeners (hook receivers, ...)
    blob_name: str = ""  # where the wasm is stored (trap reports read its source map)

    @property
    def name(self) -> str:
        return self.slug

    def invoke(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``invoke_filter`` / ``invoke_action`` / ``invoke_job`` and record a fault (trap,
        timeout, bad result) for quarantine before re-raising it. Guest ``error`` statuses and the
        like are the plugin's answers, not faults."""
        method = getattr(self.runtime_plugin, f"invoke_{kind}")
        try:
            return method(name, *args, **kwargs)
        except PluginTrap as exc:
            self._fault("timeout" if exc.code == "timeout" else "trap", name, exc)
            raise
        except HookError as exc:
            if exc.status == "bad_result":
                self._fault("bad_result", name, exc)
            raise

    def _fault(self, kind: str, hook: str, exc: PluginError) -> None:
        from .lifecycle import record_fault

        try:
            record_fault(self.slug, kind, exc.message, version=self.version, hook=hook,
                         guest_message=getattr(exc, "guest_message", None) or "",
                         report=self.trap_report(exc))
        except Exception:  # recording must never turn a plugin fault into a site error
            logger.exception("could not record a fault of plugin %s", self.slug)

    def trap_report(self, exc: PluginError) -> dict[str, Any] | None:
        """A trap's frames as source ``file:line`` through the module's embedded source map
        (``<no source map>`` without one), for the log line, the admin and the API."""
        if not isinstance(exc, PluginTrap):
            return None
        try:
            wasm = _module_bytes(self.blob_name, self.wasm_sha256, self.slug)
            debug = None if wasm is None else _trap_debug_info.get(
                self.wasm_sha256, wasm, max_map_bytes=settings.TRAP_SOURCE_MAP_MAX_BYTES)
            report = traps.inspect(exc, debug=debug)
            return {**report.as_dict(), "text": report.text()}
        except Exception:  # a report is a courtesy; the fault is recorded without one
            logger.warning("no trap report for plugin %s", self.slug, exc_info=True)
            return None


# Parsed source maps of the modules that trapped lately: a plugin trapping on every request costs
# one parse, not one per trap (an 8.7 MB map took 5.3 s to parse).
_trap_debug_info = traps.DebugInfoCache(maxsize=16)


@lru_cache(maxsize=8)
def _module_bytes(blob_name: str, sha256: str, slug: str) -> bytes | None:
    """The wasm of a loaded version (read again only for trap reports, which are rare)."""
    from .storage import read_blob

    if not blob_name:
        return None
    try:
        return read_blob(blob_name, sha256, plugin=slug)
    except PluginError:  # e.g. the blob of a dev build that was replaced meanwhile
        return None


Listener = Callable[[LoadedPlugin], None]


def host_limits() -> Limits:
    """The site's caps as runtime ``Limits``."""
    return Limits(
        memory_pages=settings.MEMORY_PAGES,
        fuel=settings.FUEL,
        soft_timeout_ms=min(settings.SOFT_TIMEOUT_MS, settings.HARD_TIMEOUT_MS),
        hard_timeout_ms=settings.HARD_TIMEOUT_MS,
        min_instances=settings.MIN_INSTANCES,
        max_instances=settings.MAX_INSTANCES,
        max_host_calls=settings.MAX_HOST_CALLS,
        max_input_bytes=settings.MAX_INPUT_BYTES,
        max_output_bytes=settings.MAX_OUTPUT_BYTES,
        max_log_bytes=settings.LOG_MAX_MESSAGE_BYTES,
    )


def compile_limits() -> CompileLimits:
    """The site's compile caps as runtime ``CompileLimits``."""
    return CompileLimits(
        max_module_bytes=settings.MAX_MODULE_BYTES,
        max_functions=settings.MAX_FUNCTIONS,
        cpu_seconds=settings.COMPILE_CPU_SECONDS,
        memory_bytes=settings.COMPILE_MEMORY_BYTES,
    )


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


class Registry:
    """Loaded plugins of this process, synced from the database generation number."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runtime: Runtime | None = None
        self._loaded: dict[str, LoadedPlugin] = {}
        self._generation = -1
        self._next_check = 0.0
        self._listeners: list[tuple[Listener | None, Listener | None]] = []

    # --- runtime ---------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._runtime.closed:
                from . import bridge, capabilities, logs

                self._runtime = Runtime(
                    limits=host_limits(),
                    log_sink=logs.runtime_log_sink,
                    cache_dir=settings.cache_dir,
                    host_functions=capabilities.host_functions,
                    json_default=bridge.json_default,
                    compile_limits=compile_limits(),
                )
            return self._runtime

    # --- listeners -------------------------------------------------------------------------

    def add_listener(self, on_load: Listener | None = None, on_unload: Listener | None = None) -> None:
        """Call ``on_load(loaded)`` after a plugin loads here and ``on_unload(loaded)`` before it
        goes; listeners added late are replayed for plugins already loaded."""
        with self._lock:
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

    # --- syncing ---------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Make the next call re-read the database (after a change committed in this process)."""
        self._next_check = 0.0

    def maybe_sync(self) -> None:
        """Sync if ``SYNC_INTERVAL`` has passed since the last check. Cheap when it has not."""
        if time.monotonic() >= self._next_check:
            self.sync()

    def sync(self, *, force: bool = False) -> bool:
        """Bring loaded plugins in line with the database. Returns True when anything changed."""
        from .lifecycle import current_generation

        with self._lock:
            self._next_check = time.monotonic() + settings.SYNC_INTERVAL
            try:
                generation = current_generation()
            except DatabaseError:
                logger.warning("plugin sync skipped: database not reachable", exc_info=True)
                return False
            if generation == self._generation and not force:
                return False
            changed = self._apply(self._desired())
            self._generation = generation
            return changed

    def _desired(self) -> dict[str, tuple[Any, frozenset[str], tuple[str, ...]]]:
        """slug → (active PluginVersion, effective capabilities, allowed hosts) from the database."""
        from . import capabilities
        from .lifecycle import manifest_of
        from .models import CapabilityGrant, Plugin, PluginState

        grants: dict[int, dict[str, list[str]]] = {}
        for plugin_id, capability, hosts in CapabilityGrant.objects.filter(
            plugin__state=PluginState.ACTIVE
        ).values_list("plugin_id", "capability", "hosts"):
            grants.setdefault(plugin_id, {})[capability] = hosts or []
        desired = {}
        for plugin in Plugin.objects.filter(state=PluginState.ACTIVE, active_version__isnull=False) \
                .select_related("active_version"):
            version = plugin.active_version
            manifest = manifest_of(version)
            granted = grants.get(plugin.pk, {})
            caps = frozenset(set(granted) & set(manifest.all_capabilities)) | capabilities.ALWAYS_GRANTED
            hosts = tuple(sorted(set(granted.get("http.fetch", [])) & set(manifest.allowed_hosts)))
            desired[plugin.slug] = (version, caps, hosts)
        return desired

    def _apply(self, desired: dict[str, tuple[Any, frozenset[str], tuple[str, ...]]]) -> bool:
        changed = False
        for slug in list(self._loaded):
            if slug not in desired or desired[slug][0].pk != self._loaded[slug].version_pk:
                self._unload(slug)
                changed = True
        for slug, (version, caps, hosts) in desired.items():
            current = self._loaded.get(slug)
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
                self._load(slug, version, caps, hosts)
                changed = True
            except PluginError as exc:
                logger.error("plugin %s could not be loaded: %s", slug, exc)
                from .lifecycle import record_fault

                record_fault(slug, "load_error", exc.message, version=version.version)
        return changed

    def _load(self, slug: str, version: Any, caps: frozenset[str], hosts: tuple[str, ...]) -> LoadedPlugin:
        from .lifecycle import manifest_of
        from .storage import read_blob

        manifest = manifest_of(version)
        wasm = read_blob(version.blob_name, version.wasm_sha256, plugin=slug)
        runtime = self.runtime
        loaded = LoadedPlugin(slug=slug, version=version.version, version_pk=version.pk,
                              wasm_sha256=version.wasm_sha256, manifest=manifest,
                              runtime_plugin=None,  # type: ignore[arg-type]
                              capabilities=caps, hosts=hosts, blob_name=version.blob_name)
        loaded.runtime_plugin = runtime.load(
            wasm, name=slug, limits=plugin_limits(manifest, runtime.limits), capabilities=caps, context=loaded
        )
        self._loaded[slug] = loaded
        logger.info("plugin %s %s loaded", slug, version.version)
        self._notify_all(loaded, load=True)
        return loaded

    def _unload(self, slug: str) -> None:
        loaded = self._loaded.pop(slug)
        self._notify_all(loaded, load=False)
        # In-flight calls finish on the old instances; the pool refuses new ones.
        threading.Thread(target=loaded.runtime_plugin.close, daemon=True,
                         name=f"gonext-close-{slug}").start()
        logger.info("plugin %s %s unloaded", slug, loaded.version)

    def compile(self, wasm: bytes, slug: str) -> Module:
        """Validate and compile through the artifact cache; a module missing from it is compiled by
        a child process under the compile limits, which may take seconds. ``lifecycle`` calls this
        before it opens a transaction, so no database lock is held meanwhile."""
        return self.runtime.compile(wasm, slug)

    def check_loadable(self, slug: str, module: Module, manifest: Manifest) -> None:
        """Shape-check a compiled version against its manifest before it may be activated."""
        limits = plugin_limits(manifest, self.runtime.limits)
        _, has_job = check_shape(module, slug, limits.memory_pages)
        if manifest.jobs and not has_job:
            raise PluginLoadError(
                f"the manifest declares jobs ({', '.join(job.name for job in manifest.jobs)}) but the "
                "module does not export gn_handle_job", plugin=slug)

    def reset(self) -> None:
        """Unload everything and forget the generation (tests, and process shutdown)."""
        with self._lock:
            for slug in list(self._loaded):
                self._unload(slug)
            self._generation = -1
            self._next_check = 0.0

    def close(self) -> None:
        with self._lock:
            self.reset()
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None


registry = Registry()


def get(slug: str) -> LoadedPlugin | None:
    return registry.get(slug)

