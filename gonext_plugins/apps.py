"""App config: registers the system checks."""

from django.apps import AppConfig


class GonextPluginsConfig(AppConfig):
    name = "gonext_plugins"
    verbose_name = "Plugins"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
