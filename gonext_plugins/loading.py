"""Loading a plugin version in this process: blob → compiled module → shape checks → a running
:class:`LoadedPlugin`.

This module owns the process's one :class:`~gonext_plugins.runtime.Runtime` (engine, epoch ticker,
compiled-artifact cache) built from the site's settings. ``lifecycle`` compiles and shape-checks
through it before a transaction opens (``AppConfig.ready`` hands this module to
``lifecycle.set_loader``); the registry loads active versions through it. The pieces of the runtime
that live in layers above this one (the log sink, the JSON form of hook arguments) are handed in
by :func:`configure` from ``AppConfig.ready``, so nothing here imports them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from wasmtime import Module

from . import capabilities, untrusted_json
from .conf import settings
from .diagnostics import traps
from .errors import HookError, PluginError, PluginLoadError, PluginTrap
from .host_rules import denial_hint, plugin_limits
from .lifecycle import manifest_of, record_fault
from .manifest import Manifest, format_path
from .models import PluginVersion
from .runtime import Limits, Runtime
from .runtime import Plugin as RuntimePlugin
from .runtime.host import LogSink
from .runtime.limits import CompileLimits
from .runtime.loader import check_shape
from .storage import read_blob

logger = logging.getLogger("gonext_plugins.registry")


# --- the site's limits -----------------------------------------------------------------------------


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


# --- the process's runtime -------------------------------------------------------------------------

_lock = threading.RLock()
_runtime: Runtime | None = None
_log_sink: LogSink | None = None
_json_default: Callable[[Any], Any] | None = None


def configure(*, log_sink: LogSink | None, json_default: Callable[[Any], Any] | None) -> None:
    """Hand in the runtime's pieces from the layers above (``AppConfig.ready``): the log sink
    (``logs``) and the JSON form of hook arguments (``bridge``). Applies to the next runtime built."""
    global _log_sink, _json_default
    _log_sink, _json_default = log_sink, json_default


def runtime() -> Runtime:
    """This process's runtime, built from the current settings when there is none (or it closed)."""
    global _runtime
    with _lock:
        if _runtime is None or _runtime.closed:
            _runtime = Runtime(
                limits=host_limits(),
                log_sink=_log_sink,
                cache_dir=settings.cache_dir,
                host_functions=capabilities.host_functions,
                json_default=_json_default,
                compile_limits=compile_limits(),
            )
        return _runtime


