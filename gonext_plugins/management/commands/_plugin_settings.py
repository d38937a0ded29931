"""``manage.py plugin settings SLUG [KEY=VALUE ...] [--reset KEY]``: show or change a plugin's
settings from the shell, through :mod:`gonext_plugins.lifecycle.settings` (the same check, audit
and redaction as the admin and the API). A mixin of ``plugin.py``, like the lifecycle subcommands.

Without changes it prints each setting, a secret as ``(set)`` or ``(not set)``, never its value.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import CommandError

from gonext_plugins.management.commands._plugin_lifecycle import DONE, NOTHING_TO_DO, USAGE, actor_label

SETTINGS_SUBCOMMANDS: dict[str, str] = {
    "settings": "show a plugin's settings, or change them: KEY=VALUE to set, --reset KEY for the default",
}


class SettingsCommands:
    """``args_settings`` / ``handle_settings`` for ``plugin.py``'s dispatcher."""

    exit_code: int
    stdout: Any

    def say(self, text: str) -> None:  # plugin.Command defines it too; here for the type checker
        self.stdout.write(text)

    def args_settings(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                            help="numbers and booleans as JSON (250, true), strings as they are")
        parser.add_argument("--reset", action="append", default=[], metavar="KEY",
                            help="forget the saved value: the default applies again")

    def handle_settings(self, *, slug: str, assignments: list[str], reset: list[str], **_: Any) -> None:
        # Imported here, as the lifecycle subcommands do: keygen/pack/sign run without a database.
        from gonext_plugins import lifecycle
        from gonext_plugins.lifecycle._tx import fresh

        plugin = fresh(slug)
        if not assignments and not reset:
            for entry in lifecycle.settings.describe(plugin):
                shown = ("(set)" if entry["set"] else "(not set)") if entry["secret"] \
                    else json.dumps(entry.get("value"))
                self.say(f"{entry['name']} = {shown}{'' if entry['set'] else '  [default]'}")
            self.exit_code = DONE
            return
        version = plugin.active_version
        manifest = lifecycle.manifest_of(version) if version is not None else None
        changes: dict[str, Any] = {}
        for text in assignments:
            name, sep, value = text.partition("=")
            if not sep or not name:
                raise CommandError(f"usage: {text!r} is not KEY=VALUE", returncode=USAGE)
            changes[name] = lifecycle.settings.from_text(manifest, name, value) if manifest else value
        changes.update(dict.fromkeys(reset))
        result = lifecycle.settings.update(plugin, changes, actor_label())
        self.exit_code = DONE if result.changed else NOTHING_TO_DO
        self.say(f"{'saved' if result.changed else 'nothing to do: unchanged'}: "
                 f"{', '.join(sorted(changes))} of {slug}")
