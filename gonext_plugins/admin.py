"""Admin registration. Read-only: every change goes through ``lifecycle`` (audited), never
through a model form."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEvent, CapabilityGrant, Plugin, PluginVersion, PublisherKey


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; adding, changing and deleting happen through lifecycle operations."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Plugin)
class PluginAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "state", "active_version", "updated_at"]
    list_filter = ["state"]
    search_fields = ["slug", "name", "author"]


@admin.register(PluginVersion)
class PluginVersionAdmin(ReadOnlyAdmin):
    list_display = ["plugin", "version", "abi", "signed", "publisher_key", "wasm_sha256", "installed_at"]
    list_filter = ["signed"]


@admin.register(CapabilityGrant)
class CapabilityGrantAdmin(ReadOnlyAdmin):
    list_display = ["plugin", "capability", "granted_by", "granted_at"]


@admin.register(PublisherKey)
class PublisherKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "fingerprint", "trusted", "revoked_at", "created_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "plugin_slug", "version", "actor"]
    list_filter = ["action"]
    search_fields = ["plugin_slug", "action"]
