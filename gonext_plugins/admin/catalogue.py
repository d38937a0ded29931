"""The admin's "Hooks this site offers" page: the site's hook catalogue (``hooks.declare``), with
the active plugins subscribed to each hook, and the hooks active plugins subscribe to that the site
does not offer (they never run unless site code fires them undeclared).

Why in the admin: the admin is where someone decides to install a plugin; the install dialog marks
a manifest's hooks the site does not offer and links here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from .. import hooks
from .. import permissions as policy
from ..models import Plugin, PluginState
from ._common import AdminViewsMixin


class HookCatalogueAdminViews(AdminViewsMixin):
    """The catalogue page of ``PluginAdmin`` (``<changelist>/hooks/``); who may see plugins may
    see it (``can_view_plugins``, as the API's ``hooks/``)."""

    def hooks_view(self, request: HttpRequest) -> HttpResponse:
        if not policy.can_view_plugins(request.user):
            raise PermissionDenied
        return self._render(request, "admin/gonext_plugins/plugin/hooks.html", "Hooks this site offers",
                            **catalogue_context())


def catalogue_context() -> dict[str, Any]:
    """The declared hooks with the active plugins on each, and what active plugins want undeclared."""
    users: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    active = (Plugin.objects.filter(state=PluginState.ACTIVE).select_related("active_version")
              .order_by("slug"))
    for plugin in active:
        manifest = plugin.active_version.manifest if plugin.active_version else {}
        for hook in manifest.get("hooks", []):
            if isinstance(hook, dict):
                users[(str(hook.get("name")), str(hook.get("kind")))].append(plugin.slug)
    declared = hooks.catalogue()
    rows = [{"hook": hook, "plugins": users.get((hook.name, hook.kind), [])} for hook in declared]
    missing = [{"name": name, "kind": kind, "why": why, "plugins": users[(name, kind)]}
               for name, kind, why in hooks.unoffered(sorted(users), declared)]
    return {"rows": rows, "unoffered": missing}
