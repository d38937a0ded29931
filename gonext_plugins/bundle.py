"""``.gnplugin`` bundles: pack, sign and read them. The format is in ``docs/bundle-format.md``.

A bundle is a zip of exactly ``manifest.json``, ``plugin.wasm`` and, when signed,
``signature.json``. :func:`read` is the gate every upload passes: it refuses anything odd with a
typed error a person can act on, and it never writes anything (no database row, no file).

Why the reader is so strict about layout: a bundle must be byte-for-byte the canonical zip that
:func:`pack` or :func:`sign` writes for its contents. Then any change to a signed bundle is refused:
either the bytes no longer parse, or a CRC, a hash or the signature fails, or the parsed content is
unchanged, in which case the canonical zip of that content is the original file, which the changed
file is not. No reasoning about individual zip header fields is needed.

No Django at import time: settings and the ``PublisherKey`` model are imported lazily.

Writing and reading stay one module although it is long: the reader's strictness is "exactly the
bytes :func:`pack` writes", so the two halves of the format change together or not at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypedDict

from gonext_plugins import manifest as manifest_module
from gonext_plugins import signing
from gonext_plugins.errors import (
    BundleError,
    BundleTooLarge,
    PluginError,
    RevokedKey,
    SignatureError,
    SignatureMissing,
    UntrustedKey,
)
from gonext_plugins.manifest import Manifest

MANIFEST = "manifest.json"
WASM = "plugin.wasm"
SIGNATURE = "signature.json"
ENTRY_NAMES = (MANIFEST, WASM, SIGNATURE)
WASM_MAGIC = b"\x00asm"
ZIP_LOCAL_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SIGNATURE_FIELDS = frozenset({"algorithm", "publicKey", "fingerprint", "signature", "manifestSha256",
                              "wasmSha256"})
READ_CHUNK = 64 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyInfo:
    """What the site knows about a publisher key, as ``key_lookup`` returns it."""

    name: str
    public_key: str  # base64 of the raw 32-byte key
    trusted: bool = True
    revoked: bool = False
    id: Any = None


@dataclass(frozen=True)
class SignatureStatus:
    """How a bundle is signed. ``status``: ``valid`` (a trusted, unrevoked key), ``unsigned``, or
    ``untrusted`` (a correct signature by a key this site does not trust; only in dev mode)."""

    status: str
    fingerprint: str = ""
    key_name: str = ""
    public_key: str = ""
    signature: str = ""
    key_id: Any = None

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def signed(self) -> bool:
        return self.status != "unsigned"


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed every check. Nothing has been stored yet."""

    manifest: Manifest
    manifest_bytes: bytes
    wasm: bytes
    manifest_sha256: str
    wasm_sha256: str
    bundle_sha256: str
    size: int
    signature: SignatureStatus

    @property
    def slug(self) -> str:
        return self.manifest.slug

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def signed(self) -> bool:
        return self.signature.signed


KeyLookup = Callable[[str], KeyInfo | None]


# --- settings (lazy, so the module works without Django) ---------------------------------------


def _setting(name: str) -> Any:
    """``conf.settings.<name>`` when Django is configured, else the documented default."""
    from django.conf import settings as django_settings

    from gonext_plugins import conf

    if not django_settings.configured:
        return conf.DEFAULTS[name]
    return getattr(conf.settings, name)


def _no_keys(fingerprint: str) -> KeyInfo | None:
    """Without a site's key table every publisher is unknown (library use, no Django app)."""
    return None


_default_key_lookup: KeyLookup = _no_keys


def set_default_key_lookup(lookup: KeyLookup) -> None:
    """Where :func:`read` looks keys up when the caller names no ``key_lookup``. The app fills it
    in ``AppConfig.ready`` with the ``PublisherKey`` table (``lifecycle.db_key_lookup``): the table
    lives two layers up, so this module exposes the hook instead of importing it."""
    global _default_key_lookup
    _default_key_lookup = lookup


