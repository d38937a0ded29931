"""``manage.py plugin rollout SLUG --staff | --percent N [--version V] | --promote | --rollback
[--reason TEXT] | --status [--json]``: a staged rollout from the shell, through
:mod:`gonext_plugins.lifecycle.rollout` (the same checks and audit as the admin and the API). A
mixin of ``plugin.py``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonext_plugins.management.commands._plugin_lifecycle import DONE, NOTHING_TO_DO, actor_label

ROLLOUT_SUBCOMMANDS: dict[str, str] = {
    "rollout": "activate for staff or a share of visitors first, then promote or roll back; "
               "--status shows the cohorts' figures",
}


class RolloutCommands:
    """``args_rollout`` / ``handle_rollout`` for ``plugin.py``'s dispatcher."""

    exit_code: int
    stdout: Any

    def say(self, text: str) -> None:  # plugin.Command defines it too; here for the type checker
        self.stdout.write(text)

    def args_rollout(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--staff", action="store_true", help="run it for staff users only")
        what.add_argument("--percent", type=int, metavar="N", help="run it for N%% of visitors (1-99)")
        what.add_argument("--promote", action="store_true", help="run it for everyone")
        what.add_argument("--rollback", action="store_true", help="end the rollout: deactivate it")
        what.add_argument("--status", action="store_true", help="show the rollout and its figures")
        parser.add_argument("--version", metavar="V", help="with --staff/--percent: roll out an upgrade "
                            "to this installed version, newer than the running one")
        parser.add_argument("--reason", default="", help="with --rollback: kept in the audit row")
        parser.add_argument("--json", action="store_true", help="with --status: print JSON")

    def handle_rollout(self, *, slug: str, staff: bool, percent: int | None, promote: bool, rollback: bool,
                       status: bool, reason: str, json: bool, version: str | None = None, **_: Any) -> None:
        # Imported here, as the lifecycle subcommands do: keygen/pack/sign run without a database.
        from gonext_plugins import lifecycle, rollout
        from gonext_plugins.lifecycle._tx import fresh

        plugin = fresh(slug)
        self.exit_code = DONE
        if status:
            self._print_status(plugin.slug, plugin.state, rollout.state(plugin.slug), as_json=json)
            return
        if promote:
            lifecycle.rollout.promote(plugin, actor_label())
            self.say(f"promoted: {slug} runs for everyone")
            return
        if rollback:
            result = lifecycle.rollout.roll_back(plugin, actor_label(), reason=reason)
            if result.plugin.state == "active" and result.version is not None:
                self.say(f"rolled back: {slug} is back to {result.version.version} for everyone")
            else:
                self.say(f"rolled back: {slug} is deactivated")
            return
        mode = "staff" if staff else "percent"
        result = lifecycle.rollout.start(plugin, actor_label(), mode=mode, percent=percent, version=version)
        self.exit_code = DONE if result.changed else NOTHING_TO_DO
        cohort = "staff only" if staff else f"{percent}% of visitors"
        self.say(f"{'rolling out' if result.changed else 'nothing to do: already rolling out'}: "
                 f"{slug} for {cohort}")

    def _print_status(self, slug: str, state: str, current: dict[str, Any] | None, *, as_json: bool) -> None:
        if as_json:
            self.say(json.dumps({"slug": slug, "state": state, "rollout": current}, indent=2))
            return
        if current is None:
            self.say(f"{slug}: not in a rollout ({state})")
            return
        f = current["figures"]
        cohort = "staff only" if current["mode"] == "staff" else f"{current['percent']}% of visitors"

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        rate = "-" if f["fault_rate"] is None else f"{f['fault_rate']:.1%}"
        what = (f"upgrade {current['previous_version']} -> {current['version']}" if current.get("upgrade")
                else current["version"])
        self.say(f"{slug} {what}: rolling out to {cohort} since {current['started_at']} "
                 f"(by {current['started_by'] or 'system'})")
        self.say(f"  requests with it: {f['with_requests']} (mean {ms(f['with_mean_ms'])}), "
                 f"without: {f['without_requests']} (mean {ms(f['without_mean_ms'])}), "
                 f"added: {ms(f['added_ms'])} (limit {f['max_added_ms']:g} ms)")
        self.say(f"  {f['fault_basis']}: {f['calls']}, faults: {f['faults']}, fault rate: {rate} "
                 f"(limit {f['max_fault_rate']:.1%}); judged after {f['min_requests']} requests per cohort")
        if f.get("previous_fault_rate") is not None:
            self.say(f"  previous version {current['previous_version']}: {f['previous_faults']} faults in "
                     f"{f['without_requests']} requests ({f['previous_fault_rate']:.1%})")
