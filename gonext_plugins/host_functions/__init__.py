"""The host functions that ship with the app: ``kv.*`` (:mod:`.kv`), ``http.fetch``
(:mod:`.http_fetch`), ``log`` (:mod:`.log`), ``plugin.info`` (:mod:`.info`), ``settings.get``
(:mod:`.settings`) and ``jobs.enqueue`` (:mod:`.jobs`). ``docs/host-functions.md`` documents each
one; a test holds its table to this registry.

Each is a plain ``(plugin, payload) -> JSON`` function registered in the process-wide
``capabilities.host_functions`` by :func:`register_all` (called from ``AppConfig.ready``). The
runtime already checks the capability on every call (-5), decodes the payload (-3), turns a
``MalformedHostCallPayload`` (not an object, a missing or unknown field) into -3 and any other
exception into -1, with a log line naming the plugin; so here bad input and refusals simply raise one
of the typed errors of ``gonext_plugins.errors`` (``HostFunctionError`` and its subclasses), whose
message is what the plugin's log shows. Every payload is read through :mod:`._payload`: unknown
fields are refused, so a typo fails loudly. Each module's doc gives its payloads and results.

The submodules keep their names here (``host_functions.http_fetch`` is the module); the functions
themselves are imported from them, or from the old path ``gonext_plugins.builtin_host``.
"""

from __future__ import annotations

import threading

from .. import capabilities
from . import http_fetch, info, jobs, kv, log, settings

_registered = threading.Lock()


def register_all() -> None:
    """Register the always-granted capabilities (``log``, ``self``) and every built-in host function.
    Idempotent: registering again replaces each function with itself (and restores any a test removed)."""
    with _registered:
        capabilities.register("log", "Write lines to its own plugin log. Always granted to every plugin.",
                              "low", builtin=True)
        capabilities.register(settings.SELF, "Read facts about itself (its slug, version, grants and the "
                              "hooks the site offers) and its own settings. Always granted to every plugin.",
                              "low", builtin=True)
        for name, capability, func, pure in (
            ("kv.get", "kv", kv.kv_get, False),
            ("kv.set", "kv", kv.kv_set, False),
            ("kv.delete", "kv", kv.kv_delete, False),
            ("kv.list", "kv", kv.kv_list, False),
            ("kv.incr", "kv", kv.kv_incr, False),
            ("kv.cas", "kv", kv.kv_cas, False),
            ("http.fetch", "http.fetch", http_fetch.http_fetch, False),
            ("log", "log", log.log, False),
            ("plugin.info", "self", info.plugin_info, False),
            ("jobs.enqueue", "jobs.enqueue", jobs.enqueue_host_function, False),
            # Fixed until the settings change, which forgets every remembered result (LoadedPlugin).
            ("settings.get", settings.SELF, settings.settings_get, True),
        ):
            existing = capabilities.host_functions.get(name)
            if (existing is None or existing.func is not func or existing.capability != capability
                    or existing.pure != pure):
                capabilities.host_function(name, capability=capability, pure=pure)(func)


__all__ = ["http_fetch", "info", "jobs", "kv", "log", "register_all", "settings"]
