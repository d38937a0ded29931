"""One error shape for every refusal the API makes, DRF's own included.

``{"error": "<code>", "detail": "<sentence>", "problems": [...]}``: clients branch on ``error``,
show ``detail`` to a person, and read ``problems`` for the itemised reasons (manifest paths,
request fields, capabilities still to grant). No Python traceback ever reaches a client: an
unexpected exception is logged here and answered with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import (
    PermissionDenied as DjangoPermissionDenied,
)
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from .. import capabilities
from ..db_outage import DATABASE_DOWN, RETRY_AFTER_SECONDS
from ..errors import (
    BlobStorageUnavailable,
    BundleError,
    ConsentRequired,
    DatabaseUnavailable,
    InvalidPreviewPath,
    InvalidRollout,
    InvalidSettings,
    KeyNotFound,
    LifecycleError,
    ManifestError,
    PluginError,
    PluginExists,
    PluginNotFound,
    SignatureError,
    UnknownCapability,
    VersionConflict,
    error_body,
)

logger = logging.getLogger("gonext_plugins.api")

# Most specific first: the first class an error is an instance of decides its status.
PLUGIN_ERROR_STATUS: tuple[tuple[type[PluginError], int], ...] = (
    (PluginNotFound, status.HTTP_404_NOT_FOUND),
    (BlobStorageUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (KeyNotFound, status.HTTP_404_NOT_FOUND),
    (InvalidSettings, status.HTTP_400_BAD_REQUEST),
    (InvalidPreviewPath, status.HTTP_400_BAD_REQUEST),
    (InvalidRollout, status.HTTP_400_BAD_REQUEST),
    (ConsentRequired, status.HTTP_409_CONFLICT),
    (PluginExists, status.HTTP_409_CONFLICT),
    (VersionConflict, status.HTTP_409_CONFLICT),
    (LifecycleError, status.HTTP_409_CONFLICT),
    (BundleError, status.HTTP_400_BAD_REQUEST),
    (ManifestError, status.HTTP_400_BAD_REQUEST),
    (SignatureError, status.HTTP_400_BAD_REQUEST),
    (UnknownCapability, status.HTTP_400_BAD_REQUEST),
)

# DRF's default codes, renamed where the default says less than it could.
DRF_CODES = {"invalid": "invalid_request", "error": "invalid_request"}


def status_for(exc: PluginError) -> int:
    for cls, code in PLUGIN_ERROR_STATUS:
        if isinstance(exc, cls):
            return code
    # A runtime refusal met while activating (the wasm cannot load here, ...): the request was
    # well-formed, the plugin's state or content is what stands in the way.
    return status.HTTP_409_CONFLICT


def plugin_error_body(exc: PluginError) -> dict[str, Any]:
    data = exc.as_dict()
    if isinstance(exc, ConsentRequired) and exc.missing:
        # Say what each missing capability allows, so a client can ask a person for consent.
        data["problems"] = [
            {"capability": cap.name, "description": cap.description, "risk": cap.risk}
            for cap in capabilities.describe(exc.missing)
        ]
    if exc.plugin:
        data.setdefault("plugin", exc.plugin)
    return data


def _flatten(detail: Any, path: str = "") -> Iterator[dict[str, str]]:
    """DRF's nested validation errors as ``[{"path", "message", "code"}]``."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            yield from _flatten(value, f"{path}.{name}" if path and name else (path or name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            for item in detail:
                yield {"path": path or "$", "message": str(item), "code": getattr(item, "code", "invalid")}
        else:
            for index, item in enumerate(detail):
                yield from _flatten(item, f"{path}[{index}]")
    else:
        yield {"path": path or "$", "message": str(detail), "code": getattr(detail, "code", "invalid")}


def _api_exception_body(exc: exceptions.APIException) -> dict[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        problems = list(_flatten(exc.detail))
        if len(problems) == 1:
            only = problems[0]
            sentence = f"{only['path']}: {only['message']}" if only["path"] != "$" else only["message"]
            detail = f"The request is invalid: {sentence}"
        else:
            detail = f"The request has {len(problems)} problems: " + "; ".join(
                f"{p['path']}: {p['message']}" for p in problems
            )
        return error_body("invalid_request", detail, problems)
    code = exc.default_code if isinstance(exc.default_code, str) else "error"
    if isinstance(exc.detail, dict | list):
        problems = list(_flatten(exc.detail))
        detail = "; ".join(p["message"] for p in problems) or str(exc.default_detail)
    else:
        problems, detail = [], str(exc.detail)
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.Throttled):
        wait: float | None = exc.wait  # type: ignore[attr-defined]  # set by __init__; the stubs miss it
        if wait is not None:
            extra["retry_after"] = int(wait + 0.999)
    return error_body(DRF_CODES.get(code, code), detail, problems, **extra)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The API views' exception handler (``api.base.OwnPolicy``, never the site's
    ``REST_FRAMEWORK``): every exception a view raises becomes the one shape."""
    if isinstance(exc, PluginError):
        set_rollback()
        return Response(plugin_error_body(exc), status=status_for(exc))
    if isinstance(exc, DATABASE_DOWN):
        set_rollback()
        return Response(DatabaseUnavailable().as_dict(), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, RequestDataTooBig):
        exc = _RequestTooLarge()
    elif isinstance(exc, TooManyFilesSent | TooManyFieldsSent):
        exc = exceptions.ParseError(f"The request has too many parts: {exc}")
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("The request was refused as malformed.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        response = drf_exception_handler(exc, context)  # sets WWW-Authenticate / Retry-After, rollback
        assert response is not None
        response.data = _api_exception_body(exc)
        return response
    view = context.get("view")
    logger.exception("unexpected error in %s", type(view).__name__ if view else "an API view")
    set_rollback()
    return Response(
        error_body("server_error", "The server could not complete the request; the error has been "
                   "logged. Try again, and report it if it persists."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class _RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is over the size limit."
    default_code = "request_too_large"


def not_found_json(request: HttpRequest) -> JsonResponse:
    """A 404 in the API's shape for paths under the API prefix that match no route."""
    return JsonResponse(
        error_body("not_found", f"There is no API endpoint at {request.path}."),
        status=404,
    )
