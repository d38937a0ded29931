"""App config: registers the system checks, the built-in host functions and the plugin bridge."""

from django.apps import AppConfig


class GonextPluginsConfig(AppConfig):
    name = "gonext_plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import bridge, builtin_host, checks, logs  # noqa: F401  (checks, log signals: on import)
        from .registry import registry

        builtin_host.register_all()
        registry.add_listener(bridge.connect, bridge.disconnect)
