"""The lifecycle subcommands of ``manage.py plugin`` (install, list, show, activate, ...).

Kept beside ``plugin.py`` as a mixin so the bundle/key subcommands and these grow independently;
``plugin.py`` lists them in ``SUBCOMMANDS`` and dispatches to the ``args_*`` / ``handle_*`` methods
here exactly as to its own. Thin on purpose: parse, call :mod:`gonext_plugins.lifecycle`, render.

Exit codes (``docs/commands.md``): 0 done, 1 refused, 2 usage error, 3 nothing to do. One module
although it is long: one mixin of thin subcommands sharing the helpers below, each a few lines.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from gonext_plugins.errors import ConsentRequired, PublisherChanged
from gonext_plugins.manifest import version_key

DONE, REFUSED, USAGE, NOTHING_TO_DO = 0, 1, 2, 3
AUDIT_LIMIT = 10


def actor_label() -> str:
    """Who the audit log says did it: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = str(os.getuid())
    return f"cli:{user}"


def _refused(code: str, message: str) -> CommandError:
    return CommandError(f"{code}: {message}", returncode=REFUSED)


def _usage(message: str) -> CommandError:
    return CommandError(f"usage: {message}", returncode=USAGE)


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _grant_flags(names: Iterable[str]) -> str:
    return " ".join(f"--grant {name}" for name in sorted(names))


@contextlib.contextmanager
def _consent_hint(how: str) -> Iterator[None]:
    """Turn ``ConsentRequired`` into a refusal that lists what is missing and says how to add it:
    ``how`` is ``"flags"`` (install/upgrade: the ``--grant`` flags to add) or a slug (the
    ``plugin grant`` command to run)."""
    try:
        yield
    except PublisherChanged as exc:
        raise _refused(exc.code, f"{exc.message}\n  add: --accept-new-publisher") from exc
    except ConsentRequired as exc:
        fix = (f"add: {_grant_flags(exc.missing)}" if how == "flags"
               else f"run: manage.py plugin grant {how} {' '.join(exc.missing)}")
        missing = ", ".join(exc.missing)
        raise _refused(exc.code, f"{exc.message}\n  missing capabilities: {missing}\n  {fix}") from exc