# --- writing -----------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_zip(entries: Mapping[str, bytes]) -> bytes:
    """The canonical zip: entries sorted by name, stored (not compressed), fixed timestamps and
    attributes, no comment. Every header field is set here, so the same contents always give the
    same bytes. Stored rather than deflated because a deflate stream depends on the zlib build,
    and the reader re-creates this layout to check signed bundles."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=False) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so external_attr carries a file mode
            info.create_version = 20
            info.extract_version = 20
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def _manifest_bytes(manifest: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(manifest, bytes):
        return manifest
    if isinstance(manifest, str):
        return manifest.encode("utf-8")
    return (json.dumps(dict(manifest), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _check_wasm(wasm: bytes) -> None:
    if not wasm.startswith(WASM_MAGIC):
        raise BundleError(f"{WASM} is not a WebAssembly module: it does not start with the wasm magic "
                          "bytes \\0asm; build the plugin to a .wasm file and pack that")


def pack(manifest: Mapping[str, Any] | bytes | str, wasm: bytes) -> bytes:
    """An unsigned bundle of ``manifest`` (a dict, or the manifest.json bytes kept as they are) and
    ``wasm``. Deterministic: the same inputs give the same bytes. Refuses a manifest that fails
    validation (except "does this host satisfy requires.host": packing is for any host)."""
    data = _manifest_bytes(manifest)
    manifest_module.validate(data, check_host=False)
    _check_wasm(wasm)
    return _write_zip({MANIFEST: data, WASM: bytes(wasm)})


def signature_document(manifest_bytes: bytes, wasm: bytes, signing_key: Any) -> bytes:
    """The canonical ``signature.json`` bytes for this content, signed with ``signing_key``."""
    manifest_sha, wasm_sha = _sha256(manifest_bytes), _sha256(wasm)
    key = signing.load_signing_key(signing_key)
    public = signing.b64encode(bytes(key.verify_key))
    return _signature_json({
        "algorithm": signing.ALGORITHM,
        "publicKey": public,
        "fingerprint": signing.fingerprint(bytes(key.verify_key)),
        "signature": signing.sign_digest(key, signing.digest(manifest_sha, wasm_sha)),
        "manifestSha256": manifest_sha,
        "wasmSha256": wasm_sha,
    })


def _signature_json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(document), indent=2, sort_keys=True) + "\n").encode("ascii")


def sign(bundle_bytes: bytes, signing_key: Any, **caps: Any) -> bytes:
    """Sign a bundle (replacing any existing signature) and return the signed bundle's bytes.

    ``signing_key``: a nacl SigningKey, its raw 32-byte seed, or the seed in base64 (as in a key
    file). The bundle must pass the same checks :func:`read` makes, apart from the signature.
    """
    contents = _extract(_read_input(bundle_bytes, _cap(caps, "max_bundle_bytes")), **_caps(caps),
                        check_layout=False)
    manifest_module.validate(contents[MANIFEST], check_host=False)
    entries = {MANIFEST: contents[MANIFEST], WASM: contents[WASM]}
    entries[SIGNATURE] = signature_document(contents[MANIFEST], contents[WASM], signing_key)
    return _write_zip(entries)


# --- reading -----------------------------------------------------------------------------------


def _cap(caps: Mapping[str, Any], name: str) -> int:
    value = caps.get(name)
    return int(value) if value is not None else int(_setting(name.upper()))


class _ExtractCaps(TypedDict):
    """The caps ``_extract`` takes, as keyword arguments."""

    max_unpacked_bytes: int
    max_compression_ratio: int


def _caps(caps: Mapping[str, Any]) -> _ExtractCaps:
    unknown = set(caps) - {"max_bundle_bytes", "max_unpacked_bytes", "max_compression_ratio"}
    if unknown:
        raise TypeError(f"unknown keyword argument(s): {', '.join(sorted(unknown))}")
    return {"max_unpacked_bytes": _cap(caps, "max_unpacked_bytes"),
            "max_compression_ratio": _cap(caps, "max_compression_ratio")}


def _read_input(data: bytes | bytearray | memoryview | IO[bytes], max_bytes: int) -> bytes:
    """The bundle's bytes, refusing an oversized one before any zip parsing (a file-like object is
    read only up to the cap plus one byte)."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise BundleTooLarge(f"the bundle is {len(raw):,} bytes, over the {max_bytes:,}-byte limit "
                                 "(GONEXT_PLUGINS['MAX_BUNDLE_BYTES'])")
        return raw
    raw = data.read(max_bytes + 1)
    if not isinstance(raw, bytes):
        raise TypeError("read() needs bytes or a binary file object")
    if len(raw) > max_bytes:
        raise BundleTooLarge(f"the bundle is over the {max_bytes:,}-byte limit "
                             "(GONEXT_PLUGINS['MAX_BUNDLE_BYTES'])")
    return raw


