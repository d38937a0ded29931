"""The API of a staged rollout: ``GET/POST /plugins/{slug}/rollout/`` (state and figures; start or
change it), ``POST .../rollout/promote/`` and ``POST .../rollout/rollback/``. A mixin of
:class:`~gonext_plugins.api.views.PluginViewSet`, so the routes, the permission rules and the one
error shape are the viewset's."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from .. import lifecycle, rollout
from ..models import Plugin, RolloutMode
from .openapi import COMMON_ERRORS, SLUG_PARAM, WRITE_ERRORS, errors, extend_schema
from .serializers import BodySerializer


class RolloutRequestSerializer(BodySerializer):
    mode = serializers.ChoiceField(choices=RolloutMode.choices, help_text="staff, or percent of visitors")
    percent = serializers.IntegerField(required=False, min_value=1, max_value=99,
                                       help_text="percent mode: the share of visitors, 1-99")
    version = serializers.CharField(required=False, max_length=64,
                                    help_text="roll out an upgrade to this installed version, newer than "
                                              "the running one (the others keep running it)")


class RollbackRequestSerializer(BodySerializer):
    reason = serializers.CharField(required=False, max_length=400, help_text="kept in the audit row")


class RolloutStateSerializer(serializers.Serializer):
    """``rollout`` is null when the plugin is in none."""

    slug = serializers.CharField()
    state = serializers.CharField(help_text="the plugin's state")
    rollout = serializers.DictField(allow_null=True, help_text="mode, percent, version, upgrade, "
                                    "previous_version (an upgrade: what the others run), started_at, "
                                    "started_by and figures (cohort requests, mean/p50 ms, added_ms, "
                                    "calls, faults, fault_rate, and the thresholds)")


def rollout_state(plugin: Plugin) -> dict[str, Any]:
    plugin.refresh_from_db(fields=["state"])
    return {"slug": plugin.slug, "state": plugin.state, "rollout": rollout.state(plugin.slug)}


class RolloutActions:
    """The rollout endpoints of the plugin viewset (``get_object`` and ``_actor`` are its own)."""

    get_object: Any

    @extend_schema(summary="A plugin's staged rollout: read it, or start or change it",
                   parameters=[SLUG_PARAM], request=RolloutRequestSerializer,
                   responses={200: RolloutStateSerializer,
                              **errors(*WRITE_ERRORS, e409="rollout_error: already active for everyone, "
                                        "another rollout runs, or the version is not newer")})
    @action(detail=True, methods=["get", "post"], url_path="rollout")
    def rollout(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        if request.method == "POST":
            form = RolloutRequestSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            lifecycle.rollout.start(plugin, request.user, mode=form.validated_data["mode"],
                                    percent=form.validated_data.get("percent"),
                                    version=form.validated_data.get("version"))
        return Response(rollout_state(plugin))

    @extend_schema(summary="Promote a rollout: the plugin runs for every request", request=None,
                   parameters=[SLUG_PARAM], responses={200: RolloutStateSerializer,
                                                       **errors(*COMMON_ERRORS, e409="rollout_error")})
    @action(detail=True, methods=["post"], url_path="rollout/promote")
    def rollout_promote(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        lifecycle.rollout.promote(plugin, request.user)
        return Response(rollout_state(plugin))

    @extend_schema(summary="Roll a rollout back: the plugin is deactivated (an upgrade: back to the "
                           "previous version)", parameters=[SLUG_PARAM],
                   request=RollbackRequestSerializer,
                   responses={200: RolloutStateSerializer, **errors(*WRITE_ERRORS, e409="rollout_error")})
    @action(detail=True, methods=["post"], url_path="rollout/rollback")
    def rollout_rollback(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        form = RollbackRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        lifecycle.rollout.roll_back(plugin, request.user, reason=form.validated_data.get("reason", ""))
        return Response(rollout_state(plugin))
