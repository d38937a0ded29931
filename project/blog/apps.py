"""The demo blog: a small app that exercises the plugin hooks."""

from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "project.blog"
    label = "blog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import plugins  # noqa: F401  (capabilities, host functions, hook receivers)
