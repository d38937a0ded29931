"""App config: registers the system checks, the built-in host functions, the plugin bridge and the
jobs bridge (each loaded plugin's declared jobs)."""

from django.apps import AppConfig


class GonextPluginsConfig(AppConfig):
    name = "gonext_plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import bridge, builtin_host, checks, jobs, logs  # noqa: F401  (checks, log signals: on import)
        from .registry import registry

        builtin_host.register_all()
        registry.add_listener(bridge.connect, bridge.disconnect)
        registry.add_listener(jobs.register_jobs, jobs.unregister_jobs)