def _damaged(detail: object) -> BundleError:
    return BundleError(f"the bundle is truncated or damaged ({detail}); download or build it again")


def _check_entry(info: zipfile.ZipInfo) -> None:
    """Refuse names and entry kinds that have no business in a bundle, whatever their name."""
    name = info.orig_filename
    shown = json.dumps(name)
    if "\\" in name:
        raise BundleError(f"entry {shown} contains a backslash; bundle entries are plain file names")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"entry {shown} is an absolute path; refusing a bundle that writes outside itself")
    parts = name.split("/")
    if ".." in parts or "." in parts:
        raise BundleError(f"entry {shown} tries to leave the bundle (path traversal); refusing it")
    if "\x00" in name or not name:
        raise BundleError(f"entry {shown} has an invalid name")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BundleError(f"entry {shown} is a symbolic link; bundles hold only regular files")
    if info.is_dir() or stat.S_ISDIR(mode):
        raise BundleError(f"entry {shown} is a directory; bundles hold only {MANIFEST}, {WASM} and "
                          f"{SIGNATURE} at the top level")
    if info.flag_bits & 0x1:
        raise BundleError(f"entry {shown} is encrypted; bundles must not be encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise BundleError(f"entry {shown} uses an unsupported compression method "
                          f"({info.compress_type}); use stored or deflate")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, max_ratio: int) -> bytes:
    """Stream one entry with a byte budget, so a header that lies about sizes gains nothing."""
    name = info.filename
    limit = max_ratio * max(info.compress_size, 1)
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(READ_CHUNK):
                total += len(chunk)
                if total > budget:
                    raise BundleTooLarge("the bundle unpacks to more than the unpacked-size limit "
                                         "(GONEXT_PLUGINS['MAX_UNPACKED_BYTES'])")
                if total > info.file_size:
                    raise _damaged(f"{name} is larger than its header says")
                if total > limit:
                    raise BundleTooLarge(f"{name} expands more than {max_ratio}:1; refusing a possible "
                                         "zip bomb (GONEXT_PLUGINS['MAX_COMPRESSION_RATIO'])")
                chunks.append(chunk)
    except PluginError:
        raise
    except Exception as exc:  # any failure to decode untrusted bytes is "damaged", never a crash
        raise _damaged(f"{name}: {exc}") from exc
    data = b"".join(chunks)
    if len(data) != info.file_size:
        raise _damaged(f"{name} is shorter than its header says")
    return data