class LifecycleCommands:
    """``args_<name>`` / ``handle_<name>`` for each lifecycle subcommand (see ``plugin.py``)."""

    exit_code: int = DONE
    stdout: Any
    stderr: Any

    def say(self, text: str) -> None:  # plugin.Command defines it too; here for the type checker
        self.stdout.write(text)

    # --- plumbing: exit status 3 and JSON ------------------------------------------------------

    def execute(self, *args: Any, **options: Any) -> Any:
        """Start every run at exit status 0 (``call_command`` may reuse an instance)."""
        self.exit_code = DONE
        return super().execute(*args, **options)  # type: ignore[misc]  # a mixin: BaseCommand has it

    def run_from_argv(self, argv: list[str]) -> None:
        """On the command line a no-op exits 3 (a refusal already exits 1 inside ``execute``)."""
        self.exit_code = DONE
        super().run_from_argv(argv)  # type: ignore[misc]  # a mixin: BaseCommand has it
        if self.exit_code:
            sys.exit(self.exit_code)

    def nothing_to_do(self, text: str) -> None:
        """Report a no-op: exit status 3 on the command line, ``exit_code == 3`` on the instance."""
        self.exit_code = NOTHING_TO_DO
        self.say(f"nothing to do: {text}")

    def done(self, text: str) -> None:
        self.exit_code = DONE
        self.say(text)

    def say_json(self, data: Any) -> None:
        """Stable JSON: sorted keys, two-space indent, ISO 8601 timestamps."""
        self.say(json.dumps(data, indent=2, sort_keys=True, default=str))

    # --- shared argument helpers ---------------------------------------------------------------

    @staticmethod
    def _grant_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
        parser.add_argument("--grant", dest="grants", action="extend", nargs="+", default=[],
                            metavar="CAP", required=required,
                            help="capability to grant (repeat, or list several); every required "
                                 "capability the plugin asks for must be granted")
        parser.add_argument("--grant-host", dest="hosts", action="extend", nargs="+", default=None,
                            metavar="HOST", help="for http.fetch: allow only these of the manifest's "
                                                 "hosts (default: all it lists)")

    @staticmethod
    def _read_bundle(path: str) -> Any:
        from gonext_plugins import bundle as bundles

        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise _refused("io_error", f"cannot read {path}: {exc.strerror}") from exc
        return bundles.read(data)

    @staticmethod
    def _plugin(slug: str) -> Any:
        from gonext_plugins.errors import PluginNotFound
        from gonext_plugins.models import Plugin

        plugin = Plugin.objects.filter(slug=slug).select_related("active_version").first()
        if plugin is None:
            raise PluginNotFound(f"no plugin {slug!r} is installed; see `manage.py plugin list`",
                                 plugin=slug)
        return plugin

    # --- install -------------------------------------------------------------------------------

    def args_install(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("bundle", help="the signed .gnplugin")
        self._grant_args(parser)
        parser.add_argument("--activate", action="store_true", help="activate in the same transaction")

    def handle_install(self, *, bundle: str, grants: list[str], hosts: list[str] | None,
                       activate: bool, **_: Any) -> None:
        from gonext_plugins import lifecycle
        from gonext_plugins.errors import PluginExists

        data = self._read_bundle(bundle)
        try:
            with _consent_hint("flags"):
                result = lifecycle.install(data, grants, actor_label(), activate=activate, hosts=hosts)
        except PluginExists as exc:
            raise _refused(exc.code, f"{exc.message}: manage.py plugin upgrade {data.slug} {bundle}") from exc
        plugin = result.plugin
        self.done(f"installed {plugin.slug} {data.version} ({plugin.state}); granted: "
                  f"{', '.join(sorted(set(grants))) or '(nothing)'}"
                  + ("" if activate else f"\nactivate it with: manage.py plugin activate {plugin.slug}"))

    # --- list / show ---------------------------------------------------------------------------

    def args_list(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", dest="as_json", action="store_true", help="machine-readable output")

    @staticmethod
    def _summary(plugin: Any) -> dict[str, Any]:
        from gonext_plugins.lifecycle.compat import version_reasons

        version = plugin.active_version
        return {
            "slug": plugin.slug,
            "name": plugin.name,
            "state": plugin.state,
            "state_reason": plugin.state_reason,
            "version": version.version if version else None,
            "signed": version.signed if version else None,
            "versions": sorted(v.version for v in plugin.versions.all()),
            "grants": sorted(g.capability for g in plugin.grants.all()),
            "incompatible": [r.as_dict() for r in version_reasons(plugin.slug, version)] if version else [],
        }

    def handle_list(self, *, as_json: bool, **_: Any) -> None:
        from gonext_plugins.models import Plugin

        plugins = [self._summary(p) for p in Plugin.objects.order_by("slug").select_related(
            "active_version").prefetch_related("versions", "grants")]
        if as_json:
            self.say_json(plugins)
            return
        if not plugins:
            self.say("no plugins installed")
            return
        rows = [("SLUG", "VERSION", "STATE", "GRANTS")] + [
            (p["slug"], p["version"] or "-", p["state"] + (" (incompatible)" if p["incompatible"] else ""),
             ",".join(p["grants"]) or "-") for p in plugins]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            self.say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                     + "  " + row[3])

    def args_show(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", dest="as_json", action="store_true", help="machine-readable output")
        parser.add_argument("--audit", type=int, default=AUDIT_LIMIT, metavar="N",
                            help=f"how many recent audit events (default {AUDIT_LIMIT})")

    def _details(self, plugin: Any, audit_limit: int) -> dict[str, Any]:
        from gonext_plugins import capabilities, lifecycle
        from gonext_plugins.models import AuditEvent

        data = self._summary(plugin)
        active = plugin.active_version
        manifest = lifecycle.manifest_of(active) if active else None
        grants = {g.capability: g for g in plugin.grants.all()}
        data.update(description=plugin.description, author=plugin.author, homepage=plugin.homepage,
                    installed_at=_when(plugin.created_at), updated_at=_when(plugin.updated_at))
        data["versions"] = [{
            "version": v.version,
            "active": active is not None and v.pk == active.pk,
            "installed_at": _when(v.installed_at),
            "wasm_sha256": v.wasm_sha256,
            "wasm_size": v.wasm_size,
            "signed": v.signed,
            "publisher": v.publisher_key.name if v.publisher_key else None,
            "fingerprint": v.publisher_key.fingerprint if v.publisher_key else None,
        } for v in sorted(plugin.versions.select_related("publisher_key"),
                          key=lambda v: version_key(v.version))]
        asked = ([(name, True) for name in manifest.capabilities]
                 + [(name, False) for name in manifest.optional_capabilities]) if manifest else []
        known = {c.name: c for c in capabilities.all_capabilities()}
        data["capabilities"] = [{
            "name": name,
            "required": required,
            "granted": name in grants,
            "risk": known[name].risk if name in known else None,
            "description": known[name].description if name in known else None,
        } for name, required in asked]
        data["grants"] = [{"capability": name, "granted_at": _when(g.granted_at), "hosts": list(g.hosts)}
                          for name, g in sorted(grants.items())]
        data["audit"] = [{
            "at": _when(e.created_at), "action": e.action, "actor": e.actor_label or
            (e.actor.get_username() if e.actor else None), "version": e.version, "details": e.details,
        } for e in AuditEvent.objects.filter(plugin_slug=plugin.slug).select_related("actor")[:audit_limit]]
        return data

    def handle_show(self, *, slug: str, as_json: bool, audit: int, **_: Any) -> None:
        data = self._details(self._plugin(slug), max(audit, 0))
        if as_json:
            self.say_json(data)
            return
        reason = f" ({data['state_reason']})" if data["state_reason"] else ""
        lines = [f"{data['slug']}: {data['name']}",
                 f"state:    {data['state']}{reason}",
                 f"version:  {data['version'] or '-'}"]
        if data["incompatible"]:
            skipped = ", skipped" if data["state"] == "active" else ""
            lines.append(f"incompatible (this site cannot run it{skipped}): "
                         + "; ".join(reason["message"] for reason in data["incompatible"]))
        if data["author"]:
            lines.append(f"author:   {data['author']}")
        lines.append("versions:")
        for v in data["versions"]:
            signer = f"signed by {v['publisher']} ({v['fingerprint'][:16]})" if v["signed"] else "UNSIGNED"
            lines.append(f"  {'*' if v['active'] else ' '} {v['version']:<12} {v['installed_at']}  "
                         f"sha256 {v['wasm_sha256'][:16]}  {signer}")
        lines.append("capabilities:")
        for c in data["capabilities"]:
            lines.append(f"  [{'x' if c['granted'] else ' '}] {c['name']:<20} "
                         f"{'required' if c['required'] else 'optional'}  risk {c['risk'] or '?'}")
        asked = {c["name"] for c in data["capabilities"]}
        extra = [g for g in data["grants"] if g["capability"] not in asked]
        for g in extra:
            lines.append(f"  [x] {g['capability']:<20} granted (not asked for by this version)")
        lines.append("recent audit:")
        for e in data["audit"]:
            lines.append(f"  {e['at']}  {e['action']:<12} {e['version'] or '-':<10} by {e['actor']}")
        self.say("\n".join(lines))

    # --- activate / deactivate -----------------------------------------------------------------

    def args_activate(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")

    def handle_activate(self, *, slug: str, **_: Any) -> None:
        from gonext_plugins import lifecycle

        with _consent_hint(slug):
            result = lifecycle.activate(slug, actor_label())
        version = result.version.version if result.version else "-"
        if not result.changed:
            self.nothing_to_do(f"{slug} {version} is already active")
        else:
            self.done(f"activated {slug} {version}; every process picks it up within its sync interval")

    def args_deactivate(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--reason", default="", help="recorded in the audit log")

    def handle_deactivate(self, *, slug: str, reason: str, **_: Any) -> None:
        from gonext_plugins import lifecycle

        result = lifecycle.deactivate(slug, actor_label(), reason=reason)
        if not result.changed:
            self.nothing_to_do(f"{slug} is already inactive")
        else:
            self.done(f"deactivated {slug}; every process drops it within its sync interval")

    # --- upgrade / rollback --------------------------------------------------------------------

    def args_upgrade(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("bundle", help="the signed .gnplugin of the new version")
        self._grant_args(parser)
        parser.add_argument("--accept-new-publisher", action="store_true", dest="accept_new_publisher",
                            help="upgrade even though the new version is signed by another publisher key")
        first = parser.add_mutually_exclusive_group()
        first.add_argument("--rollout-staff", action="store_true", dest="rollout_staff",
                           help="run the new version for staff only first (the others keep the running one)")
        first.add_argument("--rollout-percent", type=int, metavar="N", dest="rollout_percent",
                           help="run the new version for N%% of visitors first (1-99)")

    def handle_upgrade(self, *, slug: str, bundle: str, grants: list[str], hosts: list[str] | None,
                       accept_new_publisher: bool = False, rollout_staff: bool = False,
                       rollout_percent: int | None = None, **_: Any) -> None:
        from gonext_plugins import lifecycle

        data = self._read_bundle(bundle)
        before = self._plugin(slug).active_version
        staged = rollout_staff or rollout_percent is not None
        with _consent_hint("flags"):
            if staged:
                result = lifecycle.rollout.start_upgrade(
                    slug, data, grants, actor_label(), mode="staff" if rollout_staff else "percent",
                    percent=rollout_percent, hosts=hosts, accept_new_publisher=accept_new_publisher)
            else:
                result = lifecycle.upgrade(slug, data, grants, actor_label(), hosts=hosts,
                                           accept_new_publisher=accept_new_publisher)
        if not result.changed:
            self.nothing_to_do(f"{slug} {data.version} is already installed with these exact contents")
        elif staged:
            cohort = "staff only" if rollout_staff else f"{rollout_percent}% of visitors"
            self.done(f"rolling out {slug} {before.version if before else '-'} -> {data.version} to "
                      f"{cohort}; the others keep {before.version if before else '-'} "
                      f"(manage.py plugin rollout {slug} --promote | --rollback)")
        else:
            self.done(f"upgraded {slug} {before.version if before else '-'} -> {data.version} "
                      f"({result.plugin.state})")

    def args_rollback(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--to", dest="to_version", metavar="VERSION",
                            help="the installed version to switch to (default: the newest older one)")

    def handle_rollback(self, *, slug: str, to_version: str | None, **_: Any) -> None:
        from gonext_plugins import lifecycle

        before = self._plugin(slug).active_version
        with _consent_hint(slug):
            result = lifecycle.rollback(slug, actor_label(), to_version=to_version)
        target = result.version.version if result.version else "-"
        if not result.changed:
            self.nothing_to_do(f"{slug} already runs {target}")
        else:
            self.done(f"rolled back {slug} {before.version if before else '-'} -> {target}")

    # --- uninstall -----------------------------------------------------------------------------

    def args_uninstall(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--keep-data", action="store_true", help="keep the plugin's kv data for a "
                                                                     "later reinstall")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle_uninstall(self, *, slug: str, keep_data: bool, yes: bool, **_: Any) -> None:
        from gonext_plugins import lifecycle

        plugin = self._plugin(slug)
        if not yes:
            if not sys.stdin.isatty():
                raise _usage(f"uninstall deletes {slug}'s versions and grants"
                             f"{'' if keep_data else ' and data'}; pass --yes to confirm")
            answer = input(f"Uninstall {slug} ({plugin.state}){'' if keep_data else ' and delete its data'}? "
                           "Type the slug to confirm: ")
            if answer.strip() != slug:
                raise _refused("aborted", "not confirmed; nothing was changed")
        lifecycle.uninstall(slug, actor_label(), keep_data=keep_data)
        self.done(f"uninstalled {slug}" + (" (its kv data is kept)" if keep_data else ""))

    # --- grants --------------------------------------------------------------------------------

    def args_grant(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("capabilities", nargs="+", metavar="CAP")
        parser.add_argument("--grant-host", dest="hosts", action="extend", nargs="+", default=None,
                            metavar="HOST", help="for http.fetch: the manifest hosts to allow")

    def handle_grant(self, *, slug: str, capabilities: list[str], hosts: list[str] | None, **_: Any) -> None:
        from gonext_plugins import lifecycle

        result = lifecycle.grant(slug, capabilities, actor_label(), hosts=hosts)
        if not result.changed:
            self.nothing_to_do(f"{slug} already has {', '.join(sorted(set(capabilities)))}")
        else:
            self.done(f"granted {', '.join(sorted(set(capabilities)))} to {slug}")

    def args_revoke(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("capability", metavar="CAP")

    def handle_revoke(self, *, slug: str, capability: str, **_: Any) -> None:
        from gonext_plugins import lifecycle

        result = lifecycle.revoke(slug, capability, actor_label())
        if not result.changed:
            self.nothing_to_do(f"{slug} does not have {capability}")
            return
        text = f"revoked {capability} from {slug}"
        if result.plugin.state != "active" and result.plugin.state_reason.endswith("was revoked"):
            text += f"; {slug} needs it, so it was deactivated"
        self.done(text)

    # --- publisher keys ------------------------------------------------------------------------

    def args_trust_key(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", help="publisher name shown to admins")
        parser.add_argument("key", metavar="PUBLIC_KEY_OR_KEYFILE",
                            help="base64 ed25519 public key, or a file holding one (a `plugin keygen` "
                                 "key file, or a JSON object with publicKey, or the bare base64)")

    @staticmethod
    def _public_key(value: str) -> str:
        path = Path(value)
        if not path.is_file():
            return value.strip()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _refused("io_error", f"cannot read {value}: {exc}") from exc
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise _refused("bad_key_file", f"{value} is not valid JSON: {exc}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("publicKey"), str):
                raise _refused("bad_key_file", f"{value} has no publicKey")
            return str(data["publicKey"])
        return text

    def handle_trust_key(self, *, name: str, key: str, **_: Any) -> None:
        from gonext_plugins import lifecycle, signing
        from gonext_plugins.models import PublisherKey

        public = self._public_key(key)
        try:
            raw = signing.b64decode_exact(public, signing.KEY_BYTES, "public key")
        except ValueError as exc:
            raise _refused("bad_signature", f"not an ed25519 public key: {exc}") from exc
        fingerprint = signing.fingerprint(raw)
        existing = PublisherKey.objects.filter(fingerprint=fingerprint).first()
        if existing is not None and existing.usable:
            self.nothing_to_do(f"key {fingerprint} is already trusted as {existing.name!r}")
            return
        row = lifecycle.trust_key(name, public, actor_label())
        self.done(f"trusted {row.name}: {row.fingerprint}")

    def args_revoke_key(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("fingerprint", metavar="FINGERPRINT_PREFIX",
                            help="the key's sha256 fingerprint or an unambiguous prefix of it")

    def handle_revoke_key(self, *, fingerprint: str, **_: Any) -> None:
        from gonext_plugins import lifecycle
        from gonext_plugins.models import PublisherKey

        prefix = fingerprint.strip().lower()
        if not prefix:
            raise _usage("give the key's fingerprint (or a prefix of it)")
        keys = list(PublisherKey.objects.filter(fingerprint__startswith=prefix)[:5])
        if not keys:
            raise _refused("not_found", f"no publisher key has a fingerprint starting with {prefix}")
        if len(keys) > 1:
            matches = ", ".join(f"{k.fingerprint[:16]} ({k.name})" for k in keys)
            raise _refused("ambiguous", f"{prefix} matches several keys: {matches}; "
                                        "give more of the fingerprint")
        key = keys[0]
        if key.revoked_at is not None:
            self.nothing_to_do(f"key {key.fingerprint} ({key.name}) is already revoked")
            return
        affected = lifecycle.revoke_key(key, actor_label())
        self.done(f"revoked {key.name}: {key.fingerprint}; deactivated: {', '.join(affected) or '(none)'}")

    # --- gc ------------------------------------------------------------------------------------

    def args_gc(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true", dest="dry_run",
                            help="list the blobs that would be deleted, delete nothing")
        parser.add_argument("--grace", type=float, default=3600, metavar="SECONDS",
                            help="keep blobs younger than this: an install may be writing them "
                                 "(default 3600)")

    def handle_gc(self, *, dry_run: bool, grace: float, **_: Any) -> None:
        from gonext_plugins import lifecycle

        if grace < 0:
            raise _usage("--grace must be 0 or more seconds")
        names = lifecycle.collect_blobs(grace_seconds=grace, dry_run=dry_run)
        if not names:
            self.nothing_to_do("no orphaned blobs")
            return
        for name in names:
            self.say(name)
        verb = "would delete" if dry_run else "deleted"
        self.done(f"{verb} {len(names)} orphaned blob{'s' if len(names) != 1 else ''}")
