"""URLs of the demo site: the blog, the admin, the plugin app and the metrics endpoint."""

from django.contrib import admin
from django.urls import include, path

from gonext_plugins.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("", include("gonext_plugins.urls")),
    path("", include("project.blog.urls")),
]
