"""One instantiated plugin: its own store, host context and dispatcher.

A store is single-threaded; the pool guarantees that one instance is used by one thread at a time.
"""

from __future__ import annotations

from typing import Any

from wasmtime import Engine, Func, Instance, Memory, Module, Store

from gonext_plugins.errors import PluginLoadError, PluginTrap
from gonext_plugins.runtime.dispatch import TRAP_TYPES, Dispatcher, arm, trap_error
from gonext_plugins.runtime.host import HostContext, ImportSpec, link_imports
from gonext_plugins.runtime.limits import Limits

# Store limiter values besides memory: generous for real guests, small enough to stop abuse.
MAX_TABLE_ELEMENTS = 1_000_000
MAX_TABLES = 16


class PluginInstance:
    """A live instance; ``uses`` and ``last_used`` drive the pool's rotation and idle eviction;
    ``waited`` is how long its current checkout waited (the pool records it at checkin)."""

    __slots__ = ("ctx", "dispatcher", "last_used", "store", "uses", "waited")

    def __init__(self, store: Store, ctx: HostContext, dispatcher: Dispatcher) -> None:
        self.store = store
        self.ctx = ctx
        self.dispatcher = dispatcher
        self.uses = 0
        self.last_used = 0.0
        self.waited = 0.0


INITIALIZE_EXPORT = "_initialize"


def instantiate(engine: Engine, module: Module, imports: list[ImportSpec], limits: Limits, ctx: HostContext,
                dispatcher_cls: type[Dispatcher]) -> PluginInstance:
    """Build a store under the limits, link the imports, run the start function, wire the
    dispatcher, then run a WASI reactor's ``_initialize`` (a command's ``_start`` never runs)."""
    store = Store(engine)
    store.set_limits(memory_size=limits.memory_bytes, table_elements=MAX_TABLE_ELEMENTS, instances=1,
                     tables=MAX_TABLES, memories=1)
    linked = link_imports(store, ctx, imports)
    arm(store, limits, ctx)  # a start function runs under the same fuel and deadline as a call
    try:
        instance = Instance(store, module, linked)
    except TRAP_TYPES as exc:
        err: PluginTrap = trap_error(exc, ctx, limits)
        raise PluginLoadError(f"instantiation failed: {err.message}", plugin=ctx.name) from None
    raw = instance.exports(store)
    exports: dict[str, Any] = {exp.name: raw[exp.name] for exp in module.exports}
    memory = exports["memory"]
    alloc = exports["gn_alloc"]
    if not isinstance(memory, Memory) or not isinstance(alloc, Func):  # check_shape makes this unreachable
        raise PluginLoadError("memory or gn_alloc export has the wrong kind", plugin=ctx.name)
    ctx.attach(store, memory, alloc)
    dispatcher = dispatcher_cls(store, exports, memory, limits, ctx)
    if isinstance(exports.get(INITIALIZE_EXPORT), Func):
        _initialize(dispatcher, ctx)
    return PluginInstance(store, ctx, dispatcher)


def _initialize(dispatcher: Dispatcher, ctx: HostContext) -> None:
    """Run the reactor's constructor once, under the call limits (``call_raw`` arms fuel and the
    deadline); a trap there is the error a call would have raised, saying it was ``_initialize``."""
    try:
        dispatcher.call_raw(INITIALIZE_EXPORT)
    except PluginTrap as err:
        raise type(err)(f"{INITIALIZE_EXPORT} failed: {err.message}", plugin=ctx.name,
                        guest_message=err.guest_message, frames=err.frames) from None
    finally:
        ctx.flush_stdio()
