"""The plugin admin: the whole lifecycle inside Django's admin.

No model form ever writes plugin state: every button posts to a view in ``plugins`` or ``keys`` that
asks the permission policy (``gonext_plugins.permissions``, the same ``can_*`` functions the API,
the log WebSocket and the views ask) and calls ``lifecycle``, which audits the change. Users
without a permission see no button for it and get 403 from its URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from .. import capabilities, lifecycle
from .. import permissions as policy
from ..errors import PluginError
from ..lifecycle.compat import incompatible_active, version_reasons
from ..manifest import version_key
from ..models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginFault,
    PluginJobRun,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from ..stats import Point, added_ms_per_request, cluster_figures_available, rollup, stats, summaries
from .catalogue import HookCatalogueAdminViews
from .costs import CostAdminViews, added_cell, calls_sparklines, plugin_page_charts
from .keys import PublisherKeyAdminViews
from .plugins import PluginAdminViews
from .presenters import recent_audit
from .rollout import RolloutAdminViews, rollout_context

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

LOG_PAGE = "/_/plugins/logs/{slug}/"  # where the live log page lives when its URL is not included


def log_page_url(slug: str) -> str:
    """The live log page of a plugin (the ``gonext_plugins:log_page`` route, if the site includes it)."""
    try:
        return reverse("gonext_plugins:log_page", args=[slug])
    except NoReverseMatch:
        return LOG_PAGE.format(slug=slug)


def _started() -> datetime:
    return datetime.fromtimestamp(stats.started_at, tz=UTC)


CLUSTER_WINDOW = timedelta(hours=1)
"""The span of the cluster figures the admin shows ("all processes, last hour")."""


def cluster_figures(slugs: list[str]) -> dict[str, Point] | None:
    """Every process's figures of the last hour from the stats rollup, after writing this process's
    own; None when the rollup is off or nobody has flushed yet (then the page shows this process's)."""
    rollup.flush()
    if not cluster_figures_available():
        return None
    return summaries(slugs, datetime.now(tz=UTC) - CLUSTER_WINDOW)


def cluster_cell(point: Point | None) -> str:
    """The changelist's calls cell from the cluster figures: calls, p50 and p99, faults."""
    if point is None or not point.calls:
        return format_html('<span class="gn-quiet">{}</span>', "no calls")
    faults = format_html(' · <span class="gn-risk-high">{} fault{}</span>', point.faults,
                         "" if point.faults == 1 else "s") if point.faults else ""
    return format_html('{}<br><span class="gn-quiet">p50 {} ms · p99 {} ms</span>{}', f"{point.calls:,}",
                       f"{point.p50_ms or 0:.2f}", f"{point.p99_ms or 0:.2f}", faults)


def state_badge(state: str, reason: str = "") -> str:
    """The coloured state pill used on the changelist and the plugin page."""
    label = PluginState(state).label if state in PluginState.values else state
    return format_html('<span class="gn-badge gn-state-{}" title="{}">{}</span>', state, reason, label)


class PluginColumns(TypedDict):
    """What ``PluginAdmin.get_queryset`` annotates each plugin of the list with."""

    grant_count: int
    last_fault_kind: str | None  # the newest fault's, or None (then so are the other two)
    last_fault_at: datetime | None
    last_fault_message: str | None


class KeyColumns(TypedDict):
    """What ``PublisherKeyAdmin.get_queryset`` annotates each key of the list with."""

    version_count: int


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; adding, changing and deleting happen through lifecycle operations.

    Who may see the rows is the policy's ``view_rule`` (plugin data: ``can_view_plugins``, as in
    the API), not Django's default, which would also let ``change_<model>`` holders see them."""

    view_rule: Any = staticmethod(policy.can_view_plugins)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(self.view_rule(request.user))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Plugin)
