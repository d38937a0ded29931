"""The action/filter bus that site code and plugins share: WordPress's semantics, Django's idioms.

::

    from gonext_plugins import hooks

    @hooks.add_filter("the_content", priority=20)       # decorator or plain call
    def shout(html, post):
        return html.upper()

    html = hooks.apply_filters("the_content", post.body, post)
    bodies = hooks.do_action("wp_head", post)          # what plugin actions returned

    with hooks.register_temporarily("the_content", shout, priority=5):   # tests
        ...

Semantics follow WordPress's ``WP_Hook`` exactly: lower priorities run first, equal priorities in
insertion order; a callback is registered once per priority; while a hook runs, a callback added at
a later priority runs in that run and one added at the running or an earlier priority waits for the
next run; removing a callback of a later priority stops it in this run, while the callbacks of the
running priority were fixed when that priority began; hooks may be re-entered from their own
callbacks, each nested run iterating independently; ``did_action`` counts runs even when nothing is
registered.

Every hook is also a ``django.dispatch.Signal`` (:func:`signal`): ``@receiver(hooks.signal("save_post"))``
connects a Django-style receiver ``(sender, signal, args, **kwargs)`` as an action at priority 10.
Receivers are held strongly (a hook bus is module-level code), unlike Django's default.

Plugin receivers (the plugin bridge) are ordinary callbacks that also carry ``collect = True``:
``do_action`` returns the non-None bodies they produced.

The site also declares the hooks it offers plugins (:func:`declare`, usually in
``AppConfig.ready``): the catalogue lives in :mod:`gonext_plugins.hook_catalogue`, re-exported here.

This module is a leaf: it knows nothing of plugins. Before each dispatch it runs the step
installed with :func:`set_before_dispatch` (the registry's sync, installed in ``AppConfig.ready``).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.dispatch import Signal
from django.utils.safestring import SafeData

# The catalogue of hooks the site offers, re-exported: ``hooks.declare`` is the public spelling.
from .hook_catalogue import (  # noqa: F401
    KINDS,
    ArgSpec,
    DeclaredHook,
    HookArg,
    catalogue,
    declare,
    declared,
    declared_temporarily,
    undeclare,
    unoffered,
)

DEFAULT_PRIORITY = 10

logger = logging.getLogger("django.dispatch")  # where Django's own send_robust logs

Callback = Callable[..., Any]


class _Entry:
    """One registration: the callback and how to call it."""

    __slots__ = ("callback", "django_style", "signal")

    def __init__(self, callback: Callback, django_style: bool = False, signal: Signal | None = None) -> None:
        self.callback = callback
        self.django_style = django_style
        self.signal = signal


def _key(callback: Callback) -> Any:
    """Identity of a callback for dedup and removal: bound methods compare by (self, function), like
    WordPress's ``_wp_filter_build_unique_id``."""
    self_obj = getattr(callback, "__self__", None)
    func = getattr(callback, "__func__", None)
    if self_obj is not None and func is not None:
        return (id(self_obj), func)
    return callback


class Hook:
    """The callbacks of one hook name, by priority."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.callbacks: dict[int, dict[Any, _Entry]] = {}
        self.signal = HookSignal(self)

    def add(self, callback: Callback, priority: int, entry: _Entry | None = None) -> None:
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, not {priority!r}")
        with _hooks_lock:
            bucket = self.callbacks.setdefault(priority, {})
            key = _key(callback)
            if key not in bucket:  # same callback, same priority: registered once, position kept
                bucket[key] = entry or _Entry(callback)

    def remove(self, callback: Callback, priority: int) -> bool:
        with _hooks_lock:
            bucket = self.callbacks.get(priority)
            if not bucket or _key(callback) not in bucket:
                return False
            del bucket[_key(callback)]
            if not bucket:
                del self.callbacks[priority]
            return True

    def remove_all(self, priority: int | None = None) -> None:
        with _hooks_lock:
            if priority is None:
                self.callbacks.clear()
            else:
                self.callbacks.pop(priority, None)

    def has(self, callback: Callback | None = None) -> bool | int:
        if callback is None:
            return any(self.callbacks.values())
        key = _key(callback)
        for priority in sorted(self.callbacks):
            if key in self.callbacks[priority]:
                return priority
        return False

    def run(self, call: Callable[[_Entry], None]) -> None:
        """Iterate priorities the WordPress way, calling ``call(entry)`` for each callback.

        The next priority is always the smallest registered one above the current, read afresh after
        each priority: later additions join, earlier ones wait, later removals drop out. Within a
        priority the callbacks were fixed when it began. Nested runs keep their own ``current``.
        """
        current: int | None = None
        while True:
            later = [p for p in list(self.callbacks) if current is None or p > current]
            if not later:
                return
            current = min(later)
            for entry in list(self.callbacks.get(current, {}).values()):
                call(entry)


class _HookView(Hook):
    """A hook as one context sees it under an :func:`overlay`: the shared callbacks minus the hidden
    ones plus the context's own, snapshotted when the run starts (the shared hook is not touched)."""

    def __init__(self, name: str, callbacks: dict[int, dict[Any, _Entry]]) -> None:
        self.name = name
        self.callbacks = callbacks


