"""``manage.py plugin <subcommand>``: bundles and keys from the shell, with exit codes scripts can use.

Exit codes: 0 done, 1 refused (printed as ``error: <code>: <message>`` on stderr), 2 usage,
3 nothing to do (the state asked for is already there: already active, the same version again...).
The lifecycle subcommands (install, list, show, activate, ... ``docs/commands.md``) only parse and
render; every change goes through ``gonext_plugins.lifecycle``.

Adding a subcommand: put its name and one-line help in :attr:`Command.SUBCOMMANDS`, then write
``args_<name>(parser)`` (its arguments; optional) and ``handle_<name>(**options)``. Dashes in a
name become underscores in the method names (``trust-key`` -> ``handle_trust_key``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, SystemCheckError

from gonext_plugins import bundle as bundles
from gonext_plugins import signing
from gonext_plugins.errors import ManifestError, PluginError
from gonext_plugins.management.commands._plugin_dev import DEV_SUBCOMMANDS, DevCommands
from gonext_plugins.management.commands._plugin_hooks import HOOKS_SUBCOMMANDS, HooksCommands
from gonext_plugins.management.commands._plugin_lifecycle import LifecycleCommands
from gonext_plugins.management.commands._plugin_preview import PREVIEW_SUBCOMMANDS, PreviewCommands
from gonext_plugins.management.commands._plugin_rollout import ROLLOUT_SUBCOMMANDS, RolloutCommands
from gonext_plugins.management.commands._plugin_run import RUN_SUBCOMMANDS, RunCommands
from gonext_plugins.management.commands._plugin_settings import SETTINGS_SUBCOMMANDS, SettingsCommands


def _method_name(prefix: str, subcommand: str) -> str:
    return f"{prefix}_{subcommand.replace('-', '_')}"


def refused(code: str, message: str) -> CommandError:
    """A refusal: exit status 1, printed as ``error: <code>: <message>``."""
    return CommandError(f"{code}: {message}", returncode=1)


def read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise refused("io_error", f"cannot read {path}: {exc.strerror}") from exc


def write_output(path: str, data: bytes) -> None:
    """Write atomically (temp file + rename), so a failed write never leaves half a bundle."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".gnplugin-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise refused("io_error", f"cannot write {path}: {exc.strerror}") from exc


LIFECYCLE_SUBCOMMANDS: dict[str, str] = {
    "install": "install a signed .gnplugin, granting its capabilities (--grant), optionally activating",
    "list": "list installed plugins with state, version and grants",
    "show": "one plugin: versions, capabilities and grants, state, recent audit events",
    "activate": "run the plugin's current version in every process",
    "deactivate": "stop the plugin in every process (versions, grants and data stay)",
    "upgrade": "install a newer version of an installed plugin and switch to it",
    "rollback": "switch back to an older installed version",
    "uninstall": "remove a plugin, its versions and grants (and its data unless --keep-data)",
    "grant": "grant capabilities the plugin asks for",
    "revoke": "revoke one capability (a required one deactivates the plugin)",
    "trust-key": "trust a publisher's public key (base64, or a key file)",
    "revoke-key": "revoke a publisher key; plugins it signed are deactivated",
    "gc": "delete stored wasm blobs no installed version refers to (left by a crash; --dry-run lists them)",
}


