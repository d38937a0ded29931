"""``POST /_/plugins/dev/install``: where ``manage.py plugin dev`` uploads each build.

A DRF view so it shares the API's authentication (a token, or a staff session with its CSRF
check), throttling and error shape; only the route lives outside ``/api/``, because this endpoint
exists only in dev mode. Outside dev mode it answers 404 before authenticating, so a production
site does not even reveal it. The work is :func:`gonext_plugins.lifecycle.dev_install`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import lifecycle
from . import permissions as policy
from .api.openapi import extend_schema
from .api.serializers import BodySerializer
from .api.views import APIBase
from .conf import settings

MAX_PART_BYTES = 10 * 1024 * 1024
"""Each part is capped like a whole bundle (``bundle.read`` applies the configured caps too)."""


class DevInstallPermission(BasePermission):
    """:func:`~gonext_plugins.permissions.can_dev_install` (a dev install grants everything the
    manifest asks for and activates: install, grant and activate), and a staff account when signed
    in by session (the admin's rule); a token already names a user an admin chose to give one."""

    message = f"Installing dev builds needs the permissions {', '.join(policy.DEV_INSTALL)}."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not policy.can_dev_install(user):
            return False
        by_session = isinstance(request.successful_authenticator, SessionAuthentication)
        return policy.can_use_admin_pages(user) or not by_session


class DevInstallSerializer(BodySerializer):
    manifest = serializers.FileField(help_text="manifest.json")
    wasm = serializers.FileField(help_text="the compiled plugin.wasm")

    def _read(self, upload: Any, name: str) -> bytes:
        if upload.size > MAX_PART_BYTES:
            raise serializers.ValidationError(f"{name} is over {MAX_PART_BYTES:,} bytes")
        return upload.read()

    def validate_manifest(self, upload: Any) -> bytes:
        return self._read(upload, "manifest.json")

    def validate_wasm(self, upload: Any) -> bytes:
        return self._read(upload, "plugin.wasm")


class DevInstallAnswerSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["installed", "replaced", "unchanged"])
    plugin = serializers.CharField()
    version = serializers.CharField(help_text="<manifest version>+dev.<build id>")
    state = serializers.CharField()
    capabilities = serializers.DictField(help_text="granted, added, removed")
    removed_versions = serializers.ListField(child=serializers.CharField())
    detail = serializers.CharField()


class DevInstallView(APIBase, APIView):
    """Install or replace a plugin's dev build and run it (dev mode only)."""

    parser_classes = [MultiPartParser]
    permission_classes = [DevInstallPermission]
    body_actions = frozenset({"post"})

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if not settings.DEV_MODE:  # before authentication: a production site shows nothing here
            raise NotFound("There is no dev install endpoint: dev mode is off.")
        super().initial(request, *args, **kwargs)

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        form = DevInstallSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        data = form.validated_data
        result = lifecycle.dev_install(data["manifest"], data["wasm"], request.user)
        plugin, version = result.plugin, result.version
        assert version is not None
        detail = {"installed": f"installed and activated {version.version}",
                  "replaced": f"now serving {version.version}",
                  "unchanged": f"{version.version} was already installed"}[result.status]
        if result.reactivated:
            detail += " (re-activated)"
        answer = {
            "status": result.status, "plugin": plugin.slug, "version": version.version,
            "state": plugin.state, "detail": detail,
            "capabilities": {"granted": list(result.granted), "added": list(result.added),
                             "removed": list(result.removed)},
            "removed_versions": list(result.removed_versions),
        }
        code = status.HTTP_201_CREATED if result.status == "installed" else status.HTTP_200_OK
        return Response(answer, status=code)
