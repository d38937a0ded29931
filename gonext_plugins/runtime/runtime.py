"""``Runtime`` (engine, ticker, loading) and ``Plugin`` (one loaded module and its pool).

One wasmtime ``Engine`` per runtime, with fuel and epoch interruption on. A native timer
(:mod:`.epoch_timer`, Linux/glibc) advances the epoch for hard deadlines without the GIL, which lets
the fast dispatcher keep the GIL through short guest calls (``gil_policy``); elsewhere the ticker
thread advances it. The ticker thread, one per runtime, also watches in-flight calls for the soft
deadline and evicts idle instances; wasmtime-py has no epoch callback, so the soft deadline is ours
to watch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Literal

import orjson
from wasmtime import Engine, Module

from gonext_plugins.errors import (
    HookError,
    InvalidPayload,
    PayloadTooLarge,
    PluginClosed,
    PluginError,
    PluginLoadError,
    PluginTimeout,
    PluginTrap,
)
from gonext_plugins.runtime.compiler import new_engine
from gonext_plugins.runtime.dispatch import HOOK_EXPORT, JOB_EXPORT, Dispatcher
from gonext_plugins.runtime.dispatch_slow import SlowDispatcher
from gonext_plugins.runtime.epoch_timer import EpochTimer
from gonext_plugins.runtime.gil import GIL_POLICIES, GilPolicy, GilPolicyName
from gonext_plugins.runtime.host import HostContext, HostFunctions, ImportSpec, LogSink, default_log_sink
from gonext_plugins.runtime.instance import PluginInstance, instantiate
from gonext_plugins.runtime.levels import WARNING
from gonext_plugins.runtime.limits import CompileLimits, Limits
from gonext_plugins.runtime.loader import (
    ModuleCache,
    check_compile_caps,
    check_shape,
    compile_module,
    to_wasm,
    validate,
)
from gonext_plugins.runtime.metrics import SOFT_TIMEOUTS_TOTAL, PluginMetrics
from gonext_plugins.runtime.pool import InstancePool
from gonext_plugins.runtime.results import MISSING, PureResults

logger = logging.getLogger("gonext_plugins.runtime")
_clock = time.perf_counter  # a call's latency clock (the ticker compares soft deadlines against it)

DEFAULT_TICK_MS = 5
IDLE_SCAN_SECONDS = 1.0
SCAN_TICK_MS = 50
"""The Python ticker's period when a native timer advances the epoch: it then only looks for calls
past their soft timeout (250 ms by default; the warning comes at most this late) and idle instances.
Why not the epoch's 5 ms: each wake takes the GIL from the thread running the site, 200 hand-offs a
second for nothing."""

def resolve_dispatcher(kind: str | type[Dispatcher]) -> type[Dispatcher]:
    """``"slow"``, ``"fast"`` (falls back to slow when ``dispatch_fast`` cannot load) or a class."""
    if not isinstance(kind, str):
        return kind
    if kind == "slow":
        return SlowDispatcher
    if kind == "fast":
        try:
            module = importlib.import_module("gonext_plugins.runtime.dispatch_fast")
        except ImportError:
            logger.debug("dispatch_fast not importable; using SlowDispatcher")
            return SlowDispatcher
        fast: type[Dispatcher] = module.FastDispatcher  # imported by name: cffi is optional
        return fast
    raise ValueError(f"dispatcher must be 'fast' or 'slow', got {kind!r}")


class _Ticker(threading.Thread):
    """Scans calls and pools every tick, and advances the engine's epoch when ``engine`` is given
    (no native timer does it). Holds no ref to the Runtime."""

    def __init__(self, engine: Engine | None, tick_s: float, inflight: dict[int, HostContext],
                 plugins: weakref.WeakSet[Plugin]) -> None:
        super().__init__(name="gonext-plugins-epoch", daemon=True)
        self._engine = engine
        self._tick_s = tick_s
        self._inflight = inflight
        self._plugins = plugins
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def run(self) -> None:
        next_idle_scan = time.monotonic() + IDLE_SCAN_SECONDS
        engine = self._engine
        while not self._stop_event.wait(self._tick_s):
            if engine is not None:
                engine.increment_epoch()
            now = time.monotonic()
            if self._inflight:
                self._scan_calls(_clock())  # the clock _guarded stamps calls with
            if now >= next_idle_scan:
                next_idle_scan = now + IDLE_SCAN_SECONDS
                for plugin in list(self._plugins):
                    with contextlib.suppress(Exception):
                        plugin._pool.evict_idle(now)

    def _scan_calls(self, now: float) -> None:
        for ctx in list(self._inflight.values()):
            if now < ctx.soft_at:
                continue
            ctx.soft_at = math.inf  # warn once per call
            limit = ctx.limits.soft_timeout_ms
            ctx.log(WARNING, f"call to {ctx.call_hook} still running after "
                             f"{(now - ctx.call_started) * 1000:.0f} ms (soft_timeout_ms={limit})")
            with contextlib.suppress(Exception):
                SOFT_TIMEOUTS_TOTAL.labels(ctx.name).inc()


class Runtime:
    """Loads plugins and owns what they share: the engine, the epoch ticker, the cache, the sink."""

    def __init__(self, limits: Limits | None = None, log_sink: LogSink | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 host_functions: HostFunctions | None = None,
                 dispatcher: Literal["fast", "slow"] | type[Dispatcher] = "fast",
                 epoch_tick_ms: int = DEFAULT_TICK_MS,
                 json_default: Callable[[Any], Any] | None = None,
                 compile_limits: CompileLimits | None = None,
                 gil_policy: GilPolicyName = "adaptive") -> None:
        """``json_default(obj)`` gives objects orjson cannot encode a JSON form (as orjson's
        ``default``): the Django layer turns models into dicts there, inside orjson's C encoder,
        instead of walking every argument in Python before each call.

        ``compile_limits`` caps every module's size and function count; with a ``cache_dir``, a
        module missing from the cache is compiled by a child process under its CPU and memory
        limits. Without one (tests, one-off tools) compilation runs in this process.

        ``gil_policy="adaptive"`` lets the fast dispatcher keep the GIL through the guest calls of
        a plugin whose calls are short (:mod:`.gil`); ``"release"`` always releases it. Adaptive
        needs the native epoch ticker: without one (or with the slow dispatcher) the effective
        policy, :attr:`gil_policy`, is ``"release"``."""
        if epoch_tick_ms <= 0:
            raise ValueError("epoch_tick_ms must be positive")
        if gil_policy not in GIL_POLICIES:
            raise ValueError(f"gil_policy must be one of {GIL_POLICIES}, got {gil_policy!r}")
        self.json_default = json_default
        self.limits = limits or Limits()
        self.log_sink: LogSink = log_sink or default_log_sink
        self.host_functions = host_functions if host_functions is not None else HostFunctions()
        self.dispatcher_class = resolve_dispatcher(dispatcher)
        self.epoch_tick_ms = epoch_tick_ms
        self.compile_limits = compile_limits or CompileLimits()
        self.engine, settings = new_engine()
        self.cache = (ModuleCache(cache_dir, self.engine, settings, self.compile_limits)
                      if cache_dir is not None else None)
        self._plugins: weakref.WeakSet[Plugin] = weakref.WeakSet()
        self._inflight: dict[int, HostContext] = {}
        self._closed = False
        self._epoch_timer = EpochTimer.start(self.engine, epoch_tick_ms)
        adaptive = (gil_policy == "adaptive" and self._epoch_timer is not None
                    and getattr(self.dispatcher_class, "keeps_gil_when_short", False))
        self.gil_policy: GilPolicyName = "adaptive" if adaptive else "release"
        # Without a native timer this thread advances the epoch, at the epoch's pace; with one it
        # only scans (SCAN_TICK_MS).
        native = self._epoch_timer is not None
        self._ticker = _Ticker(None if native else self.engine,
                               (max(epoch_tick_ms, SCAN_TICK_MS) if native else epoch_tick_ms) / 1000,
                               self._inflight, self._plugins)
        self._ticker.start()
        # The timer ticks on its own engine handle, so no order against the engine's release is
        # needed; stopping it here only ends the ticks of a runtime nobody closed.
        self._finalizer = weakref.finalize(self, _stop_tickers, self._ticker, self._epoch_timer)
        _runtimes.add(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child no thread of the parent runs, and no native timer (``epoch_timer``):
        a Python ticker that advances the epoch takes over, and the plugins stop keeping the GIL in
        guest calls (the ticker needs it to end one). Without this a server that loads plugins
        before it forks its workers (gunicorn ``--preload``) would have no hard deadline in them."""
        if self._closed:
            return
        self._epoch_timer = None
        self.gil_policy = "release"
        for plugin in list(self._plugins):
            if plugin._gil is not None:
                plugin._gil.forbid()
        self._ticker = _Ticker(self.engine, self.epoch_tick_ms / 1000, self._inflight, self._plugins)
        self._ticker.start()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop_tickers, self._ticker, None)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def native_epoch(self) -> bool:
        """Whether a native timer (not a Python thread) advances the epoch."""
        return self._epoch_timer is not None and self._epoch_timer.running

    def compile(self, source: bytes | str, name: str = "plugin") -> Module:
        """Bytes or WAT → validated, compiled module (through the cache when there is one).

        A first compile may take seconds: call this before opening a database transaction."""
        wasm = to_wasm(source, name)
        check_compile_caps(wasm, name, self.compile_limits)
        if self.cache is not None:
            return self.cache.load(wasm, name)
        validate(self.engine, wasm, name)
        return compile_module(self.engine, wasm, name)

    def compile_stored(self, wasm_sha256: str, fetch: Callable[[], bytes], name: str = "plugin") -> Module:
        """A module stored elsewhere (a blob store), known by its sha256 (hex): with a cache, a hit
        never calls ``fetch``; otherwise the fetched bytes must hash to ``wasm_sha256``."""

        def fetched() -> bytes:
            wasm = fetch()
            check_compile_caps(wasm, name, self.compile_limits)
            return wasm

        if self.cache is not None:
            return self.cache.load_stored(wasm_sha256, fetched, name)
        wasm = fetched()
        if hashlib.sha256(wasm).hexdigest() != wasm_sha256:
            raise PluginLoadError("the module's bytes do not match their recorded sha256", plugin=name)
        validate(self.engine, wasm, name)
        return compile_module(self.engine, wasm, name)

    def load(self, source: bytes | str | Module, name: str = "plugin", limits: Limits | None = None,
             capabilities: frozenset[str] | set[str] = frozenset(), context: Any = None, *,
             pure_hooks: frozenset[tuple[str, str]] = frozenset(), result_bytes: int = 0) -> Plugin:
        """Check, compile and instantiate a plugin; every problem is a ``PluginLoadError``.
        ``source`` may be a module compiled already (:meth:`compile_stored`).

        ``limits`` can only lower the runtime's (see :meth:`Limits.capped_by`). ``pure_hooks``:
        the ``(kind, hook)`` pairs whose results may be remembered (:mod:`.results`), in up to
        ``result_bytes`` (0: none are).
        """
        if self._closed:
            raise PluginClosed("runtime is closed", plugin=name)
        effective = limits.capped_by(self.limits) if limits is not None else self.limits
        module = source if isinstance(source, Module) else self.compile(source, name)
        imports, has_job = check_shape(module, name, effective.memory_pages)
        plugin = Plugin(self, name, module, imports, has_job, effective, frozenset(capabilities), context,
                        pure_hooks=pure_hooks if result_bytes > 0 else frozenset(),
                        result_bytes=result_bytes)
        plugin._pool.fill()
        self._plugins.add(plugin)
        return plugin

    def deadline_ticks(self, limits: Limits) -> int:
        """Epoch ticks for ``hard_timeout_ms``: traps between hard and hard + one tick."""
        return math.ceil(limits.hard_timeout_ms / self.epoch_tick_ms) + 1

    def close(self, timeout: float | None = None) -> None:
        """Close every plugin (letting in-flight calls finish), then stop the tickers. If a call is
        still running when ``timeout`` ends, the native timer keeps ticking so that its hard
        deadline still ends it (the finalizer stops the timer when the runtime is collected)."""
        self._closed = True
        finished = [plugin.close(timeout) for plugin in list(self._plugins)]
        self._ticker.stop()
        if self._epoch_timer is not None and all(finished):
            self._epoch_timer.stop()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runtime in list(_runtimes):
        runtime._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _stop_tickers(ticker: _Ticker, epoch_timer: EpochTimer | None) -> None:
    """A runtime's finalizer (it must not refer to the runtime itself)."""
    ticker.stop()
    if epoch_timer is not None:
        epoch_timer.stop()


