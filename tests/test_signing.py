"""Ed25519 keys, key files and the signed digest."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from gonext_plugins import signing
from gonext_plugins.errors import KeyFileError, SignatureError


def test_generate_key_and_fingerprint() -> None:
    private, public = signing.generate_key()
    assert len(base64.b64decode(private)) == 32 and len(base64.b64decode(public)) == 32
    assert signing.b64encode(bytes(signing.load_signing_key(private).verify_key)) == public
    fp = signing.fingerprint(base64.b64decode(public))
    assert len(fp) == 64 and fp == fp.lower() and int(fp, 16) >= 0
    assert signing.generate_key() != (private, public)


def test_digest_is_the_documented_bytes() -> None:
    assert signing.digest("a" * 64, "b" * 64) == b"gnplugin-v1\n" + b"a" * 64 + b"\n" + b"b" * 64


def test_sign_and_verify() -> None:
    private, public = signing.generate_key()
    message = signing.digest("0" * 64, "1" * 64)
    sig = signing.sign_digest(private, message)
    signing.verify_signature(public, message, sig)
    # The same with a SigningKey object and a raw seed.
    assert signing.sign_digest(SigningKey(base64.b64decode(private)), message) == sig
    assert signing.sign_digest(base64.b64decode(private), message) == sig
    with pytest.raises(SignatureError, match="does not verify"):
        signing.verify_signature(public, message + b"x", sig)
    other = signing.generate_key()[1]
    with pytest.raises(SignatureError, match="does not verify") as info:
        signing.verify_signature(other, message, sig)
    assert info.value.fingerprint == signing.fingerprint(base64.b64decode(other))
    with pytest.raises(SignatureError, match="malformed"):
        signing.verify_signature(public, message, "not base64!")


def test_strict_base64() -> None:
    raw = bytes(range(32))
    text = signing.b64encode(raw)
    assert signing.b64decode_exact(text, 32, "k") == raw
    with pytest.raises(ValueError, match="32 bytes"):
        signing.b64decode_exact(signing.b64encode(raw[:31]), 32, "k")
    # Same bytes, different padding bits: not canonical.
    tweaked = text[:-2] + chr(ord(text[-2]) + 1) + "="
    assert base64.b64decode(tweaked) == raw
    with pytest.raises(ValueError, match="canonical"):
        signing.b64decode_exact(tweaked, 32, "k")
    with pytest.raises(ValueError):
        signing.b64decode_exact(text.rstrip("="), 32, "k")
    with pytest.raises(ValueError):
        signing.b64decode_exact(123, 32, "k")


def test_key_file_roundtrip_and_mode(tmp_path: Path) -> None:
    key = signing.KeyFile.generate("Ada's plugins")
    path = signing.write_key_file(tmp_path / "key.json", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["format"] == signing.KEY_FILE_FORMAT and data["algorithm"] == "ed25519"
    assert data["fingerprint"] == signing.fingerprint(base64.b64decode(data["publicKey"]))
    assert signing.load_key_file(path) == key


def test_key_file_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    signing.write_key_file(path, signing.KeyFile.generate("a"))
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        signing.write_key_file(path, signing.KeyFile.generate("b"))
    assert path.read_bytes() == before


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.update(publicKey=signing.generate_key()[1]), "does not belong"),
    (lambda d: d.update(fingerprint="0" * 64), "fingerprint does not match"),
    (lambda d: d.update(privateKey="short"), "not an ed25519 signing key"),
    (lambda d: d.update(format="something-else"), "is not a"),
    (lambda d: d.update(algorithm="rsa"), "unsupported algorithm"),
    (lambda d: d.update(name=""), "no name"),
])
def test_damaged_key_files(tmp_path: Path, mutate, expect: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(signing.KeyFile.generate("a").to_json())
    mutate(data)
    path = tmp_path / "key.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match=expect):
        signing.load_key_file(path)


def test_missing_and_garbage_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        signing.load_key_file(tmp_path / "nope.json")
    (tmp_path / "junk").write_bytes(b"\x00\xff")
    with pytest.raises(KeyFileError, match="not a key file"):
        signing.load_key_file(tmp_path / "junk")
