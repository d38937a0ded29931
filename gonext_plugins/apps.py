"""App config: registers the system checks, the built-in host functions, the plugin bridge and the
jobs bridge (each loaded plugin's declared jobs), and tells the log writer which version of a plugin
this process runs."""

from functools import partial
from typing import Any

from django.apps import AppConfig


class GonextPluginsConfig(AppConfig):
    name = "gonext_plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use the models, which cannot be imported
        # before the app registry is ready.
        from . import bridge, checks, host_functions, jobs, logs  # noqa: F401  (checks, log signals: on import)
        from .registry import registry

        host_functions.register_all()
        registry.add_listener(bridge.connect, bridge.disconnect)
        registry.add_listener(jobs.register_jobs, jobs.unregister_jobs)
        logs.version_source = partial(_loaded_version, registry)


def _loaded_version(registry: Any, slug: str) -> str:
    """The version of ``slug`` this process has loaded ("" when none): the log lines' version."""
    loaded = registry.get(slug, sync=False)
    return loaded.version if loaded is not None else ""
