"""What the API reads and writes. Output serializers are read-only views of the models; input
serializers only parse and validate requests: the rules themselves live in ``lifecycle``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import capabilities
from ..lifecycle.compat import version_reasons
from ..manifest import version_key
from ..models import (
    AuditEvent,
    CapabilityGrant,
    JobStatus,
    Plugin,
    PluginFault,
    PluginJobRun,
    PluginState,
    PluginVersion,
    PublisherKey,
)

# --- errors ---------------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """The one error shape of every non-2xx answer."""

    error = serializers.CharField(help_text="stable machine-readable code, e.g. consent_required")
    detail = serializers.CharField(help_text="one sentence for a person")
    problems = serializers.ListField(
        child=serializers.DictField(), help_text="itemised reasons: manifest paths, request fields, "
        "capabilities still to grant (each with description and risk)"
    )
    missing = serializers.ListField(child=serializers.CharField(), required=False,
                                    help_text="consent_required only: the capabilities to grant")
    plugin = serializers.CharField(required=False, help_text="the plugin concerned, when known")
    retry_after = serializers.IntegerField(required=False, help_text="throttled only: seconds to wait")


# --- output ---------------------------------------------------------------------------------------


class PublisherSerializer(serializers.Serializer):
    name = serializers.CharField()
    fingerprint = serializers.CharField()


class CapabilitySerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    risk = serializers.ChoiceField(choices=capabilities.RISKS)
    builtin = serializers.BooleanField()
    functions = serializers.ListField(child=serializers.CharField(), help_text="host functions it unlocks")


class RequestedCapabilitiesSerializer(serializers.Serializer):
    # The metaclass pops declared fields off the class, so this never shadows Field.required.
    required = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    optional = serializers.ListField(child=serializers.CharField())


class HookSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["action", "filter"])
    priority = serializers.IntegerField()
    pure = serializers.BooleanField(help_text="a repeated input may be answered with a remembered result")


def _publisher(version: PluginVersion | None) -> dict[str, str] | None:
    key = version.publisher_key if version is not None else None
    return {"name": key.name, "fingerprint": key.fingerprint} if key else None


def _requested(version: PluginVersion | None) -> dict[str, list[str]]:
    raw = version.manifest if version is not None else {}
    return {"required": list(raw.get("capabilities", [])),
            "optional": list(raw.get("optionalCapabilities", []))}


class GrantSerializer(serializers.ModelSerializer):
    description = serializers.SerializerMethodField()
    risk = serializers.SerializerMethodField()
    granted_by = serializers.SerializerMethodField()
    requested_by_version = serializers.SerializerMethodField()
    hosts = serializers.ListField(child=serializers.CharField(), help_text="http.fetch only")

    class Meta:
        model = CapabilityGrant
        fields = ["capability", "description", "risk", "hosts", "granted_at", "granted_by",
                  "requested_by_version"]

    def get_description(self, grant: CapabilityGrant) -> str:
        return capabilities.describe([grant.capability])[0].description

    @extend_schema_field(serializers.ChoiceField(choices=capabilities.RISKS))
    def get_risk(self, grant: CapabilityGrant) -> str:
        return capabilities.describe([grant.capability])[0].risk

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_granted_by(self, grant: CapabilityGrant) -> str | None:
        return grant.granted_by.get_username() if grant.granted_by else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_requested_by_version(self, grant: CapabilityGrant) -> str | None:
        return grant.requested_by_version.version if grant.requested_by_version else None


class VersionSerializer(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()
    publisher = serializers.SerializerMethodField()
    capabilities = serializers.SerializerMethodField()

    class Meta:
        model = PluginVersion
        fields = ["version", "active", "abi", "wasm_sha256", "wasm_size", "bundle_sha256", "signed",
                  "publisher", "capabilities", "installed_at"]

    def get_active(self, version: PluginVersion) -> bool:
        plugin = self.context.get("plugin") or version.plugin
        return plugin.active_version_id == version.pk

    @extend_schema_field(PublisherSerializer(allow_null=True))
    def get_publisher(self, version: PluginVersion) -> dict[str, str] | None:
        return _publisher(version)

    @extend_schema_field(RequestedCapabilitiesSerializer)
    def get_capabilities(self, version: PluginVersion) -> dict[str, list[str]]:
        return _requested(version)


class IncompatibleReasonSerializer(serializers.Serializer):
    """One reason this site cannot run a version (codes: ``gonext_plugins.compat.REASON_CODES``)."""

    code = serializers.CharField(help_text="abi, capability, host_version, import or manifest")
    subject = serializers.CharField(help_text="what is missing: the ABI, capability, range or import")
    message = serializers.CharField()


class PluginSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField(help_text="the current version (running when active)")
    versions = serializers.SerializerMethodField(help_text="every installed version, oldest first")
    signed = serializers.SerializerMethodField()
    publisher = serializers.SerializerMethodField()
    capabilities = serializers.SerializerMethodField(help_text="what the current version asks for")
    grants = GrantSerializer(many=True, read_only=True)
    hooks = serializers.SerializerMethodField()
    incompatible = serializers.SerializerMethodField(
        help_text="why this site cannot run the current version (an active one is skipped); empty if it can")
    state = serializers.ChoiceField(choices=PluginState.choices)

    class Meta:
        model = Plugin
        fields = ["slug", "name", "description", "author", "homepage", "state", "state_reason", "version",
                  "versions", "signed", "publisher", "capabilities", "grants", "hooks", "incompatible",
                  "created_at", "updated_at"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_version(self, plugin: Plugin) -> str | None:
        return plugin.active_version.version if plugin.active_version else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_versions(self, plugin: Plugin) -> list[str]:
        return sorted((v.version for v in plugin.versions.all()), key=version_key)

    def get_signed(self, plugin: Plugin) -> bool:
        return bool(plugin.active_version and plugin.active_version.signed)

    @extend_schema_field(PublisherSerializer(allow_null=True))
    def get_publisher(self, plugin: Plugin) -> dict[str, str] | None:
        return _publisher(plugin.active_version)

    @extend_schema_field(RequestedCapabilitiesSerializer)
    def get_capabilities(self, plugin: Plugin) -> dict[str, list[str]]:
        return _requested(plugin.active_version)

    @extend_schema_field(HookSerializer(many=True))
    def get_hooks(self, plugin: Plugin) -> list[dict[str, Any]]:
        raw = plugin.active_version.manifest if plugin.active_version else {}
        return [{"name": h.get("name", ""), "kind": h.get("kind", ""), "priority": h.get("priority", 10),
                 "pure": bool(h.get("pure", False))} for h in raw.get("hooks", [])]

    @extend_schema_field(IncompatibleReasonSerializer(many=True))
    def get_incompatible(self, plugin: Plugin) -> list[dict[str, str]]:
        version = plugin.active_version
        return [reason.as_dict() for reason in version_reasons(plugin.slug, version)] if version else []


class PluginResultSerializer(PluginSerializer):
    """The plugin after an operation, and whether the operation changed anything (no-ops are
    ``"changed": false``, never errors, so scripts can be re-run safely)."""

    changed = serializers.SerializerMethodField()

    class Meta(PluginSerializer.Meta):
        fields = [*PluginSerializer.Meta.fields, "changed"]

    def get_changed(self, plugin: Plugin) -> bool:
        return bool(self.context.get("changed", True))


class UninstallResultSerializer(serializers.Serializer):
    slug = serializers.CharField()
    changed = serializers.BooleanField()
    keep_data = serializers.BooleanField(help_text="whether the plugin's kv data was kept for a reinstall")


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    plugin = serializers.CharField(source="plugin_slug")
    details = serializers.DictField(help_text="what changed: before/after, grants, versions, ...")

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "action", "actor", "plugin", "version", "details"]


class FaultSerializer(serializers.ModelSerializer):
    report = serializers.JSONField(
        help_text="for traps: `text` (readable), `frames` (`function`, `module_offset`, `source`, `line`, "
                  "`column`, `symbol`: `$name+0xOFFSET`, `location`: `file:line:column`, else the symbol and "
                  "`(no source map)` or `(no source line)`), `source_map`; "
                  "null for other faults")

    class Meta:
        model = PluginFault
        fields = ["id", "created_at", "version", "kind", "hook", "message", "guest_message", "report"]
        extra_kwargs = {"kind": {"help_text": "trap, timeout, bad_result, load_error"},
                        "guest_message": {"help_text": "what the guest said (its gn_panic message)"}}


class JobRunSerializer(serializers.ModelSerializer):
    plugin = serializers.CharField(source="plugin_slug")
    payload = serializers.JSONField(help_text="what the job was queued with")
    result = serializers.JSONField(help_text="the guest's answer (JSON), when it succeeded")

    class Meta:
        model = PluginJobRun
        fields = ["id", "plugin", "version", "job", "status", "attempts", "max_retries", "duplicates",
                  "enqueued_by", "enqueued_at", "run_after", "started_at", "last_attempt_at", "finished_at",
                  "duration_ms", "error_code", "error", "payload", "result"]
        extra_kwargs = {
            "id": {"help_text": "the idempotency key the guest sees, kept on retries (the first task's id; "
                                "on a queue outside the database, an id chosen when it was queued)"},
            "status": {"help_text": "queued, running, retrying, waiting (plugin inactive), succeeded, "
                                    "failed, plugin_inactive (stayed inactive through every retry), "
                                    "skipped (uninstalled)"},
        }


class KeySerializer(serializers.ModelSerializer):
    revoked = serializers.SerializerMethodField()
    usable = serializers.BooleanField(read_only=True)

    class Meta:
        model = PublisherKey
        fields = ["name", "fingerprint", "public_key", "trusted", "revoked", "revoked_at", "usable",
                  "created_at"]

    def get_revoked(self, key: PublisherKey) -> bool:
        return key.revoked_at is not None


class KeyResultSerializer(KeySerializer):
    changed = serializers.SerializerMethodField()

    class Meta(KeySerializer.Meta):
        fields = [*KeySerializer.Meta.fields, "changed"]

    def get_changed(self, key: PublisherKey) -> bool:
        return bool(self.context.get("changed", True))


class KeyRevokedSerializer(serializers.Serializer):
    fingerprint = serializers.CharField()
    changed = serializers.BooleanField()
    deactivated = serializers.ListField(child=serializers.CharField(),
                                        help_text="plugins deactivated because this key signed them")


# --- input ----------------------------------------------------------------------------------------


class CapabilityListField(serializers.ListField):
    """Repeated form fields (``grant=kv&grant=posts.read``), a JSON list, or comma-separated text."""

    child = serializers.CharField(max_length=100)

    def to_internal_value(self, data: Any) -> list[str]:
        values = super().to_internal_value(data)
        return sorted({part.strip() for value in values for part in value.split(",") if part.strip()})


class HostListField(serializers.ListField):
    child = serializers.CharField(max_length=253)

    def to_internal_value(self, data: Any) -> list[str]:
        values = super().to_internal_value(data)
        return sorted({part.strip() for value in values for part in value.split(",") if part.strip()})


class BodySerializer(serializers.Serializer):
    """A request body, strictly: a field the endpoint does not take is a 400, as an unknown query
    parameter is (DRF ignores it, so ``{"grants": [...]}`` would quietly grant nothing)."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                takes = f"this endpoint takes {', '.join(self.fields)}"
                raise serializers.ValidationError({name: [f"unknown field ({takes})"] for name in unknown})
        return super().to_internal_value(data)