def close_runtime() -> None:
    """Close the runtime (the next :func:`runtime` builds one from the settings of that moment)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.close()
            _runtime = None


def compile(wasm: bytes, slug: str) -> Module:
    """Validate and compile through the artifact cache; a module missing from it is compiled by
    a child process under the compile limits, which may take seconds. ``lifecycle`` calls this
    before it opens a transaction, so no database lock is held meanwhile."""
    return runtime().compile(wasm, slug)


def compile_stored(slug: str, blob_name: str, wasm_sha256: str) -> Module:
    """An installed version's module: from this machine's artifact cache by its sha256, the blob
    store (remote, maybe) read only on a miss, and the bytes read checked against the sha256."""
    return runtime().compile_stored(
        wasm_sha256, lambda: read_blob(blob_name, wasm_sha256, plugin=slug), slug)


def check_loadable(slug: str, module: Module, manifest: Manifest) -> None:
    """Shape-check a compiled version against its manifest before it may be activated."""
    limits = plugin_limits(manifest, runtime().limits)
    _, has_job = check_shape(module, slug, limits.memory_pages)
    if manifest.jobs and not has_job:
        raise PluginLoadError(
            f"the manifest declares jobs ({', '.join(job.name for job in manifest.jobs)}) but the "
            "module does not export gn_handle_job", plugin=slug)


# --- a loaded plugin -------------------------------------------------------------------------------


@dataclass
class LoadedPlugin:
    """One active plugin as this process runs it. Built complete: constructing it loads the module
    (``InitVar`` ``module``, compiled already, and ``runtime``), with the object itself as the
    runtime plugin's context, which host functions read (``slug``, ``hosts``)."""

    slug: str
    version: str
    version_pk: int
    wasm_sha256: str
    manifest: Manifest
    capabilities: frozenset[str]
    module: InitVar[Module]
    runtime: InitVar[Runtime]
    hosts: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)  # for listeners (hook receivers, ...)
    blob_name: str = ""  # where the wasm is stored (trap reports read its source map)
    # Its effective settings (``settings.get``), replaced by the registry when they change, so a
    # hook call reads them without a query.
    settings: dict[str, Any] = field(default_factory=dict)
    runtime_plugin: RuntimePlugin = field(init=False)

    def __post_init__(self, module: Module, runtime: Runtime) -> None:
        self.runtime_plugin = runtime.load(
            module, name=self.slug, limits=plugin_limits(self.manifest, runtime.limits),
            capabilities=self.capabilities, context=self,
            pure_hooks=frozenset((hook.kind, hook.name) for hook in self.manifest.hooks if hook.pure),
            result_bytes=settings.PURE_RESULT_BYTES,
        )
        self.runtime_plugin.denial_hint = self.denial_hint

    def __setattr__(self, name: str, value: Any) -> None:
        """New settings make the remembered results of pure hooks stale (``settings.get`` answers
        them): they go once the new values are in place, so no call can store an old answer after."""
        state = self.__dict__
        changed = name == "settings" and "runtime_plugin" in state and not _same_json(state.get(name), value)
        object.__setattr__(self, name, value)
        if changed:
            self.runtime_plugin.results.forget()

    def denial_hint(self, capability: str) -> str:
        """What would give this plugin ``capability``, for the one log line its first denied call
        writes (the rule: :func:`gonext_plugins.host_rules.denial_hint`)."""
        return denial_hint(self.manifest, capability)

    @property
    def name(self) -> str:
        return self.slug

    def invoke(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``invoke_filter`` / ``invoke_action`` / ``invoke_job`` and record a fault (trap,
        timeout, bad result, a declared hook the guest does not handle) for quarantine before
        re-raising it. Guest ``error`` statuses and the like are the plugin's answers, not faults."""
        method = getattr(self.runtime_plugin, f"invoke_{kind}")
        try:
            result = method(name, *args, **kwargs)
            _check_structure(result, self.slug)
            return result
        except PluginTrap as exc:
            self.note_fault("timeout" if exc.code == "timeout" else "trap", name, exc)
            raise
        except HookError as exc:
            if exc.status in ("bad_result", "unknown_hook"):  # the manifest declared what it answers
                self.note_fault(exc.status, name, exc)
            raise

    def note_fault(self, kind: str, hook: str, exc: PluginError) -> None:
        """Record a fault of this version (its log line, the faults list, quarantine); never raises."""
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


def _same_json(old: Any, new: Any) -> bool:
    """Whether a guest would read ``old`` and ``new`` as the same JSON: ``1``, ``1.0`` and ``True``
    are equal in Python but not to ``settings.get``'s reader. Unsure (no JSON form) means no."""
    try:
        return old is new or orjson.dumps(old) == orjson.dumps(new)
    except TypeError:
        return False


def _check_structure(result: Any, slug: str) -> None:
    """Refuse a guest result nested past ``untrusted_json.MAX_DEPTH`` or holding lone surrogates
    (``bad_result``), before anything walks it recursively (rendering JSON-LD or a template, storing
    a job's result): such a value would raise later, outside the guest call, failing the page instead
    of counting as this plugin's fault."""
    if isinstance(result, dict | list):
        found = untrusted_json.problems(result)
        if found:
            path, message = min(found, key=lambda problem: len(problem[0]))
            raise HookError(f"the guest's result {format_path(path)} {message}", status="bad_result",
                            plugin=slug)


# Parsed source maps of the modules that trapped lately: a plugin trapping on every request costs
# one parse, not one per trap (an 8.7 MB map took 5.3 s to parse).
_trap_debug_info = traps.DebugInfoCache(maxsize=16)


@lru_cache(maxsize=8)
def _module_bytes(blob_name: str, sha256: str, slug: str) -> bytes | None:
    """The wasm of a loaded version (read again only for trap reports, which are rare)."""
    if not blob_name:
        return None
    try:
        return read_blob(blob_name, sha256, plugin=slug)
    except PluginError:  # e.g. the blob of a dev build that was replaced meanwhile
        return None


# Versions compiled at once by :func:`compile_versions`: each miss is a child process using a core
# (and up to COMPILE_MEMORY_BYTES), so no more of them than cores, and never many.
_COMPILE_THREADS = min(8, os.cpu_count() or 1)


def compile_versions(versions: Mapping[str, PluginVersion]) -> dict[str, Module | Exception]:
    """slug → the version's module (:func:`compile_stored`), or the exception compiling it raised,
    several at once. A cold start compiles every module missing from the artifact cache in a child
    process, and this thread only waits for it (as it waits for wasmtime's deserialize, which
    releases the GIL): compiled one after another, a restart with an emptied cache took the sum of
    all compiles before its first page. The caller raises each exception where it would have been
    raised, so a plugin that fails is reported as if compiled alone."""

    def compiled(version: PluginVersion, slug: str) -> Module | Exception:
        try:
            return compile_stored(slug, version.blob_name, version.wasm_sha256)
        except Exception as exc:  # handed back: the caller raises it in its own handlers
            return exc

    runtime()  # built once here, not raced for by the threads
    if len(versions) < 2 or _COMPILE_THREADS < 2:
        return {slug: compiled(version, slug) for slug, version in versions.items()}
    with ThreadPoolExecutor(max_workers=min(_COMPILE_THREADS, len(versions)),
                            thread_name_prefix="gonext-compile") as pool:
        return dict(zip(versions, pool.map(compiled, versions.values(), versions), strict=True))


def load(slug: str, version: PluginVersion, caps: frozenset[str], hosts: tuple[str, ...],
         module: Module | None = None) -> LoadedPlugin:
    """A version's module from the artifact cache (its blob read, hash-checked and compiled on a
    miss: :func:`compile_stored`; or ``module``, compiled already by :func:`compile_versions`),
    shape-checked, its instance pool filled: a :class:`LoadedPlugin` ready to call."""
    if module is None:
        module = compile_stored(slug, version.blob_name, version.wasm_sha256)
    return LoadedPlugin(slug=slug, version=version.version, version_pk=version.pk,
                        wasm_sha256=version.wasm_sha256, manifest=manifest_of(version),
                        capabilities=caps, hosts=hosts, blob_name=version.blob_name,
                        module=module, runtime=runtime())
