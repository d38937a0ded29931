"""Refuse oversized request bodies in Django, for servers that hand Django the body as a stream.

Under WSGI (gunicorn, mod_wsgi) Django reads the body lazily, so checking the declared length here
refuses a huge upload before it is read. Under ASGI the body is already buffered when any Django
middleware runs: there, :class:`gonext_plugins.asgi.RequestBodyLimit` does the real work, and this
middleware only repeats the same rule (``check_declared_length``) as a second line.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from .asgi import check_declared_length, parse_content_length
from .errors import RequestTooLarge


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_declared_length(parse_content_length(request.META.get("CONTENT_LENGTH")))
        except RequestTooLarge as error:
            return JsonResponse(error.as_dict(), status=413)
        return self.get_response(request)
