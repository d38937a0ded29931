"""Views of the plugin app."""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django_prometheus.exports import ExportToDjangoView

from .conf import settings


def _is_loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for staff or (when allowed) scrapers on loopback only: plugin names,
    call counts and fault counts are not for the public."""
    user = getattr(request, "user", None)
    if (user is not None and user.is_staff) or (settings.METRICS_ALLOW_LOOPBACK and _is_loopback(request)):
        return ExportToDjangoView(request)
    return HttpResponseForbidden("metrics are for staff or loopback scrapers only\n")
