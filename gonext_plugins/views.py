"""Views of the plugin app."""

from __future__ import annotations

import ipaddress

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, render
from django_prometheus.exports import ExportToDjangoView

from . import permissions as policy
from .conf import settings
from .models import Plugin


def _is_loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for those who may view plugins or (when allowed) scrapers on loopback
    only: plugin names, call counts and fault counts are not for the public."""
    user = getattr(request, "user", None)
    if policy.can_view_metrics(user) or (settings.METRICS_ALLOW_LOOPBACK and _is_loopback(request)):
        return ExportToDjangoView(request)
    return HttpResponseForbidden("metrics are for users who may view plugins, or loopback scrapers\n")


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
        "ws_path": f"/_/plugins/dev/logs/{plugin.slug}/",
    }
    return render(request, "gonext_plugins/log_page.html", context)