class _Overlay:
    """Receivers added and hidden for one context only (a preview request)."""

    __slots__ = ("added", "hide")

    def __init__(self, added: dict[str, list[tuple[int, Callback]]],
                 hide: Callable[[Callback], bool]) -> None:
        self.added = added
        self.hide = hide

    def view(self, name: str, hook: Hook | None) -> Hook | None:
        extra = self.added.get(name, ())
        if hook is None and not extra:
            return None
        merged: dict[int, dict[Any, _Entry]] = {}
        for priority, bucket in list((hook.callbacks if hook else {}).items()):
            kept = {key: entry for key, entry in list(bucket.items()) if not self.hide(entry.callback)}
            if kept:
                merged[priority] = kept
        for priority, callback in extra:
            merged.setdefault(priority, {}).setdefault(_key(callback), _Entry(callback))
        return _HookView(name, merged)


_hooks: dict[str, Hook] = {}
_hooks_lock = threading.RLock()
# Receivers that only the current context sees (``overlay``); None almost always.
_overlay: ContextVar[_Overlay | None] = ContextVar("gonext_hook_overlay", default=None)
_action_counts: defaultdict[str, int] = defaultdict(int)
_filter_counts: defaultdict[str, int] = defaultdict(int)
_current: ContextVar[tuple[str, ...]] = ContextVar("gonext_current_hooks", default=())

RunKind = Literal["action", "html", "text"]
_run_kind: ContextVar[RunKind | None] = ContextVar("gonext_hook_run_kind", default=None)
_run_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("gonext_hook_run_memo", default=None)


def run_memo() -> dict[Hashable, Any]:
    """A dict shared by the callbacks of the innermost hook run now running and dropped when the run
    ends (a fresh, unshared dict outside any run). A callback that derives something costly from the
    run's arguments (the plugin bridge's JSON form of them) computes it once per run, not once per
    callback; it must key what it stores on what it derived it from, since a filter's value changes
    from step to step."""
    memo = _run_memo.get()
    return {} if memo is None else memo


def current_run_kind() -> RunKind | None:
    """How the innermost hook now running is used, which decides how its callbacks' results must be
    treated: ``"action"`` (``do_action``: bodies become page fragments), ``"html"`` (a filter
    chain that started from ``SafeData``: its result renders as HTML, whatever a step in between
    returned), ``"text"`` (any other filter chain: the result is escaped where it is shown);
    ``None`` outside any hook. Callbacks that hand back untrusted values (the plugin bridge) key
    their cleaning on this, not on their own declared kind nor on the value a step received."""
    return _run_kind.get()


@contextmanager
def overlay(added: Sequence[tuple[str, Callback, int]],
            hide: Callable[[Callback], bool] = lambda callback: False) -> Iterator[None]:
    """Within the ``with`` block, and only in this context (thread or task), dispatches also run
    ``added`` ``(hook, callback, priority)`` and skip the shared callbacks ``hide`` picks. Why: a
    preview makes one plugin version active for one request while every other request, in this
    process or any other, keeps seeing the shared hooks unchanged."""
    by_hook: dict[str, list[tuple[int, Callback]]] = {}
    for name, callback, priority in added:
        by_hook.setdefault(name, []).append((priority, callback))
    token = _overlay.set(_Overlay(by_hook, hide))
    try:
        yield
    finally:
        _overlay.reset(token)


