"""HTTP routes of the plugin app (the live log page, the dev install endpoint, the API)."""

from django.urls import include, path

from . import views

app_name = "gonext_plugins"

urlpatterns: list = [
    path("_/plugins/logs/<slug:slug>/", views.log_page, name="log_page"),
    path("api/", include("gonext_plugins.api.urls")),
]
