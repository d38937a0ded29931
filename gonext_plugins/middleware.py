"""Request and response guards, for the Django side of the stack.

``RequestSizeLimitMiddleware`` refuses oversized request bodies by their declared length. Under
WSGI (gunicorn, mod_wsgi) Django reads the body lazily, so this refuses a huge upload before it is
read. Under ASGI the body is already buffered when any Django middleware runs: there,
:class:`gonext_plugins.asgi.RequestBodyLimit` does the real work, and this middleware only repeats
the same rule (``check_declared_length``) as a second line.

``RolloutMiddleware`` decides once per request which plugins in a staged rollout it runs (see
:mod:`gonext_plugins.rollout`); place it after ``AuthenticationMiddleware`` (staff-only rollouts
read ``request.user``).

``ContentSecurityPolicyMiddleware`` sends a strict Content-Security-Policy on the admin's and this
app's responses: should markup ever reach those pages unsanitized, the browser still runs no inline
or foreign script there, so it cannot use an admin's session against the API.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import rollout
from .asgi import check_declared_length, parse_content_length
from .conf import settings
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


class RolloutMiddleware:
    """Run each plugin in rollout only for its cohort, time the request for the rollout's figures,
    and give a visitor of a percent rollout the cookie that keeps them on their side."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        decision = rollout.begin(getattr(request, "user", None), request.COOKIES.get(rollout.COOKIE))
        if decision is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        finally:
            rollout.finish(decision)
        if decision.set_cookie:
            response.set_cookie(rollout.COOKIE, decision.visitor, max_age=rollout.COOKIE_MAX_AGE,
                                httponly=True, samesite="Lax", secure=request.is_secure())
        return response
