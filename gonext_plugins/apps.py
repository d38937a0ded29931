"""App config: wires the layers together once Django's app registry is ready.

The lower layers expose hooks and the higher ones fill them here, so no module imports one above
it: ``lifecycle`` compiles through ``loading``; ``loading``'s runtime logs through ``logs`` and
encodes hook arguments through ``bridge``; the registry reacts to committed lifecycle changes and
syncs before each hook dispatch; the plugin bridge and the jobs bridge follow loads and unloads;
the log writer learns which version of a plugin this process runs; ``plugin.info`` reads the
hook catalogue, and so does the compatibility rule's hook warnings. Also registers the system
checks and the built-in host functions.
"""

from functools import partial
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_finished, request_started


class GonextPluginsConfig(AppConfig):
    name = "gonext_plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these import models, which Django allows only once the
        # app registry is ready (Django's documented place for such imports).
        from . import (  # noqa: F401  (checks: on import)
            bridge,
            bundle,
            checks,
            compat,
            hook_catalogue,
            host_functions,
            jobs,
            lifecycle,
            loading,
            logs,
        )
        from .registry import registry
        from .stats import on_request_finished, on_request_started

        host_functions.register_all()
        host_functions.info.set_hook_source(partial(_offered_hooks, hook_catalogue))
        bundle.set_default_key_lookup(lifecycle.db_key_lookup)
        loading.configure(log_sink=logs.runtime_log_sink, json_default=bridge.json_default)
        lifecycle.set_loader(loading)
        compat.set_hook_rule(hook_catalogue.unoffered)
        registry.install()
        registry.add_listener(bridge.connect, bridge.disconnect)
        registry.add_listener(jobs.register_jobs, jobs.unregister_jobs)
        registry.add_listener(bridge.connect_previous, bridge.disconnect, previous=True)
        logs.version_source = registry.version_of
        request_started.connect(on_request_started, dispatch_uid="gonext_plugins_stats_request_start")
        request_finished.connect(on_request_finished, dispatch_uid="gonext_plugins_stats_flush")


def _offered_hooks(hook_catalogue: Any) -> list[tuple[str, str]]:
    """The site's hook catalogue as ``(name, kind)`` pairs, for ``plugin.info``."""
    return [(hook.name, hook.kind) for hook in hook_catalogue.catalogue()]

