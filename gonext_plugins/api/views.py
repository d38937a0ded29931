"""The API's views. Each parses the request, asks the permission policy (the same ``can_*``
functions as the admin), calls one ``lifecycle`` function and renders the result; none writes
plugin state itself. One module because the plugin viewset's actions are one resource: most of its
length is the OpenAPI description each action carries beside its code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from .. import bundle as bundle_module
from .. import capabilities, lifecycle, logs, preview
from .. import permissions as policy
from ..errors import PluginNotFound
from ..manifest import version_key
from ..models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginJobRun,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from . import permissions as perms
from . import serializers as s
from .base import APIBase
from .log_serializers import LOG_LEVELS, LogLineSerializer, LogPageSerializer, LogQuerySerializer
from .openapi import COMMON_ERRORS, ERROR, SLUG_PARAM, WRITE_ERRORS, errors, extend_schema
from .pagination import PluginPagination
from .parsers import UntrustedJSONParser
from .rollout import RolloutActions

# Moved to their own modules; named here too, for imports from before the split.
__all__ = ["COMMON_ERRORS", "ERROR", "LOG_LEVELS", "SLUG_PARAM", "WRITE_ERRORS", "APIBase",
           "CapabilityListView", "KeyView", "LogLineSerializer", "LogPageSerializer", "LogQuerySerializer",
           "PluginPagination", "PluginViewSet", "errors"]


def _actor(request: Request) -> Any:
    return request.user


def _plugin_queryset() -> QuerySet[Plugin]:
    return Plugin.objects.select_related("active_version__publisher_key").prefetch_related(
        Prefetch("grants", queryset=CapabilityGrant.objects.select_related("granted_by",
                                                                           "requested_by_version")),
        Prefetch("versions", queryset=PluginVersion.objects.only("id", "plugin_id", "version")),
    )


def _read_bundle(upload: Any) -> bundle_module.Bundle:
    """Check the uploaded file completely (size, zip, manifest, signature); writes nothing."""
    return bundle_module.read(upload)


class PluginViewSet(APIBase, RolloutActions, GenericViewSet):
    """Installed plugins and every lifecycle operation on them."""

    lookup_field = "slug"
    lookup_value_regex = r"[^/]+"
    pagination_class = PluginPagination
    permission_classes = [perms.PolicyPermission]
    serializer_class = s.PluginSerializer
    parser_classes = [UntrustedJSONParser, FormParser, MultiPartParser]
    query_params = {"list": ("state", "page", "page_size"), "audit": ("page", "page_size"),
                    "faults": ("page", "page_size"),
                    "destroy": ("keep_data",), "grants.delete": ("capability",),
                    "logs": ("since", "level", "limit"), "jobs": ("status", "job", "page", "page_size")}
    body_actions = frozenset({"create", "upgrade", "rollback", "grants.post", "plugin_settings", "preview",
                              "rollout", "rollout_rollback"})

    # action -> the policy's rule (GET/POST/DELETE of grants differ by method); create and upgrade
    # are asked again with the parsed body (activation, grants)
    RULES: dict[str, Callable[[Any], bool]] = {
        "list": policy.can_view_plugins, "retrieve": policy.can_view_plugins,
        "versions": policy.can_view_plugins, "faults": policy.can_view_plugins,
        "jobs": policy.can_view_plugins, "audit": policy.can_view_audit,
        "create": policy.can_start_install, "upgrade": policy.can_upgrade,
        "rollback": policy.can_rollback, "destroy": policy.can_uninstall,
        "activate": policy.can_activate, "deactivate": policy.can_activate,
        "logs": policy.can_view_logs, "preview": policy.can_preview,
        "rollout_promote": policy.can_roll_out, "rollout_rollback": policy.can_roll_out,
    }

    def permission_rule(self, request: Request) -> Callable[[Any], bool]:
        if self.action == "plugin_settings" and request.method not in ("GET", "HEAD", "OPTIONS"):
            return policy.can_change_settings
        if self.action == "rollout" and request.method not in ("GET", "HEAD", "OPTIONS"):
            return policy.can_roll_out
        if self.action == "grants":
            reading = request.method in ("GET", "HEAD", "OPTIONS")
            return policy.can_view_plugins if reading else policy.can_grant
        return self.RULES.get(self.action or "", policy.can_view_plugins)

    def get_queryset(self) -> QuerySet[Plugin]:
        return _plugin_queryset()

    def get_parsers(self) -> list[Any]:
        """Install and upgrade take a file: multipart only (a JSON body cannot carry one)."""
        method = ((getattr(self, "request", None) and self.request.method) or "").lower()
        if (getattr(self, "action_map", None) or {}).get(method) in ("create", "upgrade"):
            return [MultiPartParser()]
        return super().get_parsers()

    def get_object(self) -> Plugin:
        slug = self.kwargs["slug"]
        plugin = self.get_queryset().filter(slug=slug).first()
        if plugin is None:
            raise PluginNotFound(f"no plugin {slug!r} is installed", plugin=slug)
        return plugin

    def _result(self, result: lifecycle.Result, code: int = status.HTTP_200_OK) -> Response:
        plugin = _plugin_queryset().get(pk=result.plugin.pk)
        data = s.PluginResultSerializer(plugin, context={"changed": result.changed}).data
        return Response(data, status=code)

    # --- collection -----------------------------------------------------------------------------

    @extend_schema(
        summary="List installed plugins",
        parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=[c for c, _ in PluginState.choices],
                                     description="only plugins in this state")],
        responses={200: s.PluginSerializer(many=True), **errors(*COMMON_ERRORS)},
    )
    def list(self, request: Request) -> Response:
        query = s.PluginFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        plugins = self.get_queryset()
        if query.validated_data.get("state"):
            plugins = plugins.filter(state=query.validated_data["state"])
        page = self.paginate_queryset(plugins)
        return self.get_paginated_response(s.PluginSerializer(page, many=True).data)

    @extend_schema(
        summary="Install a plugin from a signed bundle",
        description="Every required capability must be in `grant`; otherwise 409 `consent_required` "
                    "lists what is still to grant (with each one's description and risk).",
        request={"multipart/form-data": s.InstallSerializer},
        responses={201: s.PluginResultSerializer,
                   **errors(*WRITE_ERRORS, e400="the bundle or its manifest is refused (`problems` "
                            "lists manifest problems with their JSON paths), or the request is invalid",
                            e409="consent_required, plugin_exists, or another lifecycle refusal")},
    )
    def create(self, request: Request) -> Response:
        form = s.InstallSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        self.require(policy.can_install(request.user, activate=data["activate"], grants=data["grant"]),
                     policy.needed_to_install(activate=data["activate"], grants=data["grant"]))
        result = lifecycle.install(_read_bundle(data["bundle"]), data["grant"], _actor(request),
                                   activate=data["activate"], hosts=data.get("hosts"))
        return self._result(result, status.HTTP_201_CREATED)

    # --- one plugin -----------------------------------------------------------------------------

    @extend_schema(summary="Show a plugin", parameters=[SLUG_PARAM],
                   responses={200: s.PluginSerializer, **errors(*COMMON_ERRORS)})
    def retrieve(self, request: Request, slug: str) -> Response:
        return Response(s.PluginSerializer(self.get_object()).data)

    @extend_schema(
        summary="Uninstall a plugin",
        description="Removes its versions and grants, and its kv data unless `keep_data`.",
        parameters=[SLUG_PARAM, OpenApiParameter("keep_data", OpenApiTypes.BOOL,
                                                 description="keep the plugin's kv data for a reinstall")],
        responses={200: s.UninstallResultSerializer, **errors(*COMMON_ERRORS)},
    )
    def destroy(self, request: Request, slug: str) -> Response:
        query = s.UninstallQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        keep = query.validated_data["keep_data"]
        plugin = self.get_object()
        lifecycle.uninstall(plugin, _actor(request), keep_data=keep)
        return Response({"slug": plugin.slug, "changed": True, "keep_data": keep})

    @extend_schema(summary="Activate a plugin", request=None, parameters=[SLUG_PARAM],
                   responses={200: s.PluginResultSerializer,
                              **errors(*COMMON_ERRORS, e409="consent_required, or the plugin cannot "
                                       "load on this host (load_error)")})
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, slug: str) -> Response:
        return self._result(lifecycle.activate(self.get_object(), _actor(request)))

    @extend_schema(summary="Deactivate a plugin", request=None, parameters=[SLUG_PARAM],
                   responses={200: s.PluginResultSerializer, **errors(*COMMON_ERRORS)})
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, slug: str) -> Response:
        return self._result(lifecycle.deactivate(self.get_object(), _actor(request)))

    @extend_schema(
        summary="Upgrade a plugin to a newer version",
        description="New required capabilities must be in `grant` (or already granted); otherwise 409 "
                    "`consent_required` and the current version keeps running. The same version with "
                    "the same bytes is a no-op (`changed: false`); with other bytes, 409 "
                    "`version_conflict`. A version signed by another publisher key than the running one "
                    "is a 409 `publisher_changed` (naming both keys) unless `accept_new_publisher`. "
                    "With `rollout`, the new version runs for staff or `rollout_percent`% of visitors "
                    "first and the others keep the running one (see `/plugins/{slug}/rollout/`); "
                    "409 `rollout_error` when another rollout runs or the plugin is not active.",
        parameters=[SLUG_PARAM],
        request={"multipart/form-data": s.UpgradeSerializer},
        responses={200: s.PluginResultSerializer,
                   **errors(*WRITE_ERRORS, e400="the bundle or its manifest is refused, or the request is "
                            "invalid", e409="consent_required, publisher_changed, version_conflict, an "
                            "older version, or another lifecycle refusal")},
    )
    @action(detail=True, methods=["post"])
    def upgrade(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        form = s.UpgradeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        needed = policy.needed_to_upgrade(plugin, data["grant"], data.get("hosts"))
        mode = data.get("rollout")
        self.require(policy.can_upgrade(request.user, plugin, data["grant"], data.get("hosts"))
                     and (mode is None or policy.can_roll_out(request.user)),
                     [*needed, *([policy.ACTIVATE_PLUGIN] if mode else [])])
        options = {"hosts": data.get("hosts"), "accept_new_publisher": data["accept_new_publisher"]}
        if mode is None:
            result = lifecycle.upgrade(plugin, _read_bundle(data["bundle"]), data["grant"], _actor(request),
                                       **options)
        else:
            result = lifecycle.rollout.start_upgrade(
                plugin, _read_bundle(data["bundle"]), data["grant"], _actor(request), mode=mode,
                percent=data.get("rollout_percent"), **options)
        return self._result(result)

    @extend_schema(
        summary="Roll back to an installed version",
        parameters=[SLUG_PARAM],
        request=s.RollbackSerializer,
        responses={200: s.PluginResultSerializer,
                   **errors(*WRITE_ERRORS, e409="no_older_version, the version is not installed, or it "
                            "cannot run (consent_required)")},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        form = s.RollbackSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = lifecycle.rollback(plugin, _actor(request), to_version=form.validated_data.get("version"))
        return self._result(result)

    @extend_schema(
        summary="Preview a page with a plugin version active for that render only",
        description="Renders `path` of this site (as an anonymous visitor) twice: as it is, and with the "
                    "version active for that render only. Nothing persists: kv writes go to a throwaway "
                    "layer, jobs are answered with a fake id and not queued, http.fetch is refused, the "
                    "site's caches are bypassed and the database writes of the render are rolled back. "
                    "Other requests never see the version.",
        parameters=[SLUG_PARAM],
        request=s.PreviewRequestSerializer,
        responses={200: s.PreviewSerializer,
                   **errors(*WRITE_ERRORS, e400="`bad_preview_path`: not a visitor's path of this site",
                            e409="`preview_error`: nothing to preview, or the version is not installed "
                                 "or cannot load")},
    )
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        form = s.PreviewRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        candidate = preview.candidate_for_plugin(plugin, data.get("version"))
        result = preview.preview(candidate, data["path"], host=request.get_host(), secure=request.is_secure())
        return Response(result.as_dict())

    @extend_schema(summary="List a plugin's installed versions", parameters=[SLUG_PARAM],
                   responses={200: s.VersionSerializer(many=True), **errors(*COMMON_ERRORS)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        rows = sorted(PluginVersion.objects.filter(plugin=plugin).select_related("publisher_key"),
                      key=lambda v: version_key(v.version))
        return Response(s.VersionSerializer(rows, many=True, context={"plugin": plugin}).data)

    @extend_schema(
        summary="A plugin's last faults, newest first",
        description="Traps, timeouts, bad results and load errors. A trap carries a `report` whose frames "
                    "name the source `file:line` when the module embeds a source map (dev builds do), "
                    "and otherwise the function (name section, else index) and offset: "
                    "`$inner+0x5 (no source map)`.",
        parameters=[SLUG_PARAM], responses={200: s.FaultSerializer(many=True), **errors(*COMMON_ERRORS)},
    )
    @action(detail=True, methods=["get"])
    def faults(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        page = self.paginate_queryset(plugin.faults.order_by("-created_at", "-id"))
        return self.get_paginated_response(s.FaultSerializer(page, many=True).data)

    @extend_schema(methods=["GET"], summary="List a plugin's grants", parameters=[SLUG_PARAM],
                   responses={200: s.GrantSerializer(many=True), **errors(*COMMON_ERRORS)})
    @extend_schema(
        methods=["POST"], summary="Grant capabilities",
        description="Grant capabilities the current version asks for (optional ones, or re-grants). "
                    "Granting what is already granted is a no-op (`changed: false`).",
        parameters=[SLUG_PARAM], request=s.GrantRequestSerializer,
        responses={200: s.PluginResultSerializer,
                   **errors(*WRITE_ERRORS, e400="an unknown capability, or the request is invalid",
                            e409="the plugin does not ask for that capability or host")},
    )
    @extend_schema(
        methods=["DELETE"], summary="Revoke a capability",
        description="Revoking one the running version requires deactivates the plugin. Revoking one "
                    "that is not granted is a no-op (`changed: false`).",
        parameters=[SLUG_PARAM, OpenApiParameter("capability", OpenApiTypes.STR, required=True,
                                                 description="the capability to revoke")],
        request=None,
        responses={200: s.PluginResultSerializer, **errors(*COMMON_ERRORS)},
    )
    @action(detail=True, methods=["get", "post", "delete"], pagination_class=None)
    def grants(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        if request.method == "GET":
            return Response(s.GrantSerializer(plugin.grants.all(), many=True).data)
        if request.method == "POST":
            form = s.GrantRequestSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            data = form.validated_data
            return self._result(lifecycle.grant(plugin, data["grant"], _actor(request),
                                                hosts=data.get("hosts")))
        query = s.RevokeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return self._result(lifecycle.revoke(plugin, query.validated_data["capability"], _actor(request)))

    @extend_schema(methods=["GET"], summary="A plugin's settings",
                   description="Each declared setting with its schema and effective value (stored, else "
                               "the default). A secret's value is never returned: `set` says whether "
                               "one is saved.",
                   parameters=[SLUG_PARAM], responses={200: s.SettingsSerializer, **errors(*COMMON_ERRORS)})
    @extend_schema(
        methods=["PUT"], summary="Change a plugin's settings",
        description="The body is an object of setting names and values; a name not sent keeps its value "
                    "(so a secret need not be sent again), `null` resets it to its default. The result "
                    "is checked as a whole against the current version's schema: 400 `invalid_settings` "
                    "lists every problem (`problems[].field`) and nothing is saved. Audited, secrets "
                    "redacted; every process sees the change within SYNC_INTERVAL.",
        parameters=[SLUG_PARAM],
        request={"application/json": {"type": "object", "additionalProperties": True}},
        responses={200: s.SettingsSerializer,
                   **errors(*WRITE_ERRORS, e400="invalid_settings: the values are refused, each named")},
    )
    # Not named ``settings``: that is DRF's ``APIView.settings``.
    @action(detail=True, methods=["get", "put"], pagination_class=None, url_path="settings",
            url_name="settings")
    def plugin_settings(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        changed = None
        if request.method == "PUT":
            changed = lifecycle.settings.update(plugin, request.data, _actor(request)).changed
            plugin = self.get_object()
        data: dict[str, Any] = {"settings": lifecycle.settings.describe(plugin)}
        if changed is not None:
            data["changed"] = changed
        return Response(data)

    @extend_schema(summary="A plugin's audit events, newest first",
                   description="Every change to the plugin's state, including earlier installs of the "
                               "same slug.",
                   parameters=[SLUG_PARAM], responses={200: s.AuditEventSerializer(many=True),
                                                       **errors(*COMMON_ERRORS)})
    @action(detail=True, methods=["get"])
    def audit(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        events = AuditEvent.objects.filter(plugin_slug=plugin.slug).order_by("-created_at", "-id")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)

    @extend_schema(
        summary="A plugin's background jobs, newest first",
        description="One record per job: its idempotency key (`id`, the same on every retry), status, "
                    "attempts, timings, and the guest's result or the error. Filter with `status` and "
                    "`job`.",
        parameters=[SLUG_PARAM, s.JobFilterSerializer],
        responses={200: s.JobRunSerializer(many=True), **errors(*COMMON_ERRORS)},
    )
    @action(detail=True, methods=["get"])
    def jobs(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        query = s.JobFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        runs = PluginJobRun.objects.filter(plugin_slug=plugin.slug).order_by("-enqueued_at", "-id")
        for field in ("status", "job"):
            if query.validated_data.get(field):
                runs = runs.filter(**{field: query.validated_data[field]})
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(s.JobRunSerializer(page, many=True).data)

    @extend_schema(
        summary="A plugin's log backlog",
        description="Lines oldest first: the newest `limit` lines, or the lines after `since`. Tail a "
                    "log by passing each answer's `next_since` as the next `since`.",
        parameters=[SLUG_PARAM, LogQuerySerializer],
        responses={200: LogPageSerializer, **errors(*COMMON_ERRORS)},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def logs(self, request: Request, slug: str) -> Response:
        plugin = self.get_object()
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        since, level = query.validated_data.get("since"), query.validated_data.get("level")
        limit = query.validated_data["limit"]
        lines = logs.backlog(plugin.slug, min_level=level or 0, limit=limit,
                             after_id=since if isinstance(since, int) else None,
                             since=since if isinstance(since, datetime) else None)
        next_since = lines[-1].pk if lines else (since if isinstance(since, int) else 0)
        return Response({"lines": [{**line.as_record(), "dropped": line.dropped} for line in lines],
                         "next_since": next_since})


class CapabilityListView(APIBase, APIView):
    """Every capability this site can grant, with what it allows and its risk."""

    permission_classes = [perms.PolicyPermission]

    def permission_rule(self, request: Request) -> Callable[[Any], bool]:
        return policy.can_view_plugins

    @extend_schema(summary="List the capabilities this site can grant",
                   responses={200: s.CapabilitySerializer(many=True), **errors(*COMMON_ERRORS)})
    def get(self, request: Request) -> Response:
        return Response([cap.as_dict() for cap in capabilities.all_capabilities()])


class KeyView(APIBase, APIView):
    """Trusted publisher keys: which signatures may install code at all. Listing, trusting and
    revoking each need the model permission the admin asks for (view/add/change_publisherkey)."""

    permission_classes = [perms.PolicyPermission]
    parser_classes = [UntrustedJSONParser, FormParser, MultiPartParser]
    query_params = {"delete": ("fingerprint",)}
    body_actions = frozenset({"post"})
    RULES: dict[str, Callable[[Any], bool]] = {"POST": policy.can_trust_key, "DELETE": policy.can_revoke_key}

    def permission_rule(self, request: Request) -> Callable[[Any], bool]:
        return self.RULES.get(request.method or "", policy.can_view_keys)

    @extend_schema(summary="List publisher keys", responses={200: s.KeySerializer(many=True),
                                                             **errors(*COMMON_ERRORS)})
    def get(self, request: Request) -> Response:
        return Response(s.KeySerializer(PublisherKey.objects.all(), many=True).data)

    @extend_schema(
        summary="Trust a publisher key",
        description="201 when the key is new; trusting a key that is already trusted is a no-op "
                    "(200, `changed: false`); a revoked key cannot be trusted again (409).",
        request=s.TrustKeySerializer,
        responses={201: s.KeyResultSerializer, 200: s.KeyResultSerializer,
                   **errors(*WRITE_ERRORS, e400="not an ed25519 public key (`bad_signature`), or the "
                            "request is invalid", e409="the key was revoked")},
    )
    def post(self, request: Request) -> Response:
        form = s.TrustKeySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        public = form.validated_data["public_key"].strip()
        existed = PublisherKey.objects.filter(public_key=public).exists()
        key = lifecycle.trust_key(form.validated_data["name"], public, _actor(request))
        return Response(s.KeyResultSerializer(key, context={"changed": not existed}).data,
                        status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke a publisher key",
        description="Deactivates every active plugin whose running version the key signed. Revoking a "
                    "revoked key is a no-op (`changed: false`).",
        parameters=[OpenApiParameter("fingerprint", OpenApiTypes.STR, required=True,
                                     description="the fingerprint or its first 8+ hex characters",
                                     pattern=r"^[0-9a-fA-F]{8,64}$")],
        request=None,
        responses={200: s.KeyRevokedSerializer, **errors(*COMMON_ERRORS, e404="no key (or several) "
                                                           "match the fingerprint")},
    )
    def delete(self, request: Request) -> Response:
        query = s.RevokeKeyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        key = lifecycle.find_key(query.validated_data["fingerprint"])
        was_revoked = key.revoked_at is not None
        deactivated = lifecycle.revoke_key(key, _actor(request))
        return Response({"fingerprint": key.fingerprint, "changed": not was_revoked,
                         "deactivated": deactivated})