def _extract(raw: bytes, *, max_unpacked_bytes: int, max_compression_ratio: int,
             check_layout: bool = True) -> dict[str, bytes]:
    """Every structural check, then the entries' bytes. With ``check_layout``, a signed bundle
    must also be exactly the canonical zip of its contents (see the module docstring)."""
    if not raw.startswith(ZIP_LOCAL_MAGIC):
        if raw.startswith(ZIP_EMPTY_MAGIC):
            raise BundleError("the bundle is an empty zip archive; it needs manifest.json and plugin.wasm")
        raise BundleError("this file is not a plugin bundle: a .gnplugin is a zip archive made by "
                          "`manage.py plugin pack`")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        infos = archive.infolist()
        comment = archive.comment
    except Exception as exc:
        raise _damaged(exc) from exc

    seen: set[str] = set()
    for info in infos:
        _check_entry(info)
        if info.orig_filename in seen:
            raise BundleError(f"entry {json.dumps(info.orig_filename)} appears twice; a bundle holds each "
                              "file once")
        seen.add(info.orig_filename)
    extra = sorted(seen - set(ENTRY_NAMES))
    if extra:
        names = ", ".join(map(json.dumps, extra))
        raise BundleError(f"unexpected entr{'ies' if len(extra) > 1 else 'y'} {names}; a bundle holds "
                          f"only {MANIFEST}, {WASM} and (when signed) {SIGNATURE}")
    for required in (MANIFEST, WASM):
        if required not in seen:
            raise BundleError(f"the bundle has no {required}; pack it with `manage.py plugin pack`")
    if comment:
        raise BundleError("the bundle has a zip comment; bundles made by `plugin pack` have none")

    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _damaged(f"{info.filename} is stored but its sizes disagree")
    declared = sum(info.file_size for info in infos)
    if declared > max_unpacked_bytes:
        raise BundleTooLarge(f"the bundle unpacks to {declared:,} bytes, over the "
                             f"{max_unpacked_bytes:,}-byte limit (GONEXT_PLUGINS['MAX_UNPACKED_BYTES'])")
    for info in infos:
        if info.file_size > max_compression_ratio * max(info.compress_size, 1):
            raise BundleTooLarge(f"{info.filename} expands more than {max_compression_ratio}:1; refusing a "
                                 "possible zip bomb (GONEXT_PLUGINS['MAX_COMPRESSION_RATIO'])")
    packed = sum(info.compress_size for info in infos)
    if declared > max_compression_ratio * max(packed, 1):
        raise BundleTooLarge(f"the bundle expands more than {max_compression_ratio}:1 overall; refusing a "
                             "possible zip bomb (GONEXT_PLUGINS['MAX_COMPRESSION_RATIO'])")

    contents: dict[str, bytes] = {}
    budget = max_unpacked_bytes
    for info in infos:
        data = _read_entry(archive, info, budget, max_compression_ratio)
        budget -= len(data)
        contents[info.filename] = data
    if sum(map(len, contents.values())) > max_compression_ratio * max(packed, 1):
        raise BundleTooLarge(f"the bundle expands more than {max_compression_ratio}:1 overall")

    _check_wasm(contents[WASM])
    if check_layout and _write_zip(contents) != raw:
        raise BundleError("the bundle is not laid out exactly as `plugin pack` and `plugin sign` write it: "
                          "it was modified or re-zipped afterwards; re-pack it, or get an intact copy from "
                          "the publisher")
    return contents


