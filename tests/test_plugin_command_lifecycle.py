"""``manage.py plugin`` lifecycle subcommands: each operation, each refusal, list/show output, and
the exit codes a script relies on (0 done, 1 refused, 2 usage, 3 nothing to do), through
``call_command`` and, for the exit statuses themselves, through real subprocesses."""

from __future__ import annotations

import getpass
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from .conftest import REPO, guest_wasm, make_manifest

SLUG = "demo"
REQUIRED = ["kv", "hooks.subscribe"]
ACTOR = f"cli:{getpass.getuser()}"


def write_bundle(tmp_path: Path, key: str | None, name: str = "", **fields: Any) -> Path:
    """Pack (and sign with ``key`` unless None) a bundle of the abi guest; returns its path."""
    from gonext_plugins import bundle

    manifest = make_manifest(slug=SLUG, capabilities=REQUIRED, hooks=[{"name": "upper", "kind": "filter"}],
                             optionalCapabilities=["jobs.enqueue"])
    manifest.update(fields)
    raw = bundle.pack(manifest, guest_wasm())
    if key is not None:
        raw = bundle.sign(raw, key)
    path = tmp_path / (name or f"{manifest['slug']}-{manifest['version']}.gnplugin")
    path.write_bytes(raw)
    return path


def plugin(*args: str) -> tuple[int, str, str]:
    """Run ``plugin ARGS`` through ``call_command``: (exit code, stdout, error text)."""
    from gonext_plugins.management.commands.plugin import Command

    command, out, err = Command(), io.StringIO(), io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), f"error: {exc}"
    return command.exit_code, out.getvalue(), err.getvalue()


@pytest.fixture
def v1(tmp_path: Path, publisher: Any) -> Path:
    return write_bundle(tmp_path, publisher.private_key)


@pytest.fixture
def installed(v1: Path) -> Path:
    code, _, err = plugin("install", str(v1), "--grant", *REQUIRED)
    assert code == 0, err
    return v1


def state(slug: str = SLUG) -> str:
    from gonext_plugins.models import Plugin

    return Plugin.objects.get(slug=slug).state


# --- install ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_install_grants_and_audits_with_cli_actor(v1: Path) -> None:
    from gonext_plugins.models import AuditEvent, Plugin

    code, out, _ = plugin("install", str(v1), "--grant", "kv", "--grant", "hooks.subscribe")
    assert code == 0
    assert "installed demo 1.0.0 (inactive)" in out and "manage.py plugin activate demo" in out
    row = Plugin.objects.get(slug=SLUG)
    assert row.state == "inactive" and row.active_version.version == "1.0.0"
    assert sorted(row.grants.values_list("capability", flat=True)) == sorted(REQUIRED)
    event = AuditEvent.objects.get(action="install")
    assert event.actor_label == ACTOR and event.actor is None


@pytest.mark.django_db
def test_install_activate_runs_the_plugin(v1: Path) -> None:
    from gonext_plugins.registry import registry

    code, out, _ = plugin("install", str(v1), "--grant", *REQUIRED, "--activate")
    assert code == 0 and "(active)" in out
    loaded = registry.get(SLUG)
    assert loaded is not None and loaded.invoke("filter", "upper", "hello") == "HELLO"


@pytest.mark.django_db
def test_install_without_consent_lists_missing_and_the_flags(v1: Path) -> None:
    from gonext_plugins.models import Plugin

    code, _, err = plugin("install", str(v1), "--grant", "kv")
    assert code == 1
    assert err.startswith("error: consent_required: ")
    assert "missing capabilities: hooks.subscribe" in err
    assert "add: --grant hooks.subscribe" in err
    code, _, err = plugin("install", str(v1))
    assert code == 1 and "add: --grant hooks.subscribe --grant kv" in err
    assert not Plugin.objects.exists()


@pytest.mark.django_db
def test_install_of_existing_slug_says_to_upgrade(installed: Path) -> None:
    code, _, err = plugin("install", str(installed), "--grant", *REQUIRED)
    assert code == 1
    assert err.startswith("error: plugin_exists: ")
    assert "upgrade it instead" in err and f"manage.py plugin upgrade demo {installed}" in err


@pytest.mark.django_db
def test_install_refuses_unknown_capability(v1: Path) -> None:
    code, _, err = plugin("install", str(v1), "--grant", *REQUIRED, "no.such.cap")
    assert code == 1 and err.startswith("error: unknown_capability: ") and "no.such.cap" in err


