"""The plugin bridge: each active plugin's manifest hooks become receivers on the hook bus.

When the registry loads a plugin that holds ``hooks.subscribe``, every hook in its manifest gets a
:class:`PluginHookProxy` at the manifest's priority; when it unloads (deactivation, upgrade, a
revoked grant) every proxy goes. A proxy calls the plugin through its instance pool.

Objects cross as JSON, never pickles: primitives, lists, dicts, dates and UUIDs pass as they are;
anything else needs a ``to_plugin_json()`` method or a serializer registered with
:func:`register_serializer` (applied by :func:`json_default` inside the runtime's JSON encoder).

Markup a plugin hands back is untrusted: this is where it enters the bus, so this is where
:mod:`markup` sanitizes it (action bodies, and filter values that render as HTML), unless the
plugin holds ``html.raw``. A body whose structured output is malformed is a fault, like a trap.

A plugin fault never breaks the page: a filter's value passes through unchanged and an action is
skipped; the fault is logged with the plugin's name, counted, and (for traps, timeouts and bad
results) recorded for quarantine by :meth:`LoadedPlugin.invoke`. ``RAISE_FAULTS`` makes faults
raise instead, for tests and strict sites.
"""

from __future__ import annotations

import decimal
import logging
import operator
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import Counter

from . import hooks, markup, rollout
from .conf import settings
from .errors import BadPluginMarkup, InvalidPayload, PluginClosed, PluginError
from .loading import LoadedPlugin
from .registry import registry

logger = logging.getLogger("gonext_plugins.bridge")

HOOK_FAULTS = Counter(
    "gonext_plugin_hook_faults_total",
    "Plugin hook calls that failed and were skipped (value passed through, action skipped).",
    ["plugin", "hook", "kind"],
)

_serializers: dict[type, Callable[[Any], Any]] = {}
_ARGS_MEMO = "gonext_plugins.bridge.args"  # this module's key in hooks.run_memo()


def register_serializer(cls: type, func: Callable[[Any], Any]) -> None:
    """Give instances of ``cls`` a JSON form for plugins (``func(obj) -> JSON-able``)."""
    _serializers[cls] = func


def json_default(obj: Any) -> Any:
    """orjson's ``default`` for hook arguments: called only for what orjson cannot encode itself
    (it handles str subclasses, numbers, dicts, lists, dates, UUIDs natively)."""
    method = getattr(obj, "to_plugin_json", None)
    if callable(method):
        return method()
    for cls in type(obj).__mro__:
        if cls in _serializers:
            return _serializers[cls](obj)
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    raise TypeError(
        f"{type(obj).__name__} has no JSON form for plugins: give it a to_plugin_json() method or "
        "register one with gonext_plugins.bridge.register_serializer()"
    )


