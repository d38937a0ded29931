"""WebSocket routes of the plugin app; include them in the site's ASGI router."""

from django.urls import path  # noqa: F401

websocket_urlpatterns: list = []
