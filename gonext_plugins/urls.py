"""HTTP routes of the plugin app (the live log page, the dev install endpoint, the API)."""

from django.urls import include, path

from . import dev_views, views

app_name = "gonext_plugins"

urlpatterns: list = [
    path("_/plugins/logs/<slug:slug>/", views.log_page, name="log_page"),
    # dev mode only (a 404 otherwise): where `manage.py plugin dev` uploads each build
    path("_/plugins/dev/install", dev_views.DevInstallView.as_view(), name="dev_install"),
    path("api/", include("gonext_plugins.api.urls")),
]
