"""``manage.py plugin hooks``: print the hooks this site offers plugins (its hook catalogue).

A mixin beside ``plugin.py`` like the lifecycle subcommands. The catalogue is what the site's
code declared with ``hooks.declare`` (usually in ``AppConfig.ready``), so this reads no database:
it shows what a plugin author may subscribe to on this site.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonext_plugins import hooks

HOOKS_SUBCOMMANDS: dict[str, str] = {
    "hooks": "list the hooks this site offers plugins (name, kind, arguments; --json)",
}


def format_catalogue(catalogue: list[hooks.DeclaredHook]) -> list[str]:
    """A table: NAME, KIND, ARGS, DESCRIPTION; one line per hook, argument meanings indented below."""
    if not catalogue:
        return ["this site declares no hooks (hooks.declare; see docs/site-developers.md)"]
    rows = [("NAME", "KIND", "ARGS", "DESCRIPTION")] + [
        (hook.name, hook.kind, ", ".join(arg.name for arg in hook.args) or "-", hook.description)
        for hook in catalogue]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines: list[str] = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                     + "  " + row[3])
        if index:
            hook = catalogue[index - 1]
            lines.extend(f"    {arg.name}: {arg.description}" for arg in hook.args if arg.description)
    return lines


class HooksCommands:
    """``args_hooks`` / ``handle_hooks`` for ``plugin.py``'s dispatcher."""

    stdout: Any

    def say(self, text: str) -> None:  # plugin.Command defines it too; here for the type checker
        self.stdout.write(text)

    def args_hooks(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", dest="as_json", action="store_true", help="machine-readable output")

    def handle_hooks(self, *, as_json: bool, **_: Any) -> None:
        catalogue = hooks.catalogue()
        if as_json:
            self.say(json.dumps([hook.as_dict() for hook in catalogue], indent=2, sort_keys=True))
            return
        for line in format_catalogue(catalogue):
            self.say(line)