@pytest.mark.django_db
def test_install_refuses_bad_bundles(tmp_path: Path, publisher: Any) -> None:
    garbage = tmp_path / "garbage.gnplugin"
    garbage.write_bytes(b"PK\x03\x04 certainly not a zip")
    code, _, err = plugin("install", str(garbage), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: bad_bundle: ")

    code, _, err = plugin("install", str(tmp_path / "missing.gnplugin"), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: io_error: ")

    unsigned = write_bundle(tmp_path, None, name="unsigned.gnplugin")
    code, _, err = plugin("install", str(unsigned), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: unsigned: ")

    # Packing skips the host check (bundles are built elsewhere); installing here does not.
    too_new = write_bundle(tmp_path, publisher.private_key, name="too-new.gnplugin",
                           requires={"host": ">=99"})
    code, _, err = plugin("install", str(too_new), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: bad_manifest: manifest has 1 problem(s):")
    assert "$.requires.host" in err


@pytest.mark.django_db
def test_install_refuses_a_revoked_key(v1: Path, publisher: Any) -> None:
    code, out, _ = plugin("revoke-key", publisher.fingerprint[:12])
    assert code == 0 and publisher.fingerprint in out
    code, _, err = plugin("install", str(v1), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: revoked_key: ")


# --- activate / deactivate ----------------------------------------------------------------------


@pytest.mark.django_db
def test_activate_and_deactivate_with_no_ops(installed: Path) -> None:
    code, out, _ = plugin("activate", SLUG)
    assert (code, state()) == (0, "active") and "activated demo 1.0.0" in out
    code, out, _ = plugin("activate", SLUG)
    assert code == 3 and out.startswith("nothing to do: demo 1.0.0 is already active")
    code, out, _ = plugin("deactivate", SLUG, "--reason", "maintenance")
    assert (code, state()) == (0, "inactive")
    code, out, _ = plugin("deactivate", SLUG)
    assert code == 3 and "already inactive" in out


@pytest.mark.django_db
def test_unknown_slug_is_refused() -> None:
    for args in (("activate", "ghost"), ("deactivate", "ghost"), ("show", "ghost"),
                 ("rollback", "ghost"), ("uninstall", "ghost", "--yes"), ("grant", "ghost", "kv")):
        code, _, err = plugin(*args)
        assert code == 1 and err.startswith("error: not_found: "), (args, err)


@pytest.mark.django_db
def test_activate_without_a_needed_grant_says_how_to_grant(installed: Path) -> None:
    from gonext_plugins import lifecycle

    lifecycle.revoke(SLUG, "hooks.subscribe", "tests")
    code, _, err = plugin("activate", SLUG)
    assert code == 1 and err.startswith("error: consent_required: ")
    assert "run: manage.py plugin grant demo hooks.subscribe" in err


# --- upgrade / rollback -------------------------------------------------------------------------


@pytest.mark.django_db
def test_upgrade_consent_no_op_conflict_and_rollback(tmp_path: Path, publisher: Any, installed: Path) -> None:
    key = publisher.private_key
    plugin("activate", SLUG)
    v2 = write_bundle(tmp_path, key, version="1.1.0", capabilities=[*REQUIRED, "jobs.enqueue"],
                      optionalCapabilities=[])

    code, _, err = plugin("upgrade", SLUG, str(v2))
    assert code == 1 and err.startswith("error: consent_required: ") and "add: --grant jobs.enqueue" in err
    code, out, _ = plugin("show", SLUG, "--json")
    assert json.loads(out)["version"] == "1.0.0"  # the current version keeps running

    code, out, _ = plugin("upgrade", SLUG, str(v2), "--grant", "jobs.enqueue")
    assert code == 0 and "upgraded demo 1.0.0 -> 1.1.0 (active)" in out
    code, out, _ = plugin("upgrade", SLUG, str(v2))
    assert code == 3 and "already installed with these exact contents" in out

    changed = write_bundle(tmp_path, key, name="changed.gnplugin", version="1.1.0",
                           capabilities=[*REQUIRED, "jobs.enqueue"], optionalCapabilities=[],
                           description="Different bytes, same version.")
    code, _, err = plugin("upgrade", SLUG, str(changed))
    assert code == 1 and err.startswith("error: version_conflict: ")

    other = write_bundle(tmp_path, key, slug="other")
    code, _, err = plugin("upgrade", SLUG, str(other), "--grant", *REQUIRED)
    assert code == 1 and err.startswith("error: lifecycle_error: ") and "'other'" in err

    code, out, _ = plugin("rollback", SLUG)
    assert code == 0 and "rolled back demo 1.1.0 -> 1.0.0" in out
    code, _, err = plugin("rollback", SLUG)
    assert code == 1 and err == "error: no_older_version: there is no older version to roll back to"
    code, out, _ = plugin("rollback", SLUG, "--to", "1.1.0")
    assert code == 0 and "-> 1.1.0" in out
    code, out, _ = plugin("rollback", SLUG, "--to", "1.1.0")
    assert code == 3 and "already runs 1.1.0" in out
    code, _, err = plugin("rollback", SLUG, "--to", "9.9.9")
    assert code == 1 and "9.9.9 is not installed" in err and "1.0.0, 1.1.0" in err


# --- grants -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_grant_and_revoke(installed: Path) -> None:
    code, out, _ = plugin("grant", SLUG, "jobs.enqueue")
    assert code == 0 and "granted jobs.enqueue to demo" in out
    code, out, _ = plugin("grant", SLUG, "jobs.enqueue")
    assert code == 3
    code, _, err = plugin("grant", SLUG, "no.such.cap")
    assert code == 1 and err.startswith("error: unknown_capability: ")
    code, _, err = plugin("grant", SLUG, "http.fetch")
    assert code == 1 and "does not ask for http.fetch" in err

    code, out, _ = plugin("revoke", SLUG, "jobs.enqueue")
    assert code == 0 and out.strip() == "revoked jobs.enqueue from demo"
    code, out, _ = plugin("revoke", SLUG, "jobs.enqueue")
    assert code == 3 and "does not have jobs.enqueue" in out

    plugin("activate", SLUG)
    code, out, _ = plugin("revoke", SLUG, "kv")
    assert code == 0 and "needs it, so it was deactivated" in out
    assert state() == "inactive"


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_trust_key_from_key_file_base64_and_refusals(tmp_path: Path) -> None:
    from gonext_plugins.models import AuditEvent, PublisherKey

    keyfile = tmp_path / "acme.key"
    assert plugin("keygen", "--name", "Acme", "--out", str(keyfile))[0] == 0
    data = json.loads(keyfile.read_text())
    code, out, _ = plugin("trust-key", "Acme", str(keyfile))
    assert code == 0 and data["fingerprint"] in out
    code, out, _ = plugin("trust-key", "Acme", data["publicKey"])
    assert code == 3 and "already trusted" in out
    assert PublisherKey.objects.count() == 1
    assert AuditEvent.objects.get(action="trust_key").actor_label == ACTOR

    bare = tmp_path / "bare.pub"
    from gonext_plugins import signing

    _, public = signing.generate_key()
    bare.write_text(public + "\n")
    assert plugin("trust-key", "Bare", str(bare))[0] == 0

    code, _, err = plugin("trust-key", "Bad", "bm90IGEga2V5")
    assert code == 1 and err.startswith("error: bad_signature: not an ed25519 public key")

    code, _, _ = plugin("revoke-key", data["fingerprint"][:10])
    assert code == 0
    code, out, _ = plugin("revoke-key", data["fingerprint"][:10])
    assert code == 3 and "already revoked" in out
    code, _, err = plugin("trust-key", "Acme again", str(keyfile))
    assert code == 1 and "revoked key cannot be trusted again" in err


@pytest.mark.django_db
def test_revoke_key_deactivates_what_it_signed_and_refuses_unknown_or_ambiguous(installed: Path,
                                                                                 publisher: Any) -> None:
    from gonext_plugins import lifecycle, signing

    plugin("activate", SLUG)
    code, _, err = plugin("revoke-key", "ffffffffffffffffffff")
    assert code == 1 and err.startswith("error: not_found: ")
    # Make a second key whose fingerprint shares a first hex digit with the publisher's.
    while True:
        _, public = signing.generate_key()
        import base64

        if signing.fingerprint(base64.b64decode(public))[0] == publisher.fingerprint[0]:
            break
    lifecycle.trust_key("Twin", public, "tests")
    code, _, err = plugin("revoke-key", publisher.fingerprint[0])
    assert code == 1 and err.startswith("error: ambiguous: ")
    code, _, err = plugin("revoke-key", " ")
    assert code == 2 and err.startswith("error: usage: ")

    code, out, _ = plugin("revoke-key", publisher.fingerprint[:16])
    assert code == 0 and "deactivated: demo" in out
    assert state() == "inactive"


# --- uninstall ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_uninstall_needs_yes_when_not_interactive(installed: Path) -> None:
    from gonext_plugins.models import Plugin, PluginKV

    PluginKV.objects.create(plugin_slug=SLUG, key="k", value=1, size=1)
    code, _, err = plugin("uninstall", SLUG)  # pytest's stdin is not a terminal
    assert code == 2 and "pass --yes" in err
    assert Plugin.objects.filter(slug=SLUG).exists()

    code, out, _ = plugin("uninstall", SLUG, "--keep-data", "--yes")
    assert code == 0 and "kv data is kept" in out
    assert not Plugin.objects.exists() and PluginKV.objects.filter(plugin_slug=SLUG).exists()


@pytest.mark.django_db
def test_uninstall_deletes_data_by_default(installed: Path) -> None:
    from gonext_plugins.models import AuditEvent, PluginKV

    PluginKV.objects.create(plugin_slug=SLUG, key="k", value=1, size=1)
    assert plugin("uninstall", SLUG, "--yes")[0] == 0
    assert not PluginKV.objects.exists()
    assert AuditEvent.objects.filter(action="uninstall", actor_label=ACTOR).exists()


# --- list / show --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_text_and_json(installed: Path) -> None:
    code, out, _ = plugin("list")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["SLUG", "VERSION", "STATE", "GRANTS"]
    assert row.split() == ["demo", "1.0.0", "inactive", "hooks.subscribe,kv"]

    code, out, _ = plugin("list", "--json")
    assert json.loads(out) == [{
        "slug": "demo", "name": "Demo plugin", "state": "inactive", "state_reason": "",
        "version": "1.0.0", "signed": True, "versions": ["1.0.0"], "grants": ["hooks.subscribe", "kv"],
        "incompatible": [],
    }]


@pytest.mark.django_db
def test_list_when_empty() -> None:
    assert plugin("list") == (0, "no plugins installed\n", "")
    assert json.loads(plugin("list", "--json")[1]) == []


@pytest.mark.django_db
def test_show_text_and_json(installed: Path, publisher: Any) -> None:
    plugin("activate", SLUG)
    code, out, _ = plugin("show", SLUG, "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"slug", "name", "state", "state_reason", "version", "signed", "versions", "grants",
                         "description", "author", "homepage", "installed_at", "updated_at",
                         "capabilities", "audit", "incompatible"}
    assert data["state"] == "active" and data["version"] == "1.0.0"
    [version] = data["versions"]
    assert version["active"] is True and version["fingerprint"] == publisher.fingerprint
    assert {c["name"]: (c["required"], c["granted"]) for c in data["capabilities"]} == {
        "kv": (True, True), "hooks.subscribe": (True, True), "jobs.enqueue": (False, False)}
    assert [g["capability"] for g in data["grants"]] == ["hooks.subscribe", "kv"]
    assert [e["action"] for e in data["audit"]] == ["activate", "install"]
    assert data["audit"][0]["actor"] == ACTOR

    code, out, _ = plugin("show", SLUG)
    assert code == 0
    assert out.startswith("demo: Demo plugin\nstate:    active\nversion:  1.0.0\n")
    assert "* 1.0.0" in out and "signed by Test publisher" in out
    assert "[x] kv" in out and "[ ] jobs.enqueue" in out and "optional" in out
    assert "activate" in out.split("recent audit:")[1]


# --- real processes: the exit statuses themselves -----------------------------------------------


@pytest.mark.slow
def test_exit_codes_from_a_real_process(tmp_path: Path) -> None:
    """What a shell script sees: statuses 0/1/2/3, ``error: <code>: ...`` on stderr, JSON on stdout."""
    from gonext_plugins import signing

    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "GONEXT_DEV_MODE")}
    env.update(DJANGO_SETTINGS_MODULE="project.settings", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
               MEDIA_ROOT=str(tmp_path / "media"), LOG_LEVEL="WARNING")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=120)

    assert run("migrate", "--noinput", "-v0").returncode == 0
    private, public = signing.generate_key()
    bundle = write_bundle(tmp_path, private)

    assert run("plugin", "trust-key", "Publisher", public).returncode == 0
    done = run("plugin", "install", str(bundle), "--grant", "kv")
    assert done.returncode == 1 and done.stderr.startswith("error: consent_required: ")
    assert "add: --grant hooks.subscribe" in done.stderr and "Traceback" not in done.stderr

    done = run("plugin", "install", str(bundle), "--grant", *REQUIRED, "--activate")
    assert done.returncode == 0, done.stderr
    done = run("plugin", "activate", SLUG)
    assert done.returncode == 3 and done.stdout.startswith("nothing to do:")
    done = run("plugin", "install", str(bundle), "--grant", *REQUIRED)
    assert done.returncode == 1 and done.stderr.startswith("error: plugin_exists: ")
    assert "manage.py plugin upgrade demo" in done.stderr

    done = run("plugin", "list", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)[0]["state"] == "active"

    assert run("plugin", "no-such-subcommand").returncode == 2
    assert run("plugin", "install").returncode == 2  # BUNDLE missing
    done = run("plugin", "uninstall", SLUG)
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert run("plugin", "uninstall", SLUG, "--yes").returncode == 0
    done = run("plugin", "show", SLUG)
    assert done.returncode == 1 and done.stderr.startswith("error: not_found: ")
