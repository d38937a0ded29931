"""Permissions mapped onto the model permissions the admin uses, so one role works in both.

Reading needs ``gonext_plugins.view_plugin``; each operation needs the custom permission that
guards it in the admin. Anonymous requests get 401 (the API's views put token authentication
first, so DRF can answer with ``WWW-Authenticate: Token``); signed-in users without the
permission get 403.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

APP = "gonext_plugins"
VIEW = f"{APP}.view_plugin"
INSTALL = f"{APP}.install_plugin"
ACTIVATE = f"{APP}.activate_plugin"
GRANT = f"{APP}.grant_capability"
LOGS = f"{APP}.view_plugin_logs"


class ModelActionPermission(BasePermission):
    """The view names the permission each action needs through ``required_permission(request)``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        needed = view.required_permission(request)
        return needed is None or user.has_perm(needed)


class IsSuperuser(BasePermission):
    """Trusted publisher keys decide what code may run at all: superusers only."""

    message = "Only superusers may manage trusted publisher keys."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_superuser)
