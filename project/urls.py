"""URLs of the demo site: the admin, the plugin app (one include: its API, log pages, dev endpoint
and metrics) and the blog. The demo includes the app at "" so its paths stay where the tests,
benchmarks and dev tools expect them (``/api/``, ``/_/plugins/``, ``/metrics``); any prefix works."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("gonext_plugins.urls")),
    path("", include("project.blog.urls")),
]