class BundleUploadSerializer(BodySerializer):
    """What install and upgrade both take: the bundle, the grants and the http.fetch hosts."""

    bundle = serializers.FileField(help_text="the .gnplugin file", allow_empty_file=True)
    grant = CapabilityListField(
        required=False, default=list,
        help_text="capabilities to grant; every required one must be granted (or already be)",
    )
    hosts = HostListField(
        required=False,
        help_text="for http.fetch: the manifest's hosts to allow (default: all it lists)",
    )


class UpgradeSerializer(BundleUploadSerializer):
    accept_new_publisher = serializers.BooleanField(
        required=False, default=False,
        help_text="consent to a version signed by another publisher key than the running one "
                  "(409 `publisher_changed` without it)")
    # Labelled, as the rollout endpoint's ``mode`` is with its own: drf-spectacular tells choice sets
    # apart by value and label, and the same bare values under two field names made its system check
    # (W001, "multiple names for the same choice set") warn on every site that installs the app.
    rollout = serializers.ChoiceField(
        choices=[("staff", "the new version for staff first"),
                 ("percent", "the new version for a percentage of visitors first")], required=False,
        help_text="roll the new version out first to staff only or a percentage of visitors (the others "
                  "keep the running version; needs `activate_plugin`); default: everyone at once")
    rollout_percent = serializers.IntegerField(required=False, min_value=1, max_value=99,
                                               help_text="with `rollout=percent`: the share, 1-99")