def _hook(name: str) -> Hook:
    hook = _hooks.get(name)
    if hook is None:
        with _hooks_lock:
            hook = _hooks.setdefault(name, Hook(name))
    return hook


class HookSignal(Signal):
    """A hook seen as a Django signal. ``connect`` adds a Django-style receiver as an action at
    priority 10 (or ``priority=``); ``send`` runs the hook as an action and returns
    ``[(receiver, response), ...]`` like ``Signal.send``; ``send_robust`` catches each receiver's
    exception and returns it as that receiver's response, as Django's contract says."""

    def __init__(self, hook: Hook) -> None:
        super().__init__()
        self.hook = hook

    def connect(self, receiver: Callback, sender: Any = None, weak: bool = True,
                dispatch_uid: Any = None, priority: int = DEFAULT_PRIORITY) -> None:
        self.hook.add(receiver, priority, _Entry(receiver, django_style=True, signal=self))

    def disconnect(self, receiver: Callback | None = None, sender: Any = None,
                   dispatch_uid: Any = None, priority: int = DEFAULT_PRIORITY) -> bool:
        return self.hook.remove(receiver, priority) if receiver is not None else False

    def has_listeners(self, sender: Any = None) -> bool:
        return bool(self.hook.has())

    def send(self, sender: Any, **named: Any) -> list[tuple[Callback, Any]]:
        responses: list[tuple[Callback, Any]] = []
        args = tuple(named.pop("args", ()))
        _run_action(self.hook.name, args, responses)
        return responses

    def send_robust(self, sender: Any, **named: Any) -> list[tuple[Callback, Any]]:
        responses: list[tuple[Callback, Any]] = []
        args = tuple(named.pop("args", ()))
        _run_action(self.hook.name, args, responses, robust=True)
        return responses


def signal(name: str) -> HookSignal:
    """The ``django.dispatch.Signal`` of hook ``name``."""
    return _hook(name).signal


# --- registration ----------------------------------------------------------------------------


def add_filter(name: str, callback: Callback | None = None, priority: int = DEFAULT_PRIORITY) -> Any:
    """Register ``callback(value, *args) -> new value``. Usable as ``@add_filter("name")``."""
    if callback is None:
        def decorator(func: Callback) -> Callback:
            _hook(name).add(func, priority)
            return func
        return decorator
    _hook(name).add(callback, priority)
    return callback


def add_action(name: str, callback: Callback | None = None, priority: int = DEFAULT_PRIORITY) -> Any:
    """Register ``callback(*args)``. Actions and filters share one registry, as in WordPress."""
    return add_filter(name, callback, priority)


def remove_filter(name: str, callback: Callback, priority: int = DEFAULT_PRIORITY) -> bool:
    hook = _hooks.get(name)
    return hook.remove(callback, priority) if hook else False


remove_action = remove_filter


def remove_all_filters(name: str, priority: int | None = None) -> bool:
    hook = _hooks.get(name)
    if hook:
        hook.remove_all(priority)
    return True


remove_all_actions = remove_all_filters


def has_filter(name: str, callback: Callback | None = None) -> bool | int:
    """Without ``callback``: whether anything is registered. With it: its priority, or False."""
    hook = _hooks.get(name)
    if hook is None:
        return False
    return hook.has(callback)


has_action = has_filter


@contextmanager
def register_temporarily(name: str, callback: Callback,
                         priority: int = DEFAULT_PRIORITY) -> Iterator[Callback]:
    """Register for the length of a ``with`` block (tests), removed on exit even on error."""
    add_filter(name, callback, priority)
    try:
        yield callback
    finally:
        remove_filter(name, callback, priority)


# --- running ---------------------------------------------------------------------------------


def _run_hook(hook: Hook, kind: RunKind, call: Callable[[_Entry], None]) -> None:
    """``hook.run(call)`` with the run's context (the stack of running hooks, its kind, its memo)
    set for its length. A plain try/finally, not a ``@contextmanager``: this wraps every hook run
    that has callbacks, and the generator machinery cost more than the three context variables."""
    token = _current.set((*_current.get(), hook.name))
    kind_token = _run_kind.set(kind)
    memo_token = _run_memo.set({})
    try:
        hook.run(call)
    finally:
        _run_memo.reset(memo_token)
        _run_kind.reset(kind_token)
        _current.reset(token)