CallObserver = Callable[[str, str, float, int, int], None]


def _generic_denial_hint(capability: str) -> str:
    return f'the manifest must ask for "{capability}" and an admin must grant it'


class Plugin:
    """One loaded plugin: the hook/job API over a pool of instances.

    ``capabilities`` may be reassigned at any time; host calls check it on every call.
    """

    def __init__(self, runtime: Runtime, name: str, module: Module, imports: list[ImportSpec], has_job: bool,
                 limits: Limits, capabilities: frozenset[str], context: Any, *,
                 pure_hooks: frozenset[tuple[str, str]] = frozenset(), result_bytes: int = 0) -> None:
        self.name = name
        self.limits = limits
        self.context = context
        self.has_job = has_job
        self._capabilities = frozenset(capabilities)
        self._denied: set[str] = set()
        self._pure_hooks = frozenset(pure_hooks)
        self.results = PureResults(result_bytes)
        """Remembered bodies of its ``pure_hooks`` (:mod:`.results`)."""
        self.denial_hint: Callable[[str], str] = _generic_denial_hint
        """What the log line of a denied call says would ask for the capability; the layer that
        knows the manifest replaces it (``loading.LoadedPlugin``)."""
        self._runtime = runtime
        self._module = module
        self._imports = imports
        self._metrics = PluginMetrics(name)
        self._soft_s = None if limits.soft_timeout_ms is None else limits.soft_timeout_ms / 1000
        self._inflight = runtime._inflight
        self._deadline_ticks = runtime.deadline_ticks(limits)
        self._gil = GilPolicy() if runtime.gil_policy == "adaptive" else None
        self._pool = InstancePool(name, self._new_instance, limits, self._metrics)
        self.call_observer: CallObserver | None = None
        """``observer(kind, hook, seconds, fuel, memory_bytes)`` after each guest call, for a caller
        that reports calls one by one (a preview); None, the usual case, costs one attribute read."""

    # --- public API ---------------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    @capabilities.setter
    def capabilities(self, value: frozenset[str] | set[str]) -> None:
        self._capabilities = frozenset(value)
        self._denied = set()  # the grants changed: the next denial is news again
        self.results.forget()  # and a pure host function may answer otherwise now

    def first_denial(self, capability: str) -> str | None:
        """The hint for the log line of the first call denied for ``capability`` since this plugin
        was loaded or its grants last changed; None for every later one (a plugin probing an
        optional capability on every page view must not write a warning on every page view)."""
        denied = self._denied
        if capability in denied:
            return None
        denied.add(capability)  # a race between two instances logs at most one line more
        return self.denial_hint(capability)

    @property
    def runtime(self) -> Runtime:
        """The runtime that loaded this plugin (its ``json_default`` shapes :meth:`encode_args`)."""
        return self._runtime

    @property
    def pool(self) -> InstancePool:
        return self._pool

    @property
    def gil_policy(self) -> GilPolicy | None:
        """The adaptive GIL state its instances share; None when the runtime always releases."""
        return self._gil

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def encode_args(self, args: tuple[Any, ...]) -> orjson.Fragment:
        """The JSON of a hook's arguments, for ``encoded_args=`` of :meth:`invoke_filter` and
        :meth:`invoke_action`: a hook run that calls many plugins encodes its arguments (models and
        all) once, not once per plugin. ``InvalidPayload`` when one has no JSON form."""
        return orjson.Fragment(self._dumps(args))

    def invoke_filter(self, hook: str, value: Any, *args: Any,
                      encoded_args: orjson.Fragment | None = None) -> Any:
        """Run a filter; returns the new value (unchanged when the guest returns no body).
        ``encoded_args`` (from :meth:`encode_args`) stands for ``args`` when given."""
        payload = self._encode({"kind": "filter", "hook": hook, "value": value,
                                "args": args if encoded_args is None else encoded_args})
        if self._pure_hooks and ("filter", hook) in self._pure_hooks:
            body = self._pure("filter", hook, payload)
        else:
            body = self._guarded("filter", HOOK_EXPORT, hook, payload)
        if body is None:
            return value
        decoded = self._decode(body)
        if not isinstance(decoded, dict) or "value" not in decoded:
            raise HookError('a filter body must be {"value": ...}', status="bad_result", plugin=self.name)
        return decoded["value"]

    def invoke_action(self, hook: str, *args: Any, encoded_args: orjson.Fragment | None = None) -> Any:
        """Run an action; returns the decoded JSON body, or None. ``encoded_args`` (from
        :meth:`encode_args`) stands for ``args`` when given."""
        payload = self._encode({"kind": "action", "hook": hook,
                                "args": args if encoded_args is None else encoded_args})
        if self._pure_hooks and ("action", hook) in self._pure_hooks:
            body = self._pure("action", hook, payload)
        else:
            body = self._guarded("action", HOOK_EXPORT, hook, payload)
        return None if body is None else self._decode(body)

    def invoke_job(self, job: str, payload: Any = None, task_id: str | None = None) -> Any:
        """Run a background job; ``task_id`` is the idempotency key (a fresh UUID when omitted)."""
        if not self.has_job:
            raise HookError(f"the module does not export {JOB_EXPORT}, so it runs no jobs",
                            status="unknown_hook", plugin=self.name)
        task_id = task_id or uuid.uuid4().hex
        data = self._encode({"kind": "job", "job": job, "id": task_id, "payload": payload})
        body = self._guarded("job", JOB_EXPORT, job, data)
        return None if body is None else self._decode(body)

    def call(self, export: str, *args: int) -> Any:
        """Call any exported function with integer arguments, under the plugin's limits."""
        return self._guarded("raw", export, export, b"", args)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new calls, let in-flight ones finish; False if ``timeout`` ran out first. The
        remembered results go too (``_pure`` already answers nothing from them once it is closed)."""
        finished = self._pool.close(timeout)
        self.results.forget()
        return finished

    def __repr__(self) -> str:
        return f"<Plugin {self.name!r} size={self._pool.size} in_use={self._pool.in_use}>"

    # --- internals ----------------------------------------------------------------------------

    def _new_instance(self) -> PluginInstance:
        runtime = self._runtime
        ctx = HostContext(self.name, self, self.limits, runtime.log_sink, runtime.host_functions)
        ctx.deadline_ticks = self._deadline_ticks
        ctx.gil = self._gil
        return instantiate(runtime.engine, self._module, self._imports, self.limits, ctx,
                           runtime.dispatcher_class)

    def _dumps(self, data: Any) -> bytes:
        try:
            return orjson.dumps(data, default=self._runtime.json_default,
                                option=orjson.OPT_PASSTHROUGH_DATACLASS)
        except TypeError as exc:
            reason = exc.__cause__ or exc  # a json_default's own message says what to do
            raise InvalidPayload(f"payload is not JSON-serializable: {reason}", plugin=self.name) from None

    def _encode(self, envelope: dict[str, Any]) -> bytes:
        payload = self._dumps(envelope)
        if len(payload) > self.limits.max_input_bytes:
            raise PayloadTooLarge(f"payload of {len(payload)} bytes is over max_input_bytes="
                                  f"{self.limits.max_input_bytes}", plugin=self.name)
        return payload

    def _decode(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # Where it broke, and the bytes around it (escaped, 60 at most): a wrong length or
            # pointer handed to the host shows as cut or foreign bytes there.
            near = body[max(0, exc.pos - 30):exc.pos + 30]
            raise HookError(f"the guest returned a body that is not JSON ({exc.msg} at byte {exc.pos} of "
                            f"{len(body)}, near {near!r})", status="bad_result", plugin=self.name) from None

    def _pure(self, kind: str, hook: str, payload: bytes) -> bytes | None:
        """A pure hook's body: the one remembered for this very payload, else the guest's, which is
        remembered when the call kept its standing (:mod:`.results`)."""
        results = self.results
        found = results.get(payload) if not (self._runtime._closed or self._pool.closed) else MISSING
        if found is not MISSING:
            self._metrics.stats.reused += 1
            return found  # type: ignore[return-value]  # bytes or None: what put() stored
        body: bytes | None = self._guarded(kind, HOOK_EXPORT, hook, payload, remember=results.generation)
        return body

    def _guarded(self, kind: str, export: str, hook: str, payload: bytes,
                 raw_args: tuple[int, ...] | None = None, remember: int | None = None) -> Any:
        """One guest call on an instance checked out for it: soft-deadline watch, metrics,
        checkin. The hook's envelope goes to ``export`` (``dispatcher.call``), or, with
        ``raw_args``, those integers do (``dispatcher.call_raw``). Every guest call's path, so one
        frame: no closure, no ``*args`` forwarding. ``remember``: the results' generation when a
        pure call began; its body is kept if nothing tainted the call (read before the checkin,
        while the instance is still this call's)."""
        if self._runtime._closed:
            raise PluginClosed("runtime is closed", plugin=self.name)
        inst = self._pool.checkout()
        discard: str | None = None
        ctx = inst.ctx
        dispatcher = inst.dispatcher
        soft_s = self._soft_s
        started = _clock()
        if soft_s is not None:  # the ticker watches ctx.soft_at while the call runs
            ctx.call_hook = hook
            ctx.call_started = started
            ctx.soft_at = started + soft_s
            self._inflight[id(ctx)] = ctx
        try:
            if raw_args is None:
                body = dispatcher.call(export, hook.encode(), payload)
                if remember is not None and not ctx.tainted:
                    self.results.put(payload, body, remember)
                return body
            return dispatcher.call_raw(export, *raw_args)
        except PluginTimeout:
            discard = "timeout"
            self._metrics.trap("timeout")
            raise
        except PluginTrap:
            discard = "trap"
            self._metrics.trap("trap")
            raise
        except PluginError:
            raise
        except BaseException:
            discard = "error"  # a host-side failure mid-call: the instance state is unknown
            raise
        finally:
            if ctx.stdio:
                ctx.flush_stdio()  # WASI output without a final newline still reaches the log
            if soft_s is not None:
                self._inflight.pop(id(ctx), None)
            elapsed = _clock() - started
            if self.call_observer is not None:
                memory = ctx.memory.data_len(inst.store) if ctx.memory is not None else 0
                self.call_observer(kind, hook, elapsed, dispatcher.fuel_used, memory)
            self._pool.checkin(inst, discard, kind, elapsed, dispatcher.fuel_used)