class InstallSerializer(BundleUploadSerializer):
    activate = serializers.BooleanField(required=False, default=False,
                                        help_text="activate in the same transaction")


class RollbackSerializer(BodySerializer):
    version = serializers.CharField(required=False, max_length=64,
                                    help_text="an installed version; default: the newest older one")


class PreviewRequestSerializer(BodySerializer):
    path = serializers.CharField(max_length=2000,
                                 help_text="a path of this site, e.g. `/` or `/posts/hello/`")
    version = serializers.CharField(
        required=False, max_length=64,
        help_text="an installed version; default: the one activation would run (an inactive plugin), "
                  "or the newest version that is not the active one")


class PreviewPageSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    content_type = serializers.CharField()
    html = serializers.CharField()
    truncated = serializers.BooleanField()


class PreviewCallSerializer(serializers.Serializer):
    hook = serializers.CharField()
    kind = serializers.CharField()
    ms = serializers.FloatField()
    fuel = serializers.IntegerField()
    memory_bytes = serializers.IntegerField()
    status = serializers.CharField(help_text="`ok`, or the fault's status (trap, timeout, error, ...)")


class PreviewSerializer(serializers.Serializer):
    """What ``gonext_plugins.preview.preview`` returns (``PreviewResult.as_dict``)."""

    slug = serializers.CharField()
    version = serializers.CharField()
    origin = serializers.CharField(help_text="`installed` or `staged`")
    path = serializers.CharField()
    before_label = serializers.CharField()
    before = PreviewPageSerializer()
    after = PreviewPageSerializer()
    diff = serializers.CharField(help_text="a unified diff of the two pages' HTML, one tag per line")
    calls = PreviewCallSerializer(many=True)
    logs = serializers.ListField(child=serializers.DictField())
    faults = serializers.ListField(child=serializers.DictField())
    writes = serializers.ListField(child=serializers.DictField(),
                                   help_text="kv writes kept in a throwaway layer, jobs not queued, "
                                             "fetches refused")
    policy = serializers.DictField(child=serializers.CharField())
    elapsed_ms = serializers.FloatField(help_text="both renders, the version's load excluded")


