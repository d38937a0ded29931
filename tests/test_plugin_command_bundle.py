"""``manage.py plugin keygen | pack | sign | verify``: through call_command and a real process."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gonext_plugins import bundle

REPO = Path(__file__).resolve().parent.parent
WASM = b"\x00asm\x01\x00\x00\x00" + b"\x01" * 64
MANIFEST = {"apiVersion": "gonext.io/v1", "slug": "demo", "name": "Demo", "version": "0.1.0", "abi": 1,
            "capabilities": ["kv"]}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("plugin", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "plugin.wasm").write_bytes(WASM)
    return tmp_path


def keygen(directory: Path, name: str = "Demo Publisher") -> dict[str, Any]:
    run("keygen", "--name", name, "--out", str(directory / "key.json"))
    return json.loads((directory / "key.json").read_text())


def pack(directory: Path) -> Path:
    out = directory / "demo.gnplugin"
    run("pack", "--manifest", str(directory / "manifest.json"), "--wasm", str(directory / "plugin.wasm"),
        "--out", str(out))
    return out


def test_keygen_writes_a_private_key_file(plugin_dir: Path) -> None:
    out = io.StringIO()
    call_command("plugin", "keygen", "--name", "Ada", "--out", str(plugin_dir / "key.json"), stdout=out)
    key = json.loads((plugin_dir / "key.json").read_text())
    assert stat.S_IMODE((plugin_dir / "key.json").stat().st_mode) == 0o600
    printed = out.getvalue()
    assert key["name"] == "Ada" and key["fingerprint"] in printed and key["publicKey"] in printed
    assert key["privateKey"] not in out.getvalue()
    with pytest.raises(CommandError, match=r"bad_key_file: .*already exists") as info:
        run("keygen", "--name", "Ada", "--out", str(plugin_dir / "key.json"))
    assert info.value.returncode == 1


def test_pack_sign_verify(plugin_dir: Path) -> None:
    key = keygen(plugin_dir)
    path = pack(plugin_dir)
    assert bundle.read(path.read_bytes(), require_signature=False).signature.status == "unsigned"
    with pytest.raises(CommandError, match="unsigned: the bundle is not signed"):
        run("verify", str(path), "--key", str(plugin_dir / "key.json"))

    signed_path = plugin_dir / "signed.gnplugin"
    output = run("sign", str(path), "--key", str(plugin_dir / "key.json"), "--out", str(signed_path))
    assert key["fingerprint"] in output
    output = run("verify", str(signed_path), "--key", str(plugin_dir / "key.json"))
    assert "ok: demo 0.1.0" in output and f"valid by Demo Publisher ({key['fingerprint']})" in output

    # Without --out, sign replaces the bundle in place.
    run("sign", str(path), "--key", str(plugin_dir / "key.json"))
    assert path.read_bytes() == signed_path.read_bytes()


def test_verify_against_the_wrong_key(plugin_dir: Path) -> None:
    keygen(plugin_dir)
    path = pack(plugin_dir)
    run("sign", str(path), "--key", str(plugin_dir / "key.json"))
    other = plugin_dir / "other"
    other.mkdir()
    keygen(other, "Someone else")
    with pytest.raises(CommandError, match="untrusted_key: signed by an unknown key"):
        run("verify", str(path), "--key", str(other / "key.json"))


def test_pack_reports_every_manifest_problem(plugin_dir: Path) -> None:
    (plugin_dir / "manifest.json").write_text(json.dumps({**MANIFEST, "abi": 3, "slug": "Nope",
                                                          "hooks": [{"name": "x", "kind": "y"}]}))
    with pytest.raises(CommandError) as info:
        pack(plugin_dir)
    message = str(info.value)
    assert message.startswith("bad_manifest: manifest has 3 problem(s):")
    for path in ("$.abi", "$.slug", "$.hooks[0].kind"):
        assert f"\n  {path}: " in message
    assert not (plugin_dir / "demo.gnplugin").exists()


def test_missing_input_file(plugin_dir: Path) -> None:
    with pytest.raises(CommandError, match=r"io_error: cannot read .*nope\.wasm"):
        run("pack", "--manifest", str(plugin_dir / "manifest.json"), "--wasm", str(plugin_dir / "nope.wasm"),
            "--out", str(plugin_dir / "x.gnplugin"))


def test_verify_with_trusted_keys_in_the_database(plugin_dir: Path, db: None) -> None:
    from django.utils import timezone

    from gonext_plugins.models import PublisherKey

    key = keygen(plugin_dir)
    path = pack(plugin_dir)
    run("sign", str(path), "--key", str(plugin_dir / "key.json"))
    with pytest.raises(CommandError, match="untrusted_key"):
        run("verify", str(path))
    row = PublisherKey.objects.create(name="Demo Publisher", public_key=key["publicKey"],
                                      fingerprint=key["fingerprint"])
    assert "valid by Demo Publisher" in run("verify", str(path))
    row.revoked_at = timezone.now()
    row.save()
    with pytest.raises(CommandError, match="revoked_key"):
        run("verify", str(path))


def test_verify_refuses_a_tampered_bundle(plugin_dir: Path) -> None:
    keygen(plugin_dir)
    path = pack(plugin_dir)
    run("sign", str(path), "--key", str(plugin_dir / "key.json"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match=r"^bad_bundle: ") as info:
        run("verify", str(path), "--key", str(plugin_dir / "key.json"))
    assert info.value.returncode == 1


def test_subcommands_are_extensible() -> None:
    from gonext_plugins.management.commands.plugin import Command

    for name in Command.SUBCOMMANDS:
        assert callable(getattr(Command, "handle_" + name.replace("-", "_")))


# --- a real process: exit codes and stderr as scripts see them ---------------------------------


def cli(*args: str, cwd: Path, path: str = str(REPO)) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "plugin", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_exit_codes_from_the_command_line(plugin_dir: Path) -> None:
    done = cli("keygen", "--name", "CLI", "--out", "key.json", cwd=plugin_dir)
    assert done.returncode == 0, done.stderr
    done = cli("pack", "--manifest", "manifest.json", "--wasm", "plugin.wasm", "--out", "demo.gnplugin",
               cwd=plugin_dir)
    assert done.returncode == 0, done.stderr
    refused = cli("verify", "demo.gnplugin", "--key", "key.json", cwd=plugin_dir)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: unsigned: the bundle is not signed")
    assert "Traceback" not in refused.stderr
    assert cli("sign", "demo.gnplugin", "--key", "key.json", cwd=plugin_dir).returncode == 0
    done = cli("verify", "demo.gnplugin", "--key", "key.json", cwd=plugin_dir)
    assert done.returncode == 0 and "ok: demo 0.1.0" in done.stdout
    usage = cli("verify", cwd=plugin_dir)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    assert cli("no-such-subcommand", cwd=plugin_dir).returncode == 2


def test_a_site_without_the_author_extra_runs_every_subcommand_and_dev_says_what_to_install(
        tmp_path: Path) -> None:
    """A site installs the app without the ``author`` extra (watchfiles, websockets): ``manage.py
    plugin`` must load and run there; only the dev loop's watching and log tail need them, and a
    missing one is named with the line that installs it, not a traceback. The two packages are
    shadowed here by modules that fail to import, as if they were not installed."""
    blocked = tmp_path / "site-packages-without-author"
    for package in ("watchfiles", "websockets"):
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = f"{blocked}{os.pathsep}{REPO}"
    assert cli("--help", cwd=tmp_path, path=path).returncode == 0
    assert cli("keygen", "--name", "Site", "--out", "key.json", cwd=tmp_path, path=path).returncode == 0
    assert cli("new", "--lang", "wat", "hello", cwd=tmp_path, path=path).returncode == 0
    done = cli("dev", "hello", "--build-only", cwd=tmp_path, path=path)  # building needs neither
    assert done.returncode == 0, done.stderr
    needs = {("dev", "hello"): "watchfiles", ("dev", "hello", "--no-watch", "--logs"): "websockets"}
    for args, package in needs.items():
        done = cli(*args, cwd=tmp_path, path=path)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: missing_package: plugin dev")
        assert f"needs the Python package {package}" in done.stderr
        assert "pip install 'gonext_plugins[author]'" in done.stderr and "Traceback" not in done.stderr
