"""Routes of the API, included by ``gonext_plugins.urls`` under ``api/``.

The JSON 404 catch-all covers only the paths of this API's own resources (``plugins/...``,
``keys/...``, every first segment of the routes below): a site that includes the app at ``""``
keeps its own ``api/<anything else>/`` routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, URLPattern, URLResolver, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import SimpleRouter

from ..conf import settings
from .exceptions import not_found_json
from .hooks import HookCatalogueView
from .schema import RedocView, SchemaView, SwaggerView
from .views import CapabilityListView, KeyView, PluginViewSet

app_name = "api"

router = SimpleRouter()
router.register("plugins", PluginViewSet, basename="plugin")


@csrf_exempt  # the view dispatched to does its own CSRF check (DRF's session authentication)
def fallback(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under one of the API's resources: the route with a trailing slash when one
    exists (POST ``.../activate`` works like ``.../activate/``, without Django's APPEND_SLASH
    redirect, which cannot keep a POST body), else a 404 in the API's error shape."""
    if not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not fallback:
            return match.func(request, *match.args, **match.kwargs)
    return not_found_json(request)


def docs_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema and docs pages, or a 404 when ``GONEXT_PLUGINS['API_DOCS']`` is off (read per
    request, so ``override_settings`` reaches it)."""

    def serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.API_DOCS:
            return not_found_json(request)
        return view(request, *args, **kwargs)

    return csrf_exempt(serve)


resources: list[URLPattern | URLResolver] = [
    *router.urls,
    path("capabilities/", CapabilityListView.as_view(), name="capabilities"),
    path("keys/", KeyView.as_view(), name="keys"),
    path("hooks/", HookCatalogueView.as_view(), name="hooks"),
    path("schema/", docs_view(SchemaView.as_view()), name="schema"),
    path("docs/", docs_view(SwaggerView.as_view(url_name="gonext_plugins:api:schema")), name="docs"),
    path("redoc/", docs_view(RedocView.as_view(url_name="gonext_plugins:api:schema")), name="redoc"),
]


def first_segments(patterns: list[URLPattern | URLResolver]) -> list[str]:
    """The literal first path segment of each route (``plugins``, ``keys``, ...): the API's own
    resources, the only paths its catch-all may claim."""
    segments: list[str] = []
    for pattern in patterns:
        match = re.match(r"\^?([A-Za-z0-9_.-]+)", str(pattern.pattern))
        if match and match.group(1) not in segments:
            segments.append(match.group(1))
    return segments


OWN_SEGMENTS = first_segments(resources)

urlpatterns = [
    *resources,
    re_path(rf"^(?P<rest>(?:{'|'.join(map(re.escape, OWN_SEGMENTS))})(?:/.*)?)$", fallback, name="not-found"),
]