class PluginAdmin(CostAdminViews, HookCatalogueAdminViews, PluginAdminViews, RolloutAdminViews,
                  ReadOnlyAdmin):
    change_list_template = "admin/gonext_plugins/plugin/change_list.html"
    change_form_template = "admin/gonext_plugins/plugin/change_form.html"
    list_display = ["name_column", "state_column", "publisher_column", "capabilities_column",
                    "hooks_column", "fault_column", "calls_column"]
    list_display_links = ["name_column"]
    search_fields = ["slug", "name", "author"]  # no state filter: badges show it, columns need room
    actions = ["activate_selected", "deactivate_selected"]
    fieldsets = [("About", {"fields": ["name", "slug", "state_display", "description", "author",
                                       "homepage", "created_at", "updated_at"]})]
    readonly_fields = ["state_display"]

    def history_view(self, request: HttpRequest, object_id: str,
                     extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The plugin's audit trail on its page: Django's history lists admin LogEntry rows, which no
        change to a plugin writes (they go through the lifecycle and its audit), so it was empty."""
        self._require(policy.can_view_plugins(request.user))
        return HttpResponseRedirect(self._url("change", object_id) + "#gn-audit")

    # queryset and columns

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """The calls column shows the cluster's last hour when the stats rollup has it, with a
        sparkline of calls per minute and each active plugin's added time per request."""
        slugs = list(Plugin.objects.values_list("slug", flat=True))
        figures = cluster_figures(slugs)
        if figures is None:
            return list(self.list_display)
        lines = calls_sparklines(slugs)
        added = added_ms_per_request(slugs, datetime.now(tz=UTC) - CLUSTER_WINDOW)

        @admin.display(description="Calls · p50 · p99 (all processes, last hour)")
        def calls_column(obj: Plugin) -> str:
            return format_html("{}<br>{}", lines[obj.slug], cluster_cell(figures.get(obj.slug)))

        @admin.display(description="Added per request")
        def added_column(obj: Plugin) -> str:
            return added_cell(added.get(obj.slug)) if obj.state == PluginState.ACTIVE else "—"

        columns: list[Any] = []
        for name in self.list_display:  # the added time before the wide calls column, so it shows
            columns += [added_column, calls_column] if name == "calls_column" else [name]
        return columns

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plugin]:
        last_fault = PluginFault.objects.filter(plugin=OuterRef("pk")).order_by("-created_at", "-id")
        return (super().get_queryset(request)
                .select_related("active_version", "active_version__publisher_key")
                .annotate(grant_count=Count("grants", distinct=True),
                          last_fault_kind=Subquery(last_fault.values("kind")[:1]),
                          last_fault_at=Subquery(last_fault.values("created_at")[:1]),
                          last_fault_message=Subquery(last_fault.values("message")[:1]),
                          rollout_mode=F("rollout__mode"), rollout_percent=F("rollout__percent"),
                          rollout_from=F("rollout__previous_version__version")))

    @admin.display(description="Plugin · version", ordering="name")
    def name_column(self, obj: Plugin) -> str:
        version = obj.active_version.version if obj.active_version else "—"
        return format_html('{} <span class="gn-version">{}</span><br><span class="gn-quiet">{}</span>',
                           obj.name, version, obj.slug)

    @admin.display(description="State", ordering="state")
    def state_column(self, obj: Plugin) -> str:
        """The state, and a staged rollout under it: "Active" alone read as live for everyone."""
        badge = state_badge(obj.state, obj.state_reason)
        mode = getattr(obj, "rollout_mode", None)
        if not mode:
            return badge
        cohort = "staff only" if mode == "staff" else f"{getattr(obj, 'rollout_percent', 0)}% of visitors"
        upgrade = getattr(obj, "rollout_from", None)
        others = f"; the others run {upgrade}" if upgrade else ""
        return format_html('{}<br><span class="gn-badge gn-rollout">rollout: {}{}</span>', badge, cohort,
                           others)

    @admin.display(description="Publisher")
    def publisher_column(self, obj: Plugin) -> str:
        version = obj.active_version
        if version is None:
            return "—"
        if not version.signed:
            return format_html('<span class="gn-badge gn-risk-high">unsigned</span>')
        key = version.publisher_key
        if key is None or not key.usable:
            return format_html('{}<br><span class="gn-badge gn-risk-high">key revoked</span>',
                               key.name if key else "unknown key")
        return format_html('{}<br><span class="gn-badge gn-sig-valid">✓ signed</span>', key.name)

    @admin.display(description="Capabilities")
    def capabilities_column(self, obj: WithAnnotations[Plugin, PluginColumns]) -> str:
        if obj.active_version is None:
            return "—"
        manifest = obj.active_version.manifest
        asked = len(set(manifest.get("capabilities", [])) | set(manifest.get("optionalCapabilities", [])))
        return format_html('<span title="granted of asked for">{} of {}</span>',
                           obj.grant_count, asked)

    @admin.display(description="Hooks")
    def hooks_column(self, obj: Plugin) -> str:
        hooks = (obj.active_version.manifest.get("hooks", []) if obj.active_version else [])
        if not hooks:
            return "—"
        return format_html_join(" ", "<code>{}</code>", ((hook.get("name", "?"),) for hook in hooks))

    @admin.display(description="Last fault")
    def fault_column(self, obj: WithAnnotations[Plugin, PluginColumns]) -> str:
        kind = getattr(obj, "last_fault_kind", None)
        if not kind:
            return "—"
        assert obj.last_fault_at is not None  # kind's fault row has one: created_at is not nullable
        return format_html('<span class="gn-badge gn-risk-high" title="{}">{}</span><br>'
                           '<span class="gn-quiet">{} ago</span>', obj.last_fault_message, kind,
                           timesince(obj.last_fault_at))

    @admin.display(description="Calls · median")
    def calls_column(self, obj: Plugin) -> str:
        snap = stats.snapshot(obj.slug)
        if not snap.calls:
            return format_html('<span class="gn-quiet">{}</span>', "no calls")
        return format_html('{}<br><span class="gn-quiet">{} ms</span>', f"{snap.calls:,}",
                           f"{snap.median_ms:.2f}")

    @admin.display(description="State")
    def state_display(self, obj: Plugin) -> str:
        badge = state_badge(obj.state, obj.state_reason)
        if obj.state_reason:
            return format_html('{} <span class="gn-quiet">{}</span>', badge, obj.state_reason)
        return badge

    # bulk actions

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return policy.can_activate(request.user)

    @admin.action(description="Activate selected plugins", permissions=["activate"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[Plugin]) -> None:
        self._bulk(request, queryset, lifecycle.activate, "activated")

    @admin.action(description="Deactivate selected plugins", permissions=["activate"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[Plugin]) -> None:
        self._bulk(request, queryset, lifecycle.deactivate, "deactivated")

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Plugin], operation: Any, verb: str) -> None:
        changed: list[str] = []
        unchanged: list[str] = []
        for plugin in queryset:
            try:
                result = operation(plugin, request.user)
            except PluginError as exc:
                self.message_user(request, f"{plugin.name} was not {verb}: {exc.message}", messages.ERROR)
            else:
                (changed if result.changed else unchanged).append(plugin.name)
        if changed:
            self.message_user(request, f"{verb.capitalize()}: {', '.join(changed)}.", messages.SUCCESS)
        if unchanged:
            self.message_user(request, f"Already {verb}: {', '.join(unchanged)}.", messages.INFO)

    # URLs and pages

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        name = "gonext_plugins_plugin_{}".format
        custom = [
            path("install/", wrap(self.install_upload_view), name=name("install")),
            path("hooks/", wrap(self.hooks_view), name=name("hooks")),
            path("costs/", wrap(self.costs_view), name=name("costs")),
            path("install/<str:token>/", wrap(self.install_confirm_view), name=name("install_confirm")),
            path("<int:object_id>/upgrade/", wrap(self.upgrade_upload_view), name=name("upgrade")),
            path("<int:object_id>/upgrade/<str:token>/", wrap(self.upgrade_confirm_view),
                 name=name("upgrade_confirm")),
            path("<int:object_id>/activate/", wrap(self.activate_view), name=name("activate")),
            path("<int:object_id>/deactivate/", wrap(self.deactivate_view), name=name("deactivate")),
            path("<int:object_id>/rollback/", wrap(self.rollback_view), name=name("rollback")),
            path("<int:object_id>/rollout/", wrap(self.rollout_view), name=name("rollout")),
            path("<int:object_id>/grants/<str:capability>/revoke/", wrap(self.revoke_grant_view),
                 name=name("revoke_grant")),
            path("<int:object_id>/grants/<str:capability>/grant/", wrap(self.grant_view),
                 name=name("grant")),
            path("<int:object_id>/uninstall/", wrap(self.uninstall_view), name=name("uninstall")),
            path("<int:object_id>/settings/", wrap(self.settings_view), name=name("settings")),
            path("<int:object_id>/preview/", wrap(self.preview_view), name=name("preview")),
            path("install/<str:token>/preview/", wrap(self.install_preview_view),
                 name=name("install_preview")),
            path("<int:object_id>/upgrade/<str:token>/preview/", wrap(self.upgrade_preview_view),
                 name=name("upgrade_preview")),
        ]
        return custom + super().get_urls()

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_install": policy.can_start_install(request.user), "stats_since": _started(),
                 "cluster_stats": cluster_figures_available(), "incompatible_plugins": incompatible_active(),
                 **(extra_context or {})}
        return super().changelist_view(request, extra)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        plugin = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if plugin is not None:
            extra.update(self._page_context(request, plugin))
        return super().change_view(request, object_id, form_url, extra)

    def _page_context(self, request: HttpRequest, plugin: Plugin) -> dict[str, Any]:
        """The plugin page's sections: versions, grants, audit, faults, and which buttons show."""
        user = request.user
        current = plugin.active_version
        manifest = lifecycle.manifest_of(current) if current else None
        versions = sorted(plugin.versions.select_related("publisher_key"),
                          key=lambda v: version_key(v.version), reverse=True)
        grants = {g.capability: g for g in plugin.grants.select_related("granted_by")}
        asked = list(manifest.all_capabilities) if manifest else []
        rows: list[dict[str, Any]] = []
        for cap in capabilities.describe(set(asked) | set(grants)):
            rows.append({"cap": cap, "grant": grants.get(cap.name),
                         "required": bool(manifest and cap.name in manifest.capabilities),
                         "asked": cap.name in asked})
        rows.sort(key=lambda row: (not row["required"], row["cap"].name))
        snap = stats.snapshot(plugin.slug)
        cluster = cluster_figures([plugin.slug])
        return {
            "cluster": None if cluster is None else (
                cluster.get(plugin.slug) or Point.empty(datetime.now(tz=UTC) - CLUSTER_WINDOW)),
            "plugin": plugin, "manifest": manifest, "versions": versions, "current_version": current,
            "capability_rows": rows,
            "audit_events": [(event, json.dumps(event.details, ensure_ascii=False, sort_keys=True))
                             for event in (recent_audit(plugin) if policy.can_view_audit(user) else [])],
            "faults": list(plugin.faults.all()[:10]), "snapshot": snap, "stats_since": _started(),
            "costs": plugin_page_charts(plugin.slug),
            "job_runs": [(run, json.dumps(run.result, ensure_ascii=False, sort_keys=True))
                         for run in PluginJobRun.objects.filter(plugin_slug=plugin.slug)[:JOB_ROWS]],
            "job_counts": dict(PluginJobRun.objects.filter(plugin_slug=plugin.slug).values_list("status")
                               .annotate(n=Count("pk")).order_by()),
            "state_badge": state_badge(plugin.state, plugin.state_reason),
            "incompatible_reasons": version_reasons(plugin.slug, current) if current else [],
            "can_install": policy.can_upgrade(user),  # upgrade, roll back, uninstall
            "can_activate": policy.can_activate(user),
            **rollout_context(plugin, user),
            "can_grant": policy.can_grant(user),
            "can_view_logs": policy.can_view_logs(user),
            "can_preview": policy.can_preview(user),
            "can_view_audit": policy.can_view_audit(user),
            "log_url": log_page_url(plugin.slug),
            "version_key_current": version_key(current.version) if current else None,
            "older_versions": {v.pk for v in versions
                               if current and version_key(v.version) < version_key(current.version)},
        }


