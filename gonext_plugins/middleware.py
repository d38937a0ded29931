"""Request and response guards.

``RequestSizeLimitMiddleware`` refuses oversized request bodies before Django reads them:
Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` does not count file parts, so a multi-gigabyte bundle
upload would be spooled to disk before the bundle reader could refuse it. This checks the declared
length up front and answers 413 at once.

``ContentSecurityPolicyMiddleware`` sends a strict Content-Security-Policy on the admin's and this
app's responses: should markup ever reach those pages unsanitized, the browser still runs no inline
or foreign script there, so it cannot use an admin's session against the API.
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


class ContentSecurityPolicyMiddleware:
    """Add ``CONTENT_SECURITY_POLICY`` to responses of views in ``CONTENT_SECURITY_POLICY_NAMESPACES``.

    Keyed on the resolved URL namespace, not a path prefix, so it holds wherever the site mounts
    the admin and this app. A response that already carries a policy keeps its own.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        match = getattr(request, "resolver_match", None)
        if (policy and match is not None and "Content-Security-Policy" not in response
                and set(match.namespaces) & set(settings.CONTENT_SECURITY_POLICY_NAMESPACES)):
            response["Content-Security-Policy"] = policy
        return response
