"""The host's own lines in a plugin's log: faults (with a trap report's frames) and the lifecycle
signals (activated, deactivated, quarantined, a dev build installed), received here and written
through :func:`~gonext_plugins.logs.writing.log_event`."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from ..runtime.levels import ERROR, INFO
from ..signals import (
    plugin_activated,
    plugin_deactivated,
    plugin_faulted,
    plugin_installed,
    plugin_quarantined,
    plugin_upgraded,
)
from .writing import log_event


def record_fault(slug: str, kind: str, message: str, *, version: str = "", hook: str = "",
                 guest_message: str = "", report: dict[str, Any] | None = None) -> None:
    """The log line of a trap, timeout or bad result (called where faults are recorded); with a
    trap report, one more line per wasm frame: ``#0 function @0x1f2  main.zig:27:23``."""
    where = f" in {hook}" if hook else ""
    text = f"{kind}{where}: {message}"
    if guest_message and guest_message not in message:
        text += f" (guest: {guest_message})"
    for number, frame in enumerate((report or {}).get("frames") or []):
        offset = frame.get("module_offset")
        at = f" @{offset:#x}" if isinstance(offset, int) else ""
        text += f"\n  #{number} {frame.get('function')}{at}  {frame.get('location')}"
    log_event(slug, ERROR, text, version=version or None)


def _actor_label(actor: Any) -> str:
    if actor is None:
        return ""
    label = getattr(actor, "get_username", None)
    return f" by {label() if callable(label) else actor}"


@receiver(plugin_activated, dispatch_uid="gonext_logs_activated")
def _on_activated(sender: Any, plugin: Any, version: Any = None, actor: Any = None, **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"activated version {number}{_actor_label(actor)}", version=number)


@receiver(plugin_deactivated, dispatch_uid="gonext_logs_deactivated")
def _on_deactivated(sender: Any, plugin: Any, version: Any = None, actor: Any = None, **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"deactivated{_actor_label(actor)}", version=number)


@receiver(plugin_quarantined, dispatch_uid="gonext_logs_quarantined")
def _on_quarantined(sender: Any, plugin: Any, version: Any = None, details: Any = None,
                    **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    reason = (details or {}).get("reason") or plugin.state_reason
    log_event(plugin.slug, ERROR, f"quarantined: {reason}", version=number)


@receiver(plugin_faulted, dispatch_uid="gonext_logs_faulted")
def _on_faulted(sender: Any, slug: str, kind: str, message: str, version: str = "", hook: str = "",
                guest_message: str = "", report: dict[str, Any] | None = None, **kwargs: Any) -> None:
    record_fault(slug, kind, message, version=version, hook=hook, guest_message=guest_message,
                 report=report)


@receiver(plugin_installed, dispatch_uid="gonext_logs_dev_installed")
@receiver(plugin_upgraded, dispatch_uid="gonext_logs_dev_upgraded")
def _on_dev_build(sender: Any, plugin: Any, version: Any = None, details: Any = None,
                  **kwargs: Any) -> None:
    details = details or {}
    if not details.get("dev"):
        return
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"dev build {number} installed ({details.get('status')})", version=number)