class PluginHookProxy:
    """One manifest hook of one loaded plugin, as a hook-bus callback."""

    collect = True  # do_action returns the bodies plugin actions produce
    outside_cohort = False  # runs for the requests in its rollout's cohort (and every other one)

    def __init__(self, loaded: LoadedPlugin, hook: str, kind: str, priority: int) -> None:
        self.loaded = loaded
        self.hook = hook
        self.kind = kind
        self.priority = priority
        # Fixed for the proxy's life: a grant change re-wires the plugin with new proxies
        # (the registry disconnects, sets the capabilities, connects), so these are read once.
        self.slug = loaded.slug
        self.raw = markup.RAW_HTML in loaded.capabilities
        # The run memo's key for this proxy's encoded arguments (with their count): the runtime
        # that encodes them, fixed for the loaded plugin's life.
        self._args_key = (_ARGS_MEMO, id(loaded.runtime_plugin.runtime))

    def __repr__(self) -> str:
        return f"<PluginHookProxy {self.loaded.slug}:{self.kind}:{self.hook}@{self.priority}>"

    def __call__(self, *args: Any) -> Any:
        """Call the guest the way its manifest declared the hook, then clean the result the way
        the running hook will use it (``hooks.current_run_kind``): a plugin that declares a page's
        action as a filter, or breaks a filter chain's ``SafeData`` with a non-string step, still
        gets every string it returns sanitized where it renders as HTML."""
        # Arguments go to the runtime's orjson encoder, which calls json_default for objects
        # (models), far cheaper than converting them here first; once per hook run, not per plugin.
        raw = self.raw
        run = hooks.current_run_kind() or self.kind
        value = args[0] if args else None
        # In rollout: the active version runs for the cohort only, an upgrade's previous version
        # (PreviousVersionProxy) for the requests outside it only.
        if (self.slug in rollout.excluded()) is not self.outside_cohort:
            return None if run == "action" else value
        try:
            if self.kind == "filter":
                result = self.loaded.invoke("filter", self.hook, value,
                                            encoded_args=self._encoded_args(args[1:]))
            else:
                result = self.loaded.invoke(self.kind, self.hook, encoded_args=self._encoded_args(args))
            if run == "action":
                return markup.clean_action_body(result, slug=self.slug, raw=raw)
            if self.kind == "action" and result is None:
                return value  # an action in a filter chain with nothing to say changes nothing
            return markup.clean_filter_value(value, result, raw=raw, html=run == "html")
        except InvalidPayload:
            raise  # an argument with no JSON form is the site's bug, not the plugin's
        except PluginError as exc:
            self._fault(exc)
            return None if run == "action" else value

    def _encoded_args(self, args: tuple[Any, ...]) -> orjson.Fragment:
        """The JSON of ``args``, encoded by the first plugin of this hook run that needed it and
        reused by the others (``hooks.run_memo``): with 20 plugins on ``the_content`` the post is
        turned into JSON once, not 20 times. Reused only for the very same argument objects and
        runtime (an action declared on a filter chain gets that step's value, which differs)."""
        memo = hooks.run_memo()
        key = (self._args_key, len(args))
        cached: tuple[tuple[Any, ...], orjson.Fragment] | None = memo.get(key)
        if cached is not None and all(map(operator.is_, cached[0], args)):  # same length: in the key
            return cached[1]
        encoded = self.loaded.runtime_plugin.encode_args(args)
        memo[key] = (args, encoded)
        return encoded

    def _fault(self, exc: PluginError) -> None:
        if isinstance(exc, PluginClosed):
            return  # unloaded while this run was under way; the new version takes the next call
        kind = getattr(exc, "status", None) or exc.code
        HOOK_FAULTS.labels(self.loaded.slug, self.hook, kind).inc()
        if isinstance(exc, BadPluginMarkup):  # found here, after the call: the runtime did not see it
            self.loaded.note_fault(kind, self.hook, exc)
        logger.warning("plugin %s failed on %s %r (%s), version %s: %s", self.loaded.slug, self.kind,
                       self.hook, kind, self.loaded.version, exc.message)
        if settings.RAISE_FAULTS:
            raise exc


class PreviousVersionProxy(PluginHookProxy):
    """A hook of an upgrade's previous version, kept loaded while the new one rolls out
    (``registry.previous``): it runs for the requests outside the cohort, and only them, with its
    log lines tagged with its own version."""

    outside_cohort = True

    def __repr__(self) -> str:
        return f"<PreviousVersionProxy {self.loaded.slug} {self.loaded.version}:{self.kind}:{self.hook}>"

    def __call__(self, *args: Any) -> Any:
        token = registry.serving(self.loaded)
        try:
            return super().__call__(*args)
        finally:
            registry.done_serving(token)


def proxies_for(loaded: LoadedPlugin, proxy_class: type[PluginHookProxy] = PluginHookProxy) \
        -> list[PluginHookProxy]:
    """One proxy per manifest hook of ``loaded``, none without ``hooks.subscribe``: the one rule of
    which hooks a plugin takes part in, for the bus (:func:`connect`) and a preview's overlay."""
    if "hooks.subscribe" not in loaded.capabilities:
        return []
    return [proxy_class(loaded, hook.name, hook.kind, hook.priority) for hook in loaded.manifest.hooks]


def connect(loaded: LoadedPlugin) -> None:
    """Registry listener: wire a freshly loaded plugin's hooks into the bus."""
    proxies = proxies_for(loaded)
    if not proxies:
        return
    for proxy in proxies:
        hooks.add_filter(proxy.hook, proxy, proxy.priority)
    loaded.extras["hook_proxies"] = proxies


def connect_previous(loaded: LoadedPlugin) -> None:
    """Registry listener (``previous=True``): wire an upgrade's previous version's hooks, which run
    for the requests outside the rollout's cohort."""
    proxies = proxies_for(loaded, PreviousVersionProxy)
    for proxy in proxies:
        hooks.add_filter(proxy.hook, proxy, proxy.priority)
    loaded.extras["hook_proxies"] = proxies


def disconnect(loaded: LoadedPlugin) -> None:
    """Registry listener: remove every proxy of a plugin that is going away."""
    for proxy in loaded.extras.pop("hook_proxies", []):
        hooks.remove_filter(proxy.hook, proxy, proxy.priority)
