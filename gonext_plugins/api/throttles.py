"""Scoped throttling: reads and writes have their own budgets per user (or client address).

Rates come from ``REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']`` under the scopes
``gonext_plugins.read`` and ``gonext_plugins.write``, read at request time (DRF's own throttles
bind the rates at import, so ``override_settings`` would not reach them). A scope without a rate
falls back to :data:`DEFAULT_RATES`. Counts live in the ``SHARED_CACHE`` when the site names one,
so a budget holds across every web process; otherwise in the default cache, as DRF's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django.core.cache import cache as default_cache
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from ..cluster import shared_cache

READ_SCOPE = "gonext_plugins.read"
WRITE_SCOPE = "gonext_plugins.write"
DEFAULT_RATES = {READ_SCOPE: "600/min", WRITE_SCOPE: "120/min"}


class PluginAPIThrottle(ScopedRateThrottle):
    """Reads (GET, HEAD, OPTIONS) and writes counted separately, per authenticated user."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = READ_SCOPE if request.method in SAFE_METHODS else WRITE_SCOPE
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.cache = shared_cache() or default_cache  # read per request: override_settings reaches it
        return super(ScopedRateThrottle, self).allow_request(request, view)

    def get_rate(self) -> str | None:
        assert self.scope is not None  # allow_request, the only caller, has just set it
        # The stubs type the rates as numbers; DRF's are "count/period" strings (or None).
        rates = cast("Mapping[str, str | None]", api_settings.DEFAULT_THROTTLE_RATES or {})
        return rates.get(self.scope, DEFAULT_RATES.get(self.scope))
