"""DRF's side of the one permission policy (:mod:`gonext_plugins.permissions`).

Each view names, per action, the ``can_*`` function that guards it (``permission_rule``); the
rules themselves live in the policy module, so a role means the same here as in the admin.
Anonymous requests get 401 (the API's views put token authentication first, so DRF can answer
with ``WWW-Authenticate: Token``); signed-in users the policy refuses get 403. Rules that depend on
the request body (installing with activation or grants) are asked again by the view once the body
is parsed (``APIBase.require``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .. import permissions as policy


class PolicyPermission(BasePermission):
    """Asks the ``can_*`` function the view's ``permission_rule(request)`` names."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return policy.is_signed_in(user) and bool(view.permission_rule(request)(user))