JOB_ROWS = 20
"""Recent job runs on the plugin page (the API pages through all of them)."""


@admin.register(PluginVersion)
class PluginVersionAdmin(ReadOnlyAdmin):
    list_display = ["plugin", "version", "abi", "signed", "publisher_key", "wasm_sha256", "installed_at"]
    list_filter = ["signed"]


@admin.register(CapabilityGrant)
class CapabilityGrantAdmin(ReadOnlyAdmin):
    list_display = ["plugin", "capability", "granted_by", "granted_at"]


@admin.register(PublisherKey)
class PublisherKeyAdmin(PublisherKeyAdminViews, ReadOnlyAdmin):
    """Trusted keys: add through ``lifecycle.trust_key``, revoke with the consequences shown."""

    change_list_template = "admin/gonext_plugins/publisherkey/change_list.html"
    change_form_template = "admin/gonext_plugins/publisherkey/change_form.html"
    list_display = ["name", "fingerprint_column", "status_column", "signed_column", "created_at",
                    "revoke_column"]
    fields = ["name", "fingerprint", "public_key", "trusted", "revoked_at", "created_at"]

    view_rule = staticmethod(policy.can_view_keys)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.can_trust_key(request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PublisherKey]:
        return super().get_queryset(request).annotate(version_count=Count("versions"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("add/", wrap(self.trust_key_view), name="gonext_plugins_publisherkey_add"),
            path("<int:object_id>/revoke/", wrap(self.revoke_key_view),
                 name="gonext_plugins_publisherkey_revoke"),
            *super().get_urls(),
        ]

    def get_list_display(self, request: HttpRequest) -> list[str | Callable[[Any], str | bool]]:
        """The revoke column only for those who may revoke."""
        columns = list(super().get_list_display(request))
        return columns if policy.can_revoke_key(request.user) else columns[:-1]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_revoke": policy.can_revoke_key(request.user), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="Fingerprint", ordering="fingerprint")
    def fingerprint_column(self, obj: PublisherKey) -> str:
        return format_html('<code title="{}">{}…</code>', obj.fingerprint, obj.fingerprint[:16])

    @admin.display(description="Status")
    def status_column(self, obj: PublisherKey) -> str:
        if obj.revoked_at:
            return format_html('<span class="gn-badge gn-risk-high">revoked {}</span>',
                               obj.revoked_at.strftime("%Y-%m-%d"))
        if not obj.trusted:
            return format_html('<span class="gn-badge gn-risk-medium">{}</span>', "not trusted")
        return format_html('<span class="gn-badge gn-sig-valid">{}</span>', "trusted")

    @admin.display(description="Versions signed")
    def signed_column(self, obj: WithAnnotations[PublisherKey, KeyColumns]) -> int:
        return obj.version_count

    @admin.display(description="")
    def revoke_column(self, obj: PublisherKey) -> str:
        if obj.revoked_at:
            return ""
        url = reverse(f"{self.admin_site.name}:gonext_plugins_publisherkey_revoke", args=[obj.pk])
        return format_html('<a class="gn-danger-link" href="{}">Revoke…</a>', url)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    view_rule = staticmethod(policy.can_view_audit)
    list_display = ["created_at", "action", "plugin_slug", "version", "actor_label"]
    list_filter = ["action"]
    search_fields = ["plugin_slug", "action"]


@admin.register(PluginJobRun)
class PluginJobRunAdmin(ReadOnlyAdmin):
    """Every plugin's jobs in one list (the plugin page shows its own recent ones)."""

    list_display = ["enqueued_at", "plugin_slug", "job", "status", "attempts", "version", "duration",
                    "error_code"]
    list_filter = ["status", "plugin_slug", "job"]
    search_fields = ["id", "plugin_slug", "job"]

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: PluginJobRun) -> str:
        """The last attempt's guest call, to the tenth of a millisecond (stored to the nanosecond)."""
        return "" if obj.duration_ms is None else f"{obj.duration_ms:,.1f} ms"
