"""The OpenAPI descriptions the views share: the error responses and the slug parameter."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from . import serializers as s

ERROR = s.ErrorSerializer


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
