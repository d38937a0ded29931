"""What every view of the API shares (the plugin API's views and the dev-mode upload view)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.metadata import BaseMetadata, SimpleMetadata
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.pagination import BasePagination
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission, IsAuthenticated, OperandHolder, SingleOperandHolder
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.throttling import BaseThrottle
from rest_framework.versioning import BaseVersioning

from .exceptions import exception_handler
from .parsers import UntrustedJSONParser
from .throttles import PluginAPIThrottle

# What APIView.permission_classes holds: permission classes, or their combinations (A & B, ~A).
PermissionClasses: TypeAlias = Sequence[type[BasePermission] | OperandHolder | SingleOperandHolder]


class OwnPolicy:
    """DRF's pluggable policies, fixed on the view instead of read from the site's
    ``REST_FRAMEWORK``: the site's settings shape its own API, never ours. The API answers the same
    whatever the site chose there (its exception handler, schema class, default permission,
    renderers, authentication, pagination, versioning); the throttle rates alone stay the site's to
    tune (``gonext_plugins.api.throttles``)."""

    # Typed as APIView types them, so that the views mixing this in agree with it. The schema is
    # drf-spectacular's, whatever the site's DEFAULT_SCHEMA_CLASS is.
    content_negotiation_class: type[BaseContentNegotiation] = DefaultContentNegotiation
    metadata_class: str | type[BaseMetadata] | None = SimpleMetadata
    versioning_class: type[BaseVersioning] | None = None
    schema: ViewInspector | None = AutoSchema()

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        """The API's one error shape, whatever the site's ``EXCEPTION_HANDLER``."""
        return exception_handler


class APIBase(OwnPolicy):
    """What every view of the API shares: token first (so anonymous requests get 401 with
    ``WWW-Authenticate: Token``), then the admin's session; JSON in and out; signed-in users only
    unless a view says more; no pagination unless a view has its own; scoped throttling."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [TokenAuthentication, SessionAuthentication]
    permission_classes: PermissionClasses = [IsAuthenticated]
    parser_classes: Sequence[type[BaseParser]] = [UntrustedJSONParser]
    renderer_classes: Sequence[type[BaseRenderer]] = [JSONRenderer]
    pagination_class: type[BasePagination] | None = None
    throttle_classes: Sequence[type[BaseThrottle]] = [PluginAPIThrottle]
    query_params: dict[str, tuple[str, ...]] = {}  # "<action or method>" -> the names it takes
    # "<action or method>" that read a body (through a ``serializers.BodySerializer``, which refuses
    # unknown fields); every other write must come without one.
    body_actions: frozenset[str] = frozenset()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """After authentication, permissions and throttling: refuse unknown query parameters and
        body fields, so a typo (``?keepdata=true``) is reported instead of silently changing what a
        call does."""
        super().initial(request, *args, **kwargs)  # type: ignore[misc]  # a mixin: APIView has it
        method = (request.method or "").lower()
        key = getattr(self, "action", None) or method
        if key == "grants":
            key = f"grants.{method}"
        allowed = self.query_params.get(key, ())
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            takes = f"this endpoint takes {', '.join(allowed)}" if allowed else "this endpoint takes none"
            raise ValidationError({name: [f"unknown query parameter ({takes})"] for name in unknown})
        if request.method not in ("GET", "HEAD", "OPTIONS") and key not in self.body_actions and request.data:
            fields = list(request.data.keys()) if hasattr(request.data, "keys") else []
            raise ValidationError({name: ["unknown field (this endpoint takes no body)"] for name in fields}
                                  or ["this endpoint takes no body"])

    def require(self, allowed: bool, needed: list[str]) -> None:
        """Refuse (403) what the policy refuses once the body is known, naming every permission
        the request needs: installing with activation or grants needs more than installing."""
        if not allowed:
            raise PermissionDenied(f"This request needs the permissions {', '.join(needed)}.")
