"""Unregister ``posts.read`` once every app is ready (it is listed after the demo blog)."""

from django.apps import AppConfig


class CompatSiteConfig(AppConfig):
    name = "tests.compat_site"
    label = "compat_site"

    def ready(self) -> None:
        from gonext_plugins import capabilities

        capabilities.unregister("posts.read")
