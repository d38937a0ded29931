"""Every route of the plugin app, for one ``include`` under any prefix:

    path("plugins/", include("gonext_plugins.urls"))

brings the API (``api/``, with ``schema/``, ``docs/``, ``redoc/``), the live log pages and their
WebSocket, the dev install endpoint and the metrics view, and claims nothing outside the prefix.
Nothing the app renders hard-codes a path: it reverses these names (namespace ``gonext_plugins``).
"""

from django.urls import include, path

from . import dev_views, views

app_name = "gonext_plugins"

urlpatterns: list = [
    path("_/plugins/logs/<slug:slug>/", views.log_page, name="log_page"),
    # The log page's WebSocket (gonext_plugins.routing serves it; over plain HTTP: a 426).
    path("_/plugins/dev/logs/<slug:slug>/", views.websocket_only, name="log_stream"),
    # dev mode only (a 404 otherwise): where `manage.py plugin dev` uploads each build
    path("_/plugins/dev/install", dev_views.DevInstallView.as_view(), name="dev_install"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/", include("gonext_plugins.api.urls")),
]
