"""``GET <prefix>api/hooks/``: the hooks this site offers plugins (``hooks.declare``).

Apart from the plugin views because it reads no database: the catalogue is what the site's code
declared in this process. The same rule as the capability list guards it (``view_plugin``), so a
script that may see plugins may see where they can plug in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import hooks
from .. import permissions as policy
from . import permissions as perms
from .base import APIBase
from .openapi import COMMON_ERRORS, errors, extend_schema


class HookArgSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)


class DeclaredHookSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=hooks.KINDS)
    description = serializers.CharField(allow_blank=True)
    args = HookArgSerializer(many=True, help_text="what the hook passes, in order (a filter's first "
                                                  "argument is the value it filters)")


class HookCatalogueView(APIBase, APIView):
    """The hook catalogue: every hook the site declares, sorted by name. Hooks fired without a
    declaration still run; they are just not listed."""

    permission_classes = [perms.PolicyPermission]

    def permission_rule(self, request: Request) -> Callable[[Any], bool]:
        return policy.can_view_plugins

    @extend_schema(summary="List the hooks this site offers plugins",
                   responses={200: DeclaredHookSerializer(many=True), **errors(*COMMON_ERRORS)})
    def get(self, request: Request) -> Response:
        return Response([hook.as_dict() for hook in hooks.catalogue()])