_before_dispatch: Callable[[], None] | None = None


def set_before_dispatch(step: Callable[[], None] | None) -> None:
    """Run ``step()`` before every dispatch (``None`` removes it). The registry installs its sync
    here, so this process catches up with plugin changes made elsewhere (cheap between intervals)."""
    global _before_dispatch
    _before_dispatch = step


def _sync_plugins() -> None:
    step = _before_dispatch
    if step is not None:
        step()


def apply_filters(name: str, value: Any, *args: Any) -> Any:
    """Pass ``value`` through every filter of ``name``; each gets ``(value, *args)``."""
    _filter_counts[name] += 1
    _sync_plugins()
    hook = _hooks.get(name)
    layer = _overlay.get()  # inlined (the hot path): a preview's view of the hook, almost always None
    if layer is not None:
        hook = layer.view(name, hook)
    if hook is None or not hook.callbacks:
        return value
    state = [value]

    def call(entry: _Entry) -> None:
        if entry.django_style:
            entry.callback(sender=name, signal=entry.signal, args=args, value=state[0])
        else:
            state[0] = entry.callback(state[0], *args)

    _run_hook(hook, "html" if isinstance(value, SafeData) else "text", call)
    return state[0]


def _run_action(name: str, args: tuple[Any, ...],
                responses: list[tuple[Callback, Any]] | None = None, *, robust: bool = False) -> list[Any]:
    """Run the action; with ``robust`` a callback's exception is logged and becomes its response
    instead of propagating (``HookSignal.send_robust``)."""
    _action_counts[name] += 1
    _sync_plugins()
    hook = _hooks.get(name)
    layer = _overlay.get()  # inlined (the hot path): a preview's view of the hook, almost always None
    if layer is not None:
        hook = layer.view(name, hook)
    bodies: list[Any] = []
    if hook is None or not hook.callbacks:
        return bodies

    def call(entry: _Entry) -> None:
        try:
            if entry.django_style:
                result = entry.callback(sender=name, signal=entry.signal, args=args)
            else:
                result = entry.callback(*args)
        except Exception as err:
            if not robust:
                raise
            logger.error("Error calling %s in HookSignal.send_robust() (%s)", getattr(
                entry.callback, "__qualname__", entry.callback), err, exc_info=err)
            if responses is not None:
                responses.append((entry.callback, err))
            return
        if responses is not None:
            responses.append((entry.callback, result))
        if result is not None and getattr(entry.callback, "collect", False):
            bodies.append(result)

    _run_hook(hook, "action", call)
    return bodies


def do_action(name: str, *args: Any) -> list[Any]:
    """Run every action of ``name`` with ``args``; returns the bodies plugin actions returned."""
    return _run_action(name, args)


async def aapply_filters(name: str, value: Any, *args: Any) -> Any:
    """``apply_filters`` for async code: runs in a worker thread, so a guest call (or the ORM)
    never blocks the event loop."""
    return await sync_to_async(apply_filters, thread_sensitive=False)(name, value, *args)


async def ado_action(name: str, *args: Any) -> list[Any]:
    """``do_action`` for async code, off the event loop."""
    return await sync_to_async(do_action, thread_sensitive=False)(name, *args)


def did_action(name: str) -> int:
    """How many times ``do_action(name)`` ran in this process."""
    return _action_counts[name]


def current_filter() -> str | None:
    """The innermost hook running in this context, or None."""
    stack = _current.get()
    return stack[-1] if stack else None


current_action = current_filter


def doing_filter(name: str | None = None) -> bool:
    """Whether ``name`` (or, without a name, any hook) is running in this context."""
    stack = _current.get()
    return bool(stack) if name is None else name in stack


doing_action = doing_filter


def did_filter(name: str) -> int:
    """How many times ``apply_filters(name)`` ran in this process (WordPress 6.1's ``did_filter``)."""
    return _filter_counts[name]
