"""The OpenAPI descriptions the views share: the error responses and the slug parameter, and the
``extend_schema`` every view of the app uses."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from drf_spectacular.utils import extend_schema as spectacular_extend_schema

from . import serializers as s

ERROR = s.ErrorSerializer

F = TypeVar("F", bound=Callable[..., Any])


def extend_schema(**kwargs: Any) -> Callable[[F], F]:
    """drf-spectacular's ``extend_schema``, always built on drf-spectacular's ``AutoSchema``. On a
    view method it would otherwise subclass the site's ``DEFAULT_SCHEMA_CLASS`` (read when the
    module is imported), and with DRF's default there the schema fails (``get_operation() takes 3
    positional arguments but 6 were given``)."""
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(f: F) -> F:
        first = inspect.isfunction(f) and not (getattr(f, "kwargs", None) or {}).get("schema")
        if not first:
            return decorate(f)
        f.schema = AutoSchema  # type: ignore[attr-defined]  # the base extend_schema looks for first
        try:
            return decorate(f)
        finally:
            del f.schema  # type: ignore[attr-defined]  # the one set above

    return decorator


def errors(*codes: int, **described: str) -> dict[int, OpenApiResponse]:
    """Error responses for ``extend_schema``, each in the one error shape."""
    out = {code: OpenApiResponse(ERROR, description="refused; see `error` for why") for code in codes}
    for code, text in described.items():
        out[int(code.lstrip("e"))] = OpenApiResponse(ERROR, description=text)
    return out


SLUG_PARAM = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH,
                              description="the plugin's slug", pattern=r"^[a-z][a-z0-9-]*$")
COMMON_ERRORS = (400, 401, 403, 404, 406, 429)
WRITE_ERRORS = (*COMMON_ERRORS, 413, 415)
