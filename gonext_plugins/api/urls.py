"""Routes of the API, included by ``gonext_plugins.urls`` under ``api/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import SimpleRouter

from .exceptions import not_found_json
from .hooks import HookCatalogueView
from .schema import RedocView, SchemaView, SwaggerView
from .views import CapabilityListView, KeyView, PluginViewSet

app_name = "api"

router = SimpleRouter()
router.register("plugins", PluginViewSet, basename="plugin")


@csrf_exempt  # the view dispatched to does its own CSRF check (DRF's session authentication)
def fallback(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under the API: the route with a trailing slash when one exists (POST
    ``.../activate`` works like ``.../activate/``, without Django's APPEND_SLASH redirect, which
    cannot keep a POST body), else a 404 in the API's error shape."""
    if not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not fallback:
            return match.func(request, *match.args, **match.kwargs)
    return not_found_json(request)


urlpatterns = [
    *router.urls,
    path("capabilities/", CapabilityListView.as_view(), name="capabilities"),
    path("keys/", KeyView.as_view(), name="keys"),
    path("hooks/", HookCatalogueView.as_view(), name="hooks"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", SwaggerView.as_view(url_name="gonext_plugins:api:schema"), name="docs"),
    path("redoc/", RedocView.as_view(url_name="gonext_plugins:api:schema"), name="redoc"),
    re_path(r"^(?P<rest>.*)$", fallback, name="not-found"),
]
