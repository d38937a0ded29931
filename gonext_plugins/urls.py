"""HTTP routes of the plugin app (the live log page, the dev install endpoint, the API)."""

from django.urls import include, path

app_name = "gonext_plugins"

urlpatterns: list = [
    path("api/", include("gonext_plugins.api.urls")),
]
