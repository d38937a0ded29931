"""``manage.py plugin preview SLUG PATH [--version V | --bundle FILE] [--json] [--host HOST]``: render one
page of the site with a plugin version active for that render only (:mod:`gonext_plugins.preview`),
and print the diff of its HTML, the plugin's hook calls, its log lines, faults and held-back writes.
A mixin of ``plugin.py``, like the lifecycle subcommands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from gonext_plugins.management.commands._plugin_lifecycle import DONE, USAGE

PREVIEW_SUBCOMMANDS: dict[str, str] = {
    "preview": "render a page of the site with a plugin version active for that render only, and show "
               "the HTML diff, its hook calls, logs and faults (nothing it writes is kept)",
}


class PreviewCommands:
    """``args_preview`` / ``handle_preview`` for ``plugin.py``'s dispatcher."""

    exit_code: int
    stdout: Any

    def say(self, text: str) -> None:  # plugin.Command defines it too; here for the type checker
        self.stdout.write(text)

    def args_preview(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("path", help="a path of this site, e.g. / or /posts/hello/")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--version", help="an installed version (default: the one activation would run, "
                                              "or for an active plugin its newest other version)")
        source.add_argument("--bundle", metavar="FILE", help="a signed .gnplugin, not installed")
        parser.add_argument("--host", help="the Host header (default: the first plain ALLOWED_HOSTS name)")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print the whole result as JSON")

    def handle_preview(self, *, slug: str, path: str, version: str | None, bundle: str | None,
                       host: str | None, as_json: bool, **_: Any) -> None:
        # Imported here, as the lifecycle subcommands do: keygen/pack/sign run without a database.
        from gonext_plugins import bundle as bundles
        from gonext_plugins import preview
        from gonext_plugins.models import Plugin

        plugin = Plugin.objects.filter(slug=slug).first()
        if bundle is not None:
            try:
                staged = bundles.read(Path(bundle).read_bytes())
            except OSError as exc:
                raise _usage(f"cannot read {bundle}: {exc.strerror}") from exc
            if staged.manifest.slug != slug:
                raise _usage(f"{bundle} is plugin {staged.manifest.slug!r}, not {slug!r}")
            candidate = preview.candidate_for_bundle(staged, plugin)
        elif plugin is None:
            raise _usage(f"no plugin {slug!r} is installed; give --bundle FILE to preview one that is not")
        else:
            candidate = preview.candidate_for_plugin(plugin, version)
        result = preview.preview(candidate, path, host=host)
        if as_json:
            self.say(_json_dumps(result.as_dict()))
        else:
            self._print(result)
        self.exit_code = DONE

    def _print(self, result: Any) -> None:
        self.say(f"{result.slug} {result.version} ({result.origin}) on {result.path}: before "
                 f"{result.before.status} {result.before_label}, after {result.after.status} "
                 f"({result.elapsed_ms} ms)")
        self.say(result.diff or "(the HTML is the same)")
        self.say(f"hook calls ({len(result.calls)}):")
        for call in result.calls:
            self.say(f"  {call['kind']:<6} {call['hook']:<24} {call['status']:<12} {call['ms']:>9.3f} ms "
                     f"fuel {call['fuel']:>9} memory {call['memory_bytes']} B")
        for line in result.logs:
            self.say(f"  log [{line['source']}:{line['level']}] {line['message']}")
        for fault in result.faults:
            self.say(f"  fault on {fault['hook']} ({fault['kind']}): {fault['message']}")
        for write in result.writes:
            self.say(f"  held back: {write['function']} {write['target']} -> {write['outcome']}")


def _usage(message: str) -> CommandError:
    return CommandError(f"usage: {message}", returncode=USAGE)


def _json_dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