class GrantRequestSerializer(BodySerializer):
    grant = CapabilityListField(min_length=1, help_text="capabilities the current version asks for")
    hosts = HostListField(required=False, help_text="for http.fetch: the manifest's hosts to allow")


class SettingSerializer(serializers.Serializer):
    """One declared setting as people may see it (``lifecycle.settings.describe``): a secret has no
    ``value`` or ``default``, only ``set``."""

    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["string", "integer", "number", "boolean"])
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    secret = serializers.BooleanField()
    required = serializers.BooleanField()  # type: ignore[assignment]  # the output key, not Field.required
    set = serializers.BooleanField(help_text="whether a value was saved (else the default applies)")
    value = serializers.JSONField(required=False, help_text="the effective value; never for a secret")
    default = serializers.JSONField(required=False, help_text="never for a secret")
    enum = serializers.ListField(child=serializers.JSONField(), required=False)
    minimum = serializers.FloatField(required=False)
    maximum = serializers.FloatField(required=False)
    minLength = serializers.IntegerField(required=False)
    maxLength = serializers.IntegerField(required=False)
    format = serializers.ChoiceField(choices=["url", "email"], required=False)


class SettingsSerializer(serializers.Serializer):
    settings = SettingSerializer(many=True)
    changed = serializers.BooleanField(required=False, help_text="PUT only")


class QuerySerializer(serializers.Serializer):
    """Query parameters, strictly: ``?state=`` is a mistake to report, not "no filter" (DRF skips
    blank optional form values silently)."""

    def to_internal_value(self, data: Any) -> Any:
        names = cast("Iterable[str]", self.fields)  # the stubs say it iterates fields: it is their names
        blank = {name: ["may not be blank"] for name in names if name in data and data.get(name) == ""}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class RevokeQuerySerializer(QuerySerializer):
    capability = serializers.CharField(max_length=100, help_text="the capability to revoke")


class UninstallQuerySerializer(QuerySerializer):
    keep_data = serializers.BooleanField(required=False, default=False,
                                         help_text="keep the plugin's kv data for a later reinstall")


class PluginFilterSerializer(QuerySerializer):
    state = serializers.ChoiceField(choices=PluginState.choices, required=False)


class JobFilterSerializer(QuerySerializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False,
                                     help_text="only jobs in this status")
    job = serializers.CharField(required=False, max_length=200, help_text="only jobs of this name")


class TrustKeySerializer(BodySerializer):
    name = serializers.CharField(max_length=200)
    public_key = serializers.CharField(max_length=64, help_text="base64 of the 32-byte ed25519 key")


_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


class RevokeKeyQuerySerializer(QuerySerializer):
    fingerprint = serializers.CharField(
        min_length=8, max_length=64, help_text="the key's fingerprint, or its first 8+ hex characters"
    )

    def validate_fingerprint(self, value: str) -> str:
        if not _HEX.fullmatch(value):
            raise serializers.ValidationError("must be hexadecimal (8 to 64 characters)")
        return value.lower()

