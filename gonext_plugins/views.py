"""Views of the plugin app."""

from __future__ import annotations

import hmac
import ipaddress

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django_prometheus.exports import ExportToDjangoView

from . import permissions as policy
from . import state_metrics  # noqa: F401  (registers the plugin state figures /metrics serves)
from .conf import settings
from .errors import error_body
from .models import Plugin


def _has_metrics_token(request: HttpRequest) -> bool:
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    offered = given.strip().encode()
    # compare with every token, so the time taken does not say which one (or how much) matched
    matches = [hmac.compare_digest(offered, str(token).encode()) for token in settings.METRICS_TOKENS]
    return any(matches)


def _from_allowed_address(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_networks)


def may_read_metrics(request: HttpRequest) -> bool:
    """A user who may view plugins, a scraper with a configured bearer token, or a client at a
    configured address. Never "anything on loopback": behind a reverse proxy on the same host, that
    is everyone."""
    return bool(policy.can_view_metrics(getattr(request, "user", None)) or _has_metrics_token(request)
                or _from_allowed_address(request))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: plugin names, call counts and fault counts are not for the public."""
    if may_read_metrics(request):
        return ExportToDjangoView(request)
    return HttpResponseForbidden("metrics are for users who may view plugins, or scrapers configured in "
                                 "GONEXT_PLUGINS['METRICS_TOKENS'] or ['METRICS_ALLOWED_ADDRESSES']\n")


@staff_member_required
def log_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The live log page of one plugin. The page is only a shell: lines come over the WebSocket,
    which checks the same permission again (a page left open must not outlive a revoked grant)."""
    if not policy.can_view_logs(request.user):
        raise PermissionDenied("You may not watch plugin logs.")
    plugin = get_object_or_404(Plugin.objects.select_related("active_version"), slug=slug)
    context = {
        **admin.site.each_context(request),
        "title": f"Log: {plugin.name}",
        "is_nav_sidebar_enabled": False,  # the log needs the width; the sidebar adds nothing here
        "plugin": plugin,
        "opts": Plugin._meta,
        "ws_path": reverse("gonext_plugins:log_stream", kwargs={"slug": plugin.slug}),
    }
    return render(request, "gonext_plugins/log_page.html", context)


def websocket_only(request: HttpRequest, slug: str) -> HttpResponse:
    """The live log stream's URL over plain HTTP: it exists (so the log page reverses it under any
    prefix) but speaks only WebSocket."""
    response = JsonResponse(error_body("upgrade_required", "This URL speaks WebSocket only."), status=426)
    response["Upgrade"] = "websocket"
    return response
