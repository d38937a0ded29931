"""Plugin settings: what a plugin reads (its effective values) and the one way an admin changes them.

A manifest declares its settings (``manifest.Manifest.settings``, checked by the manifest's own
schema). Only values an admin set are stored (``Plugin.settings``); a setting never set reads as its
default, so a new version's new keys take their defaults and an old value carries over wherever the
new schema accepts it. A stored value the running version refuses blocks activation until fixed
(:func:`gonext_plugins.lifecycle.preflight.check_settings`).

Secrets (``"secret": true``) are the plugin's: it reads them, but people never see them back. They
are written to the audit as redacted, shown to the API and the admin as set/not set, and never
appear in a refusal's message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from ..errors import InvalidSettings
from ..manifest import Manifest, settings_problems
from ..manifest import effective_settings as effective_values
from ..models import Plugin
from ._tx import Actor, Result, audit, bump_generation, lock_running, manifest_of

REDACTED = "[redacted]"


def problems_of(manifest: Manifest, stored: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Every problem the manifest's schema finds with the effective values (stored, then
    defaults), ``required`` settings included."""
    return settings_problems(manifest.settings, effective_values(manifest, stored),
                             manifest.required_settings)


def redact(manifest: Manifest, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every secret's value replaced by :data:`REDACTED` (for the audit and logs)."""
    return {name: REDACTED if manifest.settings.get(name, {}).get("secret") else value
            for name, value in values.items()}


def from_text(manifest: Manifest, name: str, text: str) -> Any:
    """A value typed as text (the command line, a form field) read as the setting's type: JSON for
    numbers and booleans (``true``, ``250``), the text itself for strings. Text that does not read as
    the type is returned as it is, so the schema's check names the problem at the field."""
    kind = manifest.settings.get(name, {}).get("type")
    if kind in ("integer", "number", "boolean"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def describe(plugin: Plugin) -> list[dict[str, Any]]:
    """The settings as people may see them, in declaration order: each one's schema (for a form),
    whether a value is set, and the effective value, except for secrets, shown as set or not."""
    version = plugin.active_version
    if version is None:
        return []
    manifest = manifest_of(version)
    stored = plugin.settings if isinstance(plugin.settings, Mapping) else {}
    values = effective_values(manifest, stored)
    described = []
    for name, spec in manifest.settings.items():
        secret = bool(spec.get("secret"))
        entry: dict[str, Any] = {
            "name": name, "type": spec["type"], "title": spec.get("title", name),
            "description": spec.get("description", ""), "secret": secret,
            "required": name in manifest.required_settings, "set": name in stored,
        }
        for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "format"):
            if key in spec:
                entry[key] = spec[key]
        if not secret:
            entry["default"] = spec.get("default")
            entry["value"] = values.get(name)
        described.append(entry)
    return described


def update(plugin: Plugin | str, changes: Any, actor: Actor) -> Result:
    """Set (or, with ``None``, reset to the default) some of the plugin's settings, checked against
    the current version's schema as a whole: a refusal lists every problem (:class:`InvalidSettings`)
    and changes nothing. Every change is audited with secrets redacted and bumps the generation, so
    every process's guests read the new values within ``SYNC_INTERVAL``. ``changes`` is untrusted
    (a request body): anything but an object of declared names is refused."""
    with transaction.atomic():
        locked, version, manifest = lock_running(plugin)
        if not isinstance(changes, Mapping):
            raise InvalidSettings("settings must be an object of names and values",
                                  problems=[("$", "must be an object")], plugin=locked.slug)
        unknown = sorted(set(changes) - set(manifest.settings))
        if unknown:
            known = ", ".join(manifest.settings) or "none"
            raise InvalidSettings(f"version {version.version} has no such setting",
                                  problems=[(name, f"is not a setting of this plugin (settings: {known})")
                                            for name in unknown], plugin=locked.slug)
        before = dict(locked.settings) if isinstance(locked.settings, Mapping) else {}
        after = dict(before)
        for name, value in changes.items():
            if value is None:
                after.pop(name, None)
            else:
                after[name] = value
        found = problems_of(manifest, after)
        if found:
            raise InvalidSettings("the settings were not saved", problems=found, plugin=locked.slug)
        changed = sorted(name for name in set(before) | set(after)
                         if before.get(name, ...) != after.get(name, ...))
        if not changed:
            return Result(locked, version, changed=False)
        locked.settings = after
        locked.save(update_fields=["settings", "updated_at"])
        audit("settings", locked, actor, version=version.version, changed=changed,
              before=redact(manifest, {n: before[n] for n in changed if n in before}),
              after=redact(manifest, {n: after[n] for n in changed if n in after}))
        bump_generation()
        return Result(locked, version)
