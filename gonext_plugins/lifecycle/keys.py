"""Publisher keys: trusting one, finding one by fingerprint prefix, revoking one (which stops
every plugin whose running version it signed)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..bundle import KeyInfo
from ..errors import KeyNotFound, LifecycleError, SignatureError
from ..models import Plugin, PluginState, PublisherKey
from ..signing import KEY_BYTES, b64decode_exact, fingerprint
from ._states import deactivate_locked
from ._tx import Actor, audit, bump_generation


def trust_key(name: str, public_key_b64: str, actor: Actor) -> PublisherKey:
    """Add (or re-trust) a publisher key; validated as a 32-byte ed25519 key."""
    try:
        raw = b64decode_exact(public_key_b64.strip(), KEY_BYTES, "public key")
    except ValueError as exc:
        raise SignatureError(f"not an ed25519 public key: {exc}") from exc
    print_ = fingerprint(raw)
    with transaction.atomic():
        key, created = PublisherKey.objects.get_or_create(
            fingerprint=print_, defaults={"name": name, "public_key": public_key_b64.strip()}
        )
        if not created and (not key.trusted or key.revoked_at is not None):
            raise LifecycleError(
                f"key {print_} was revoked; a revoked key cannot be trusted again"
                if key.revoked_at else f"key {print_} exists but is not trusted"
            )
        if created:  # trusting a trusted key again changes nothing and is not audited
            audit("trust_key", None, actor, key=name, fingerprint=print_)
        return key


def find_key(prefix: str, *, lock: bool = False) -> PublisherKey:
    """The one key whose fingerprint starts with ``prefix`` (at least 8 hex characters)."""
    prefix = prefix.strip().lower()
    if len(prefix) < 8:
        raise KeyNotFound("give at least 8 characters of the key's fingerprint")
    rows = PublisherKey.objects.filter(fingerprint__startswith=prefix)
    if lock:
        rows = rows.select_for_update()
    found = list(rows[:2])
    if not found:
        raise KeyNotFound(f"no publisher key has a fingerprint starting with {prefix}")
    if len(found) > 1:
        raise KeyNotFound(f"several keys have fingerprints starting with {prefix}; give more characters")
    return found[0]


def revoke_key(key: PublisherKey | str, actor: Actor) -> list[str]:
    """Revoke a publisher key and deactivate every active plugin whose running version it signed.
    Returns the slugs deactivated."""
    with transaction.atomic():
        if isinstance(key, str):
            key = find_key(key, lock=True)
        else:
            key = PublisherKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            return []  # already revoked: nothing to do, nothing to audit
        key.revoked_at = timezone.now()
        key.trusted = False
        key.save(update_fields=["revoked_at", "trusted"])
        affected = []
        for plugin in Plugin.objects.select_for_update().filter(
            active_version__publisher_key=key, state=PluginState.ACTIVE
        ):
            deactivate_locked(plugin, actor, reason=f"publisher key {key.name} was revoked")
            affected.append(plugin.slug)
        audit("revoke_key", None, actor, key=key.name, fingerprint=key.fingerprint,
              deactivated=affected)
        bump_generation()
        return affected


def db_key_lookup(fingerprint: str) -> KeyInfo | None:
    """``bundle.read``'s key lookup on a site: the ``PublisherKey`` row with this fingerprint (read
    only). Installed as the default in ``AppConfig.ready``."""
    key = PublisherKey.objects.filter(fingerprint=fingerprint).first()
    if key is None:
        return None
    return KeyInfo(key.name, key.public_key, key.trusted, key.revoked_at is not None, key.pk)
