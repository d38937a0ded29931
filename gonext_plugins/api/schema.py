"""The OpenAPI schema and its docs pages, self-contained so a site needs no
``SPECTACULAR_SETTINGS`` of its own for them (its settings still apply to its own schema)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
    SpectacularSwaggerView,
    _get_sidecar_url,
)
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, TokenAuthentication
from rest_framework.permissions import AllowAny

from .base import OwnPolicy, PermissionClasses
from .openapi import extend_schema

TITLE = "gonext plugins API"

SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": TITLE,
    "DESCRIPTION": (
        "Install, grant, activate, upgrade, roll back and uninstall signed WebAssembly plugins.\n\n"
        "Every error has one shape: `{\"error\": \"<code>\", \"detail\": \"<sentence>\", "
        "\"problems\": [...]}`. Authenticate with `Authorization: Token <key>` or the admin's "
        "session (send its CSRF token on writes). See docs/api.md for curl examples."
    ),
    "VERSION": "1",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["gonext_plugins.api.schema.only_plugin_api"],
}


def only_plugin_api(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Keep only this package's views, wherever the site mounts them (a site's own DRF views
    belong in its own schema)."""
    return [endpoint for endpoint in endpoints
            if getattr(endpoint[3], "cls", object).__module__.startswith("gonext_plugins.api.")]


def _sidecar() -> bool:
    """No internet on many hosts: serve Swagger UI and Redoc from drf-spectacular-sidecar when it
    is installed, else from wherever the site's SPECTACULAR_SETTINGS point."""
    return apps.is_installed("drf_spectacular_sidecar")


class DocsPolicy(OwnPolicy):
    """The schema and docs pages are public (they describe, they do not act) and, like the API,
    independent of the site's ``REST_FRAMEWORK`` and ``SPECTACULAR_SETTINGS`` serving defaults."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [TokenAuthentication, SessionAuthentication]
    permission_classes: PermissionClasses = [AllowAny]


class SchemaView(DocsPolicy, SpectacularAPIView):
    custom_settings = SCHEMA_SETTINGS

    @extend_schema(exclude=True)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)


class SwaggerView(DocsPolicy, SpectacularSwaggerSplitView):
    """Swagger UI with its start-up script served as a file (``?script``), not inline, so the page
    works under the app's Content-Security-Policy (``script-src 'self'``)."""

    title = TITLE

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        if _sidecar():
            return _get_sidecar_url(f"swagger-ui-dist/{filename}")
        return SpectacularSwaggerView._swagger_ui_resource(filename)

    @staticmethod
    def _swagger_ui_favicon() -> str:
        if _sidecar():
            return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")
        return SpectacularSwaggerView._swagger_ui_favicon()


class RedocView(DocsPolicy, SpectacularRedocView):
    title = TITLE

    @staticmethod
    def _redoc_standalone() -> str:
        if _sidecar():
            return _get_sidecar_url("redoc/bundles/redoc.standalone.js")
        return SpectacularRedocView._redoc_standalone()
