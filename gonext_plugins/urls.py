"""Every route of the plugin app, for one ``include`` under any prefix:

    path("plugins/", include("gonext_plugins.urls"))

brings the API (``api/``, with ``schema/``, ``docs/``, ``redoc/``), the live log pages and their
WebSocket, the dev install endpoint and the metrics view, and claims nothing outside the prefix.
Nothing the app renders hard-codes a path: it reverses these names (namespace ``gonext_plugins``).

The API's routes and the dev install view are imported when first needed, not with this URLconf:
they bring DRF and drf-spectacular (with DRF's optional imports: psycopg, pygments, requests,
PyYAML), about a third of a second that a fresh worker serving the site's pages need not pay.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path
from django.urls.resolvers import RoutePattern
from django.views.decorators.csrf import csrf_exempt

from . import views

app_name = "gonext_plugins"


class DeferredURLResolver(URLResolver):
    """An ``include`` whose URLconf module is imported on the first URL resolved or reversed inside
    it, not when the root URLconf is built or when a name elsewhere is reversed.

    Django fills a resolver's reverse tables by walking every included resolver; a namespaced one
    (this one always is) adds nothing to its parent's tables, so until something asks for a route of
    its own it may stay empty. Every entry point that reads its routes loads them first."""

    def __init__(self, route: str, urlconf_name: str, namespace: str) -> None:
        super().__init__(RoutePattern(route, is_endpoint=False), urlconf_name, app_name=namespace,
                         namespace=namespace)

    def _load(self) -> None:
        """Import the URLconf (``url_patterns`` is a cached property: the first read imports)."""
        self.url_patterns  # noqa: B018

    def _populate(self) -> None:
        # Before anything asked for our routes (a parent's walk, a path outside our prefix: ``resolve``
        # reads ``url_patterns`` only once the prefix matched) there is nothing to add.
        if "url_patterns" in self.__dict__:
            super()._populate()

    def _reverse_with_prefix(self, lookup_view: Any, _prefix: str, *args: Any, **kwargs: Any) -> str:
        self._load()
        return super()._reverse_with_prefix(lookup_view, _prefix, *args, **kwargs)  # type: ignore[misc]

    @property
    def reverse_dict(self) -> Any:
        self._load()
        return super().reverse_dict

    @property
    def namespace_dict(self) -> Any:
        self._load()
        return super().namespace_dict

    @property
    def app_dict(self) -> Any:
        self._load()
        return super().app_dict

    def _is_callback(self, name: str) -> bool:
        self._load()
        return super()._is_callback(name)


def deferred_view(module: str, view_class: str) -> Any:
    """A view that imports ``module`` and builds ``view_class.as_view()`` on its first request.

    The dev install view is a DRF ``APIView``: importing it with the URLconf would import DRF in
    every process. CSRF: exempt here as DRF's ``as_view`` is; its session authentication checks
    CSRF itself."""
    built: list[Any] = []

    @csrf_exempt
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not built:
            built.append(getattr(import_module(module), view_class).as_view())
        response: HttpResponse = built[0](request, *args, **kwargs)
        return response

    view.__name__ = view.__qualname__ = view_class
    view.__module__ = module
    return view


urlpatterns: list[URLPattern | URLResolver] = [
    path("_/plugins/logs/<slug:slug>/", views.log_page, name="log_page"),
    # The log page's WebSocket (gonext_plugins.routing serves it; over plain HTTP: a 426).
    path("_/plugins/dev/logs/<slug:slug>/", views.websocket_only, name="log_stream"),
    # dev mode only (a 404 otherwise): where `manage.py plugin dev` uploads each build
    path("_/plugins/dev/install", deferred_view("gonext_plugins.dev_views", "DevInstallView"),
         name="dev_install"),
    path("metrics", views.metrics_view, name="metrics"),
    DeferredURLResolver("api/", "gonext_plugins.api.urls", namespace="api"),
]