def _parse_signature(data: bytes) -> dict[str, str]:
    """signature.json: a JSON object with exactly the documented fields, in canonical form."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SignatureError(f"{SIGNATURE} is malformed: not UTF-8 JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise SignatureError(f"{SIGNATURE} is malformed: not a JSON object")
    missing = sorted(SIGNATURE_FIELDS - set(document))
    unknown = sorted(set(document) - SIGNATURE_FIELDS)
    if missing or unknown:
        detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else None,
                                         f"unknown {', '.join(unknown)}" if unknown else None]))
        raise SignatureError(f"{SIGNATURE} is malformed: {detail}")
    if not all(isinstance(value, str) for value in document.values()):
        raise SignatureError(f"{SIGNATURE} is malformed: every field must be a string")
    if document["algorithm"] != signing.ALGORITHM:
        raise SignatureError(f"{SIGNATURE} uses algorithm {document['algorithm']!r}; only ed25519 is "
                             "supported")
    for field in ("fingerprint", "manifestSha256", "wasmSha256"):
        if not _HEX64.fullmatch(document[field]):
            raise SignatureError(f"{SIGNATURE} is malformed: {field} must be 64 lowercase hex digits")
    if _signature_json(document) != data:
        raise SignatureError(f"{SIGNATURE} is malformed: not in the canonical form `plugin sign` writes")
    return document


def _verify(contents: Mapping[str, bytes], manifest_sha: str, wasm_sha: str, key_lookup: KeyLookup,
            require_signature: bool, slug: str) -> SignatureStatus:
    document = _parse_signature(contents[SIGNATURE])
    if document["manifestSha256"] != manifest_sha:
        raise SignatureError(f"{MANIFEST} does not match the signature (sha256 {manifest_sha}, signed "
                             f"{document['manifestSha256']}); it was changed after signing", plugin=slug)
    if document["wasmSha256"] != wasm_sha:
        raise SignatureError(f"{WASM} does not match the signature (sha256 {wasm_sha}, signed "
                             f"{document['wasmSha256']}); it was changed after signing", plugin=slug)
    try:
        public_raw = signing.b64decode_exact(document["publicKey"], signing.KEY_BYTES, "publicKey")
    except ValueError as exc:
        raise SignatureError(f"{SIGNATURE} is malformed: {exc}", plugin=slug) from exc
    fingerprint = signing.fingerprint(public_raw)
    if document["fingerprint"] != fingerprint:
        raise SignatureError(f"{SIGNATURE} is malformed: its fingerprint is not the publicKey's", plugin=slug)
    try:
        signing.verify_signature(document["publicKey"], signing.digest(manifest_sha, wasm_sha),
                                 document["signature"])
    except SignatureError as exc:
        raise SignatureError(exc.message, plugin=slug, fingerprint=fingerprint) from exc

    info = key_lookup(fingerprint)
    status = SignatureStatus("valid", fingerprint, public_key=document["publicKey"],
                             signature=document["signature"])
    if info is not None and info.public_key != document["publicKey"]:
        raise SignatureError(f"the publisher key on file for fingerprint {fingerprint} is a different key; "
                             "the key record is corrupt", plugin=slug, fingerprint=fingerprint)
    if info is not None and info.revoked:
        raise RevokedKey(f"signed by a revoked key: {info.name} ({fingerprint}); do not install bundles "
                         "signed with it, ask the publisher for one signed with their new key",
                         plugin=slug, fingerprint=fingerprint)
    if info is None or not info.trusted:
        if require_signature:
            what = "an unknown key" if info is None else f"an untrusted key ({info.name})"
            raise UntrustedKey(f"signed by {what}: {fingerprint}; if you trust this publisher, add their "
                               "key with `manage.py plugin trust-key`", plugin=slug, fingerprint=fingerprint)
        return SignatureStatus("untrusted", fingerprint, info.name if info else "", document["publicKey"],
                               document["signature"], info.id if info else None)
    return SignatureStatus("valid", fingerprint, info.name, status.public_key, status.signature, info.id)


def read(data: bytes | bytearray | memoryview | IO[bytes], *, key_lookup: KeyLookup | None = None,
         require_signature: bool | None = None, max_bundle_bytes: int | None = None,
         max_unpacked_bytes: int | None = None, max_compression_ratio: int | None = None,
         allow_private_hosts: bool | None = None) -> Bundle:
    """Check a bundle completely and return its content. Writes nothing.

    ``key_lookup(fingerprint) -> KeyInfo | None`` defaults to the site's ``PublisherKey`` table
    (:func:`set_default_key_lookup`).
    ``require_signature`` defaults to ``not GONEXT_PLUGINS['DEV_MODE']``; the ``max_*`` caps default
    to the settings (or their documented defaults when Django is not configured), and so does
    ``allow_private_hosts`` (HTTP_FETCH_ALLOW_PRIVATE); given all of them and ``require_signature``,
    no setting is read, so no Django is imported (the test harness).
    Raises :class:`BundleError`, :class:`ManifestError` or :class:`SignatureError` (or a subclass).
    """
    caps = {"max_bundle_bytes": max_bundle_bytes, "max_unpacked_bytes": max_unpacked_bytes,
            "max_compression_ratio": max_compression_ratio}
    raw = _read_input(data, _cap(caps, "max_bundle_bytes"))
    contents = _extract(raw, **_caps(caps))
    manifest = manifest_module.validate(contents[MANIFEST])
    if allow_private_hosts is None:
        allow_private_hosts = bool(_setting("HTTP_FETCH_ALLOW_PRIVATE"))
    manifest_module.check_hosts(manifest, allow_private=allow_private_hosts)
    manifest_sha, wasm_sha = _sha256(contents[MANIFEST]), _sha256(contents[WASM])
    if require_signature is None:
        require_signature = not _setting("DEV_MODE")
    if SIGNATURE in contents:
        status = _verify(contents, manifest_sha, wasm_sha, key_lookup or _default_key_lookup,
                         require_signature, manifest.slug)
    elif require_signature:
        raise SignatureMissing("the bundle is not signed; ask the publisher for a signed bundle or sign it "
                               "with `manage.py plugin sign` (unsigned bundles install only in dev mode)",
                               plugin=manifest.slug)
    else:
        status = SignatureStatus("unsigned")
    return Bundle(manifest, contents[MANIFEST], contents[WASM], manifest_sha, wasm_sha, _sha256(raw),
                  len(raw), status)
