"""The plugin page's "Roll out" controls: staff only, a percentage of visitors, promote, roll back,
and the cohorts' figures against the thresholds. A mixin of ``PluginAdmin`` (one POST view) and
the context its template part (``plugin/rollout.html``) reads; every change goes through
:mod:`gonext_plugins.lifecycle.rollout`."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404

from .. import lifecycle, rollout
from .. import permissions as policy
from ..errors import InvalidRollout, PluginError
from ..models import Plugin, PluginRollout, PluginState


def rollout_context(plugin: Plugin, user: Any) -> dict[str, Any]:
    """What the rollout part of the plugin page shows, and whether its buttons do."""
    current = rollout.state(plugin.slug)
    return {"rollout": current, "rollout_figures": current["figures"] if current else None,
            "can_roll_out": policy.can_roll_out(user),
            "rollout_startable": current is None and plugin.state != PluginState.ACTIVE
            and plugin.active_version_id is not None}


def percent_of(text: str) -> int:
    """A posted percentage as a number (the range is ``lifecycle.rollout``'s to judge)."""
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidRollout("the percentage must be a whole number from 1 to 99") from exc


class RolloutAdminViews:
    """``rollout_view``: one POST with ``action`` = staff, percent (+ ``percent``), promote or rollback."""

    def _plugin_url(self, plugin: Plugin) -> str:  # PluginAdminViews defines it; here for mypy
        raise NotImplementedError

    def rollout_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not policy.can_roll_out(request.user):
            raise PermissionDenied
        plugin = get_object_or_404(Plugin, pk=object_id)
        if request.method != "POST":
            return HttpResponseRedirect(self._plugin_url(plugin))
        action = request.POST.get("action", "")
        try:
            if action == "promote":
                in_rollout = PluginRollout.objects.filter(plugin=plugin).exists()
                if plugin.state == PluginState.ACTIVE and not in_rollout:
                    # Promoted already (a second click, another tab): the state asked for is there.
                    messages.info(request, f"{plugin.name} already runs for everyone: nothing to promote.")
                    return HttpResponseRedirect(self._plugin_url(plugin))
                lifecycle.rollout.promote(plugin, request.user)
                messages.success(request, f"{plugin.name} now runs for everyone.")
            elif action == "rollback":
                result = lifecycle.rollout.roll_back(plugin, request.user,
                                                     reason=request.POST.get("reason", "")[:400])
                back = (f"everyone runs {result.version.version} again" if result.version is not None
                        and result.plugin.state == PluginState.ACTIVE else "it is deactivated")
                messages.success(request, f"{plugin.name}'s rollout is rolled back: {back}.")
            elif action in ("staff", "percent"):
                percent = percent_of(request.POST.get("percent", "")) if action == "percent" else None
                result = lifecycle.rollout.start(plugin, request.user, mode=action, percent=percent)
                cohort = "staff only" if action == "staff" else f"{percent}% of visitors"
                if result.changed:
                    messages.success(request, f"{plugin.name} is rolling out to {cohort}.")
                else:
                    messages.info(request, f"{plugin.name} already rolls out to {cohort}.")
            else:
                raise InvalidRollout(f"unknown rollout action {action!r}")
        except PluginError as exc:
            messages.error(request, f"No rollout change: {exc.message}")
        return HttpResponseRedirect(self._plugin_url(plugin))
