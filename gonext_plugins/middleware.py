"""Refuse oversized request bodies before Django reads them.

Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` does not count file parts, so a multi-gigabyte bundle
upload would be spooled to disk before the bundle reader could refuse it. This checks the declared
length up front and answers 413 at once.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from .conf import settings


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.MAX_REQUEST_BYTES
        if length > limit:
            return JsonResponse(
                {
                    "error": "request_too_large",
                    "detail": f"The request body is {length} bytes; the limit is {limit} bytes.",
                    "problems": [],
                },
                status=413,
            )
        return self.get_response(request)
