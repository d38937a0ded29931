"""WebSocket routes of the plugin app; include them in the site's ASGI router."""

from django.urls import path

from .consumers import PluginLogConsumer

websocket_urlpatterns: list = [
    path("_/plugins/dev/logs/<slug:slug>/", PluginLogConsumer.as_asgi(), name="gonext_plugin_logs_ws"),
]
