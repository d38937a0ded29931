"""Ed25519 publisher keys and signatures (PyNaCl), and the key file ``plugin keygen`` writes.

A bundle's signature covers a small, documented digest of the manifest and wasm hashes (see
``docs/bundle-format.md``) rather than the zip bytes, so the signed statement is "these exact
manifest bytes with this exact wasm", independent of how the zip around them is laid out.

Keys are identified by their fingerprint: the sha256 hex of the raw 32-byte public key. No Django.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from gonext_plugins.errors import KeyFileError, SignatureError

ALGORITHM = "ed25519"
KEY_FILE_FORMAT = "gonext-publisher-key/v1"
DIGEST_PREFIX = b"gnplugin-v1\n"
KEY_BYTES = 32
SIGNATURE_BYTES = 64


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode_exact(value: object, length: int, what: str) -> bytes:
    """Strict base64: only the standard alphabet, correct padding, exactly ``length`` bytes, and the
    canonical spelling (so one value has one text; a flipped padding bit is not "the same key")."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc
    if len(raw) != length:
        raise ValueError(f"{what} must decode to {length} bytes, not {len(raw)}")
    if b64encode(raw) != value:
        raise ValueError(f"{what} is not canonical base64")
    return raw


def fingerprint(public_key: bytes) -> str:
    """The key's identity: sha256 hex (64 lowercase characters) of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new key pair as ``(signing_key_b64, public_key_b64)``; the signing key is the 32-byte seed."""
    key = SigningKey.generate()
    return b64encode(bytes(key)), b64encode(bytes(key.verify_key))


def load_signing_key(value: str | bytes | SigningKey) -> SigningKey:
    """Accept a SigningKey, its raw 32-byte seed, or the seed in base64 (as in key files)."""
    if isinstance(value, SigningKey):
        return value
    try:
        seed = value if isinstance(value, bytes) else b64decode_exact(value, KEY_BYTES, "signing key")
        return SigningKey(seed)
    except (ValueError, TypeError, CryptoError) as exc:
        raise KeyFileError(f"not an ed25519 signing key: {exc}") from exc


def digest(manifest_sha256: str, wasm_sha256: str) -> bytes:
    """The exact bytes that get signed: ``b"gnplugin-v1\\n" + <manifest sha256 hex> + b"\\n" +
    <wasm sha256 hex>``. A versioned prefix keeps these signatures from meaning anything elsewhere."""
    return DIGEST_PREFIX + manifest_sha256.encode("ascii") + b"\n" + wasm_sha256.encode("ascii")


def sign_digest(signing_key: str | bytes | SigningKey, message: bytes) -> str:
    """Detached ed25519 signature of ``message``, base64."""
    return b64encode(load_signing_key(signing_key).sign(message).signature)


def verify_signature(public_key_b64: str, message: bytes, signature_b64: str) -> None:
    """Raise :class:`SignatureError` unless ``signature_b64`` is a valid signature of ``message``."""
    try:
        key = b64decode_exact(public_key_b64, KEY_BYTES, "publicKey")
        sig = b64decode_exact(signature_b64, SIGNATURE_BYTES, "signature")
    except ValueError as exc:
        raise SignatureError(f"signature.json is malformed: {exc}") from exc
    try:
        VerifyKey(key).verify(message, sig)
    except (BadSignatureError, CryptoError, ValueError) as exc:
        raise SignatureError(
            "the signature does not verify: the bundle was changed after it was signed, or signed "
            "incorrectly; get an intact copy from the publisher",
            fingerprint=fingerprint(key),
        ) from exc


# --- key files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFile:
    """A publisher key pair as stored by ``plugin keygen``. Keep the file secret (mode 0600)."""

    name: str
    private_key: str  # base64 of the 32-byte ed25519 seed
    public_key: str  # base64 of the 32-byte public key
    fingerprint: str

    @classmethod
    def generate(cls, name: str) -> KeyFile:
        private, public = generate_key()
        return cls(name, private, public, fingerprint(base64.b64decode(public)))

    def to_json(self) -> str:
        return json.dumps({
            "format": KEY_FILE_FORMAT, "algorithm": ALGORITHM, "name": self.name,
            "privateKey": self.private_key, "publicKey": self.public_key, "fingerprint": self.fingerprint,
        }, indent=2) + "\n"


def write_key_file(path: str | os.PathLike[str], key: KeyFile) -> Path:
    """Write ``key`` to a new file with mode 0600. Refuses to overwrite: losing a signing key by
    accident means every plugin signed with it must be re-keyed."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(
            f"{target} already exists; choose another --out (keys are never overwritten)") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create {target}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key.to_json())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def load_key_file(path: str | os.PathLike[str]) -> KeyFile:
    """Read and check a key file: the public key and fingerprint must match the private key."""
    target = Path(path)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {target} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"{target} is not a key file: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError(f"{target} is not a {KEY_FILE_FORMAT} key file (make one with `plugin keygen`)")
    if data.get("algorithm") != ALGORITHM:
        raise KeyFileError(f"{target}: unsupported algorithm {data.get('algorithm')!r}; only ed25519")
    signing = load_signing_key(data.get("privateKey", ""))
    public = b64encode(bytes(signing.verify_key))
    if data.get("publicKey") != public:
        raise KeyFileError(f"{target}: publicKey does not belong to privateKey; the file is damaged")
    if data.get("fingerprint") != fingerprint(bytes(signing.verify_key)):
        raise KeyFileError(f"{target}: fingerprint does not match the key; the file is damaged")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise KeyFileError(f"{target}: the key has no name")
    return KeyFile(name, data["privateKey"], public, data["fingerprint"])
