"""``PluginHarness``: one plugin loaded in the real runtime, its host answered from memory.

Why a harness and not a site: an author's plugin repository should unit-test its hooks in CI with
``pip install gonext-plugins`` and pytest alone. So nothing here (or below) imports Django; the runtime,
its limits, its grant checks (-5, the denial logged) and its trap reports are the app's own, and the
host functions follow the app's payload rules (:mod:`gonext_plugins.host_rules`).
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmtime import Memory, Store

from .. import bundle as bundles
from .. import manifest as manifests
from ..devtools import builders
from ..diagnostics import traps
from ..errors import FixtureError, HookError, InvalidSettings, NotBuilt, PluginError, PluginTrap
from ..host_rules import KVQuotas, denial_hint, plugin_limits
from ..runtime import Limits, Runtime
from ..runtime import Plugin as RuntimePlugin
from ..runtime.dispatch import Dispatcher
from ..runtime.levels import NAMES
from ..runtime.metrics import stats_for
from ..runtime.runtime import resolve_dispatcher
from ._host import (
    ALWAYS_GRANTED,
    HostCall,
    HostState,
    HttpStub,
    MemoryKV,
    SiteFunction,
    build_registry,
    canned,
)

# A bundle the author runs is theirs: the site's caps apply when it is installed, not here.
_BUNDLE_CAPS = {"max_bundle_bytes": 256 << 20, "max_unpacked_bytes": 256 << 20,
                "max_compression_ratio": 1000}


def built_wasm(project_dir: str | Path) -> Path:
    """Where a project's build output is: the one place the harness asks the builders, so a change of
    output paths (dev vs release) is followed here."""
    return builders.output_path(project_dir)


@dataclass
class LogLine:
    level: int
    message: str
    source: str  # "guest" (the plugin's own) or "host" (a refusal, a denial, a warning)

    def as_list(self) -> list[Any]:
        return [self.level, self.message]


@dataclass
class CallResult:
    """How one hook or job call went. ``status`` is ``ok``, a ``HookError`` status (``error``,
    ``unknown_hook``, ``bad_payload``...), ``trap``, ``timeout`` or another error's code."""

    kind: str
    name: str
    status: str
    output: Any = None
    error: str | None = None
    trap: dict[str, Any] | None = None
    logs: list[LogLine] = field(default_factory=list)
    host_calls: list[HostCall] = field(default_factory=list)
    enqueued: list[dict[str, Any]] = field(default_factory=list)
    fuel: int = 0
    wall_ms: float = 0.0
    peak_memory_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def plugin_logs(self) -> list[list[Any]]:
        """The plugin's own lines as ``[level, message]`` (a fixture's ``expect.logs``)."""
        return [line.as_list() for line in self.logs if line.source == "guest"]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "status": self.status, "output": self.output,
                "error": self.error, "trap": self.trap,
                "logs": [{"level": NAMES.get(line.level, str(line.level)), "message": line.message,
                          "source": line.source} for line in self.logs],
                "hostCalls": [call.as_dict() for call in self.host_calls], "enqueued": self.enqueued,
                "fuel": self.fuel, "wallMs": round(self.wall_ms, 3),
                "peakMemoryBytes": self.peak_memory_bytes}


@dataclass
class _Probe:
    """What the measuring dispatcher saw on the last call: fuel and the linear memory's size."""

    fuel: int = 0
    memory_bytes: int = 0


def _measuring(base: type[Dispatcher], probe: _Probe) -> type[Dispatcher]:
    """The runtime's own dispatcher, noting after every call the memory size (wasm memory never
    shrinks, so the size after a call is its peak) and the fuel used."""

    class Measuring(base):  # type: ignore[valid-type,misc]  # a class chosen at run time
        def __init__(self, store: Store, exports: Any, memory: Memory, limits: Limits, ctx: Any) -> None:
            super().__init__(store, exports, memory, limits, ctx)
            self._probe_store, self._probe_memory = store, memory

        def call(self, export: str, name: bytes, payload: bytes) -> bytes | None:
            try:
                result: bytes | None = super().call(export, name, payload)
                return result
            finally:
                probe.fuel = self.fuel_used
                probe.memory_bytes = self._probe_memory.data_len(self._probe_store)

    return Measuring


@dataclass
class _Context:
    """What the host functions read of the calling plugin (``handle.context``)."""

    slug: str
    version: str
    manifest: manifests.Manifest
    hosts: tuple[str, ...]
    settings: dict[str, Any]