class Command(DevCommands, HooksCommands, LifecycleCommands, PreviewCommands, RolloutCommands, RunCommands,
              SettingsCommands, BaseCommand):
    help = ("Manage gonext plugins: write them (new: scaffold a plugin; dev: build, upload to a dev site, "
            "watch, diff capabilities, tail logs; see docs/plugin-authors.md; run: one hook against a "
            "fixture, no site needed), keys and bundles (keygen, "
            "pack, sign, verify) and installed plugins (install, list, show, activate, deactivate, "
            "upgrade, rollback, rollout, uninstall, grant, revoke, settings, trust-key, revoke-key, gc), "
            "a page previewed with a plugin version active for that render only (preview), and the "
            "hooks this site offers (hooks). Exit codes: 0 done, "
            "1 refused (stderr: 'error: <code>: <message>'), 2 usage error, 3 nothing to do (already in "
            "that state).")
    requires_system_checks: list[str] = []  # keygen/pack/sign need no database

    SUBCOMMANDS: dict[str, str] = {
        "keygen": "create a publisher key pair file (ed25519, mode 0600)",
        "pack": "build a project in release mode and pack it (or manifest.json + plugin.wasm) unsigned",
        "sign": "sign a .gnplugin with a publisher key file",
        "verify": "check a .gnplugin completely: layout, manifest and signature",
        **LIFECYCLE_SUBCOMMANDS,
        **SETTINGS_SUBCOMMANDS,
        **PREVIEW_SUBCOMMANDS,
        **ROLLOUT_SUBCOMMANDS,
        **HOOKS_SUBCOMMANDS,
        **DEV_SUBCOMMANDS,
        **RUN_SUBCOMMANDS,
    }

    # --- plumbing ------------------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        for name, text in self.SUBCOMMANDS.items():
            sub = subparsers.add_parser(name, help=text, description=text)
            add = getattr(self, _method_name("args", name), None)
            if add is not None:
                add(sub)

    def execute(self, *args: Any, **options: Any) -> Any:
        """On the command line, print refusals as ``error: ...`` (not Django's ``CommandError: ...``)
        and exit with their return code; from ``call_command`` they are raised as usual."""
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            if (not getattr(self, "_called_from_command_line", False) or options.get("traceback")
                    or isinstance(exc, SystemCheckError)):
                raise
            self.stderr.write(f"error: {exc}")
            sys.exit(exc.returncode)

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        handler = getattr(self, _method_name("handle", subcommand))
        try:
            handler(**options)
        except ManifestError as exc:
            lines = "".join(f"\n  {path}: {text}" for path, text in exc.problems)
            raise refused(exc.code, f"manifest has {len(exc.problems)} problem(s):{lines}") from exc
        except PluginError as exc:
            raise refused(exc.code, exc.message) from exc

    def say(self, text: str) -> None:
        self.stdout.write(text)

    # --- keygen --------------------------------------------------------------------------------

    def args_keygen(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="publisher name shown to admins")
        parser.add_argument("--out", required=True, help="key file to create (never overwritten)")

    def handle_keygen(self, *, name: str, out: str, **_: Any) -> None:
        key = signing.KeyFile.generate(name)
        signing.write_key_file(out, key)
        self.say(f"wrote {out} (mode 0600; keep it secret)\n"
                 f"name:        {key.name}\n"
                 f"public key:  {key.public_key}\n"
                 f"fingerprint: {key.fingerprint}")

    # --- pack ----------------------------------------------------------------------------------

    def args_pack(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("directory", nargs="?",
                            help="a plugin project: build it in release mode, then pack that build "
                                 "(instead of --manifest and --wasm)")
        parser.add_argument("--manifest", help="manifest.json")
        parser.add_argument("--wasm", help="the compiled plugin.wasm")
        parser.add_argument("--out", help="the .gnplugin to write (default with DIRECTORY: "
                                          "DIRECTORY/build/release/<slug>-<version>.gnplugin)")

    def handle_pack(self, *, directory: str | None, manifest: str | None, wasm: str | None,
                    out: str | None, **_: Any) -> None:
        if directory is not None:
            if manifest or wasm:
                raise CommandError("usage: give a project DIRECTORY or --manifest and --wasm, not both",
                                   returncode=2)
            manifest_bytes, wasm_bytes, default_out = self.build_release(directory)
            out = out or str(default_out)
        elif manifest and wasm and out:
            manifest_bytes, wasm_bytes = read_input(manifest), read_input(wasm)
        else:
            raise CommandError("usage: plugin pack DIRECTORY [--out OUT], or plugin pack --manifest M "
                               "--wasm W --out OUT", returncode=2)
        data = bundles.pack(manifest_bytes, wasm_bytes)
        write_output(out, data)
        self.say(f"packed {out} ({len(data):,} bytes, unsigned); sign it with "
                 f"`manage.py plugin sign {out} --key KEYFILE`")

    # --- sign ----------------------------------------------------------------------------------

    def args_sign(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("bundle", help="the .gnplugin to sign")
        parser.add_argument("--key", required=True, help="key file made by `plugin keygen`")
        parser.add_argument("--out", help="where to write the signed bundle (default: replace BUNDLE)")

    def handle_sign(self, *, bundle: str, key: str, out: str | None, **_: Any) -> None:
        keyfile = signing.load_key_file(key)
        data = bundles.sign(read_input(bundle), keyfile.private_key)
        target = out or bundle
        write_output(target, data)
        self.say(f"signed {target} with {keyfile.name} ({keyfile.fingerprint})")

    # --- verify --------------------------------------------------------------------------------

    def args_verify(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("bundle", help="the .gnplugin to check")
        parser.add_argument("--key", help="trust only this key file's key (default: trusted keys in the "
                                          "database)")

    def handle_verify(self, *, bundle: str, key: str | None, **_: Any) -> None:
        lookup = None
        if key:
            keyfile = signing.load_key_file(key)

            def lookup(fingerprint: str) -> bundles.KeyInfo | None:
                if fingerprint == keyfile.fingerprint:
                    return bundles.KeyInfo(keyfile.name, keyfile.public_key)
                return None

        result = bundles.read(read_input(bundle), key_lookup=lookup, require_signature=True)
        manifest = result.manifest
        self.say(f"ok: {manifest.slug} {manifest.version} ({manifest.name})\n"
                 f"signature:       {result.signature.status} by {result.signature.key_name} "
                 f"({result.signature.fingerprint})\n"
                 f"bundle sha256:   {result.bundle_sha256} ({result.size:,} bytes)\n"
                 f"manifest sha256: {result.manifest_sha256}\n"
                 f"wasm sha256:     {result.wasm_sha256} ({len(result.wasm):,} bytes)\n"
                 f"capabilities:    {', '.join(manifest.capabilities) or '(none)'}"
                 + (f"\noptional:        {', '.join(manifest.optional_capabilities)}"
                    if manifest.optional_capabilities else ""))
