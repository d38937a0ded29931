"""Request and response guards, for the Django side of the stack.

``RequestSizeLimitMiddleware`` refuses oversized request bodies by their declared length. Under
WSGI (gunicorn, mod_wsgi) Django reads the body lazily, so this refuses a huge upload before it is
read. Under ASGI the body is already buffered when any Django middleware runs: there,
:class:`gonext_plugins.asgi.RequestBodyLimit` does the real work, and this middleware only repeats
the same rule (``check_declared_length``) as a second line.

``DatabaseUnavailableMiddleware`` answers a request that met a database outage (a restart, a
failover: ``OperationalError``/``InterfaceError``) with a 503 in the app's one error shape and a
``Retry-After``, never a traceback or a 500 page; the next request opens a new connection, so pages
recover by themselves when the database is back.
``RolloutMiddleware`` decides once per request which plugins in a staged rollout it runs (see
:mod:`gonext_plugins.rollout`); place it after ``AuthenticationMiddleware`` (staff-only rollouts
read ``request.user``).

``ContentSecurityPolicyMiddleware`` sends a strict Content-Security-Policy on the admin's and this
app's responses: should markup ever reach those pages unsanitized, the browser still runs no inline
or foreign script there, so it cannot use an admin's session against the API.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import rollout
from .asgi import check_declared_length, parse_content_length
from .conf import settings
from .db_outage import DATABASE_DOWN, RETRY_AFTER_SECONDS
from .errors import DatabaseUnavailable, RequestTooLarge

_DATABASE_DOWN_FLAG = "_gonext_database_down"


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


def database_unavailable_response() -> JsonResponse:
    """The 503 every interface answers during a database outage (the one error shape)."""
    response = JsonResponse(DatabaseUnavailable().as_dict(), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """A database outage is a 503 with ``Retry-After``, not a 500. Views' errors arrive through
    ``process_exception``; an error in another middleware (the session saved on the way out) has
    already become Django's 500 by the time it reaches this one, so the ``got_request_exception``
    receiver below marks such a request and the 500 is replaced here. Put it first in
    ``MIDDLEWARE`` (after django-prometheus' "before" middleware) so it wraps all the others."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, _DATABASE_DOWN_FLAG, False):
            return database_unavailable_response()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            return database_unavailable_response()
        return None


def _mark_database_down(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Sent by Django while it turns an exception into a 500; the exception is the one being handled."""
    if request is not None and isinstance(sys.exc_info()[1], DATABASE_DOWN):
        setattr(request, _DATABASE_DOWN_FLAG, True)


got_request_exception.connect(_mark_database_down, dispatch_uid="gonext_plugins.database_down")


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