class PluginHarness:
    """A plugin in the real runtime with an in-memory host. Use as a context manager, or ``close()``.

    ``grants`` default to everything the manifest asks for (``log`` and ``self`` are always held);
    ``settings`` are validated against the manifest's schema with its defaults filled in; ``fuel``,
    ``memory_pages`` and ``timeout_ms`` override the manifest's limits.
    """

    def __init__(self, wasm: bytes, manifest: manifests.Manifest | Mapping[str, Any] | bytes | str, *,
                 grants: Iterable[str] | None = None, settings: Mapping[str, Any] | None = None,
                 kv: Mapping[str, Any] | None = None, http: Iterable[Mapping[str, Any]] = (),
                 functions: Mapping[str, Any] | None = None, hosts: Iterable[str] | None = None,
                 site_hooks: Iterable[tuple[str, str]] | None = None, fuel: int | None = None,
                 memory_pages: int | None = None, timeout_ms: int | None = None,
                 kv_quotas: KVQuotas | None = None, allow_private_hosts: bool = False,
                 wasm_path: str | Path | None = None) -> None:
        self.manifest = manifest if isinstance(manifest, manifests.Manifest) else manifests.validate(manifest)
        self.wasm = wasm
        self.wasm_path = Path(wasm_path) if wasm_path is not None else None
        self.limits = self._limits(fuel, memory_pages, timeout_ms)
        self._logs: list[LogLine] = []
        self.state = HostState(
            self.manifest, {}, tuple(self.manifest.allowed_hosts if hosts is None else hosts),
            tuple(site_hooks) if site_hooks is not None
            else tuple((hook.name, hook.kind) for hook in self.manifest.hooks),
            MemoryKV(kv_quotas), allow_private_hosts=allow_private_hosts,
            log_line=lambda level, message: self._logs.append(LogLine(level, message, "guest")))
        self._site: dict[str, tuple[str, SiteFunction]] = {}
        self._probe = _Probe()
        self._runtime = Runtime(limits=self.limits, log_sink=self._sink,
                                host_functions=build_registry(self.state, ()),
                                dispatcher=_measuring(resolve_dispatcher("fast"), self._probe))
        self._debug: traps.ModuleDebugInfo | None = None
        try:  # a bad option must not leave the runtime's ticker thread running
            self._plugin: RuntimePlugin = self._runtime.load(wasm, name=self.manifest.slug,
                                                             context=self._context())
            self._plugin.denial_hint = lambda capability: denial_hint(self.manifest, capability)
            self.set_grants(grants)
            self.set_settings(settings or {})
            self.state.kv.load(kv or {})
            self.set_http(http)
            for name, spec in (functions or {}).items():
                self._site[name] = canned(name, spec)
            self._refresh_functions()
        except BaseException:
            self._runtime.close()
            raise

    # --- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_project(cls, project_dir: str | Path, **options: Any) -> PluginHarness:
        """A built project directory: its ``manifest.json`` and its build output."""
        project = Path(project_dir)
        _, manifest = builders.read_manifest(project)
        wasm_path = built_wasm(project)
        if not wasm_path.is_file():
            raise NotBuilt(f"{project} has no build output at {wasm_path}; build it first with "
                           f"`manage.py plugin dev {project} --build-only`", plugin=manifest.slug)
        return cls(wasm_path.read_bytes(), manifest, wasm_path=wasm_path, **options)

    @classmethod
    def from_bundle(cls, data: bytes | str | Path, **options: Any) -> PluginHarness:
        """A ``.gnplugin`` (bytes or a path). Its layout, manifest and, when signed, its signature are
        checked (a bundle changed after signing is refused); whether the publisher is trusted is the
        site's question at install, not the harness's."""
        raw = Path(data).read_bytes() if isinstance(data, str | Path) else data
        checked = bundles.read(raw, key_lookup=lambda fingerprint: None, require_signature=False,
                               allow_private_hosts=True, **_BUNDLE_CAPS)
        return cls(checked.wasm, checked.manifest, **options)

    @classmethod
    def load(cls, target: str | Path, **options: Any) -> PluginHarness:
        """A project directory, a ``.gnplugin``, or a ``.wasm`` with ``manifest.json`` beside it."""
        path = Path(target)
        if path.is_dir():
            return cls.from_project(path, **options)
        if not path.is_file():
            raise FixtureError(f"{target} is neither a plugin directory nor a file")
        if zipfile.is_zipfile(path):
            return cls.from_bundle(path, **options)
        manifest_path = path.with_name("manifest.json")
        if not manifest_path.is_file():
            raise FixtureError(f"{target} is not a .gnplugin, and no manifest.json is beside it")
        return cls(path.read_bytes(), manifest_path.read_bytes(), wasm_path=path, **options)

    # --- configuration ----------------------------------------------------------------------------

    def _limits(self, fuel: int | None, memory_pages: int | None, timeout_ms: int | None) -> Limits:
        limits = plugin_limits(self.manifest, Limits(min_instances=1, max_instances=1))
        changes: dict[str, Any] = {}
        if fuel is not None:
            changes["fuel"] = fuel
        if memory_pages is not None:
            changes["memory_pages"] = memory_pages
        if timeout_ms is not None:
            changes["hard_timeout_ms"] = timeout_ms
            if limits.soft_timeout_ms is not None:
                changes["soft_timeout_ms"] = min(limits.soft_timeout_ms, timeout_ms)
        return limits.replace(**changes) if changes else limits

    def _context(self) -> _Context:
        return _Context(self.manifest.slug, self.manifest.version, self.manifest, self.state.hosts,
                        self.state.settings)

    def set_grants(self, grants: Iterable[str] | None) -> None:
        """Grant these capabilities (None: all the manifest asks for); one it does not ask for is an error."""
        asked = set(self.manifest.all_capabilities)
        chosen = set(asked if grants is None else grants)
        unknown = sorted(chosen - asked - ALWAYS_GRANTED)
        if unknown:
            raise FixtureError(f"grants: the manifest does not ask for {', '.join(unknown)}; "
                               f"it asks for {', '.join(sorted(asked)) or 'nothing'}",
                               plugin=self.manifest.slug)
        self._plugin.capabilities = frozenset(chosen | ALWAYS_GRANTED)

    @property
    def grants(self) -> frozenset[str]:
        return self._plugin.capabilities

    def set_settings(self, values: Mapping[str, Any]) -> None:
        """The plugin's settings: ``values`` over the manifest's defaults, checked by its schema."""
        effective = manifests.effective_settings(self.manifest, dict(values))
        unknown = sorted(set(values) - set(self.manifest.settings))
        problems = [(name, "is not a setting the manifest declares") for name in unknown]
        problems += manifests.settings_problems(self.manifest.settings, effective,
                                                self.manifest.required_settings)
        if problems:
            raise InvalidSettings("settings: " + "; ".join(f"{name}: {text}" for name, text in problems),
                                  problems=problems, plugin=self.manifest.slug)
        self.state.settings.clear()
        self.state.settings.update(effective)

    def set_http(self, stubs: Iterable[Mapping[str, Any]]) -> None:
        self.state.http = [HttpStub.parse(raw, index) for index, raw in enumerate(stubs)]

    def add_function(self, name: str, capability: str, func: SiteFunction) -> None:
        """Register a site function (``func(payload) -> result``) under ``capability``."""
        self._site[name] = (capability, func)
        self._refresh_functions()

    def _refresh_functions(self) -> None:
        fresh = build_registry(self.state, [(n, cap, f) for n, (cap, f) in self._site.items()])
        registry = self._runtime.host_functions
        for entry in list(registry):
            registry.unregister(entry.name)
        for entry in fresh:
            registry.register(entry.name, entry.capability, entry.func)

    @property
    def kv(self) -> MemoryKV:
        return self.state.kv

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.state.settings)

    # --- calls ------------------------------------------------------------------------------------

    def filter(self, name: str, value: Any, *args: Any) -> CallResult:
        """Run filter ``name``; ``output`` is the new value (the old one when the plugin left it)."""
        return self._call("filter", name, lambda: self._plugin.invoke_filter(name, value, *args))

    def action(self, name: str, *args: Any) -> CallResult:
        """Run action ``name``; ``output`` is the decoded body, or None."""
        return self._call("action", name, lambda: self._plugin.invoke_action(name, *args))

    def job(self, name: str, payload: Any = None, *, id: str | None = None) -> CallResult:
        """Run job ``name``; ``id`` is its idempotency key (a fresh one when omitted)."""
        return self._call("job", name, lambda: self._plugin.invoke_job(name, payload, id))

    def _sink(self, plugin: str, level: int, message: str, source: str) -> None:
        self._logs.append(LogLine(level, message, source))

    def _call(self, kind: str, name: str, run: Any) -> CallResult:
        self._logs = []
        self.state.calls, self.state.enqueued = [], []
        self._plugin.capabilities = self._plugin.capabilities  # each call logs its own first denial
        self._probe.fuel = self._probe.memory_bytes = 0
        stats = stats_for(self.manifest.slug)
        fuel_before = stats.fuel
        result = CallResult(kind, name, "ok")
        started = time.perf_counter()
        try:
            result.output = run()
        except HookError as exc:
            result.status, result.error = exc.status, exc.message
        except PluginTrap as exc:
            result.status, result.error = exc.code, exc.message
            result.trap = self.trap_report(exc)
        except PluginError as exc:
            result.status, result.error = exc.code, exc.message
        result.wall_ms = (time.perf_counter() - started) * 1000
        result.fuel = self._probe.fuel or max(0, stats.fuel - fuel_before)
        result.peak_memory_bytes = self._probe.memory_bytes
        result.logs, result.host_calls, result.enqueued = self._logs, self.state.calls, self.state.enqueued
        return result

    def trap_report(self, exc: PluginTrap) -> dict[str, Any]:
        """The trap's frames mapped to source lines through the module's source map (embedded, or the
        ``.map`` beside the build output), as the site's fault report shows them."""
        if self._debug is None:
            self._debug = traps.read_debug_info(self.wasm, self.wasm_path)
        report = traps.inspect(exc, debug=self._debug)
        return {**report.as_dict(), "text": report.text()}

    def close(self) -> None:
        self._runtime.close()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_json(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A fixture as a dict, from a path or a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    try:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"cannot read {source}: {exc.strerror}") from exc
    except ValueError as exc:
        raise FixtureError(f"{source} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError(f"{source} must hold a JSON object")
    return data
