"""The lifecycle service: every operation, every refusal, the audit trail, and quarantine.

Real database, real storage, real wasmtime: each activation loads the guest in this process's
registry and calls it.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from gonext_plugins import lifecycle, signals, signing
from gonext_plugins.errors import (
    ConsentRequired,
    LifecycleError,
    PluginExists,
    PluginLoadError,
    PluginNotFound,
    PluginTrap,
    SignatureError,
    UnknownCapability,
    VersionConflict,
)
from gonext_plugins.models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginFault,
    PluginKV,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from gonext_plugins.registry import registry
from gonext_plugins.storage import blob_name, get_storage

# Real commits only where a test watches what happens on commit (signals, the registry's reload,
# blob removal): those tests are marked ON_COMMIT.
pytestmark = pytest.mark.django_db
ON_COMMIT = pytest.mark.django_db(transaction=True)

HOOKED = {"capabilities": ["kv", "hooks.subscribe"], "hooks": [{"name": "upper", "kind": "filter"}]}
GRANTS = ["kv", "hooks.subscribe"]
# Loads only at activation: its imports are linked (so install's compatibility check passes) but
# ``gn_log`` has the wrong type, which the shape check inside the transaction finds.
WRONG_IMPORT_TYPE_WAT = """(module
  (import "env" "gn_log" (func (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))"""


def actions(slug: str = "demo") -> list[str]:
    return list(AuditEvent.objects.filter(plugin_slug=slug).order_by("id").values_list("action", flat=True))


def blobs() -> set[str]:
    storage = get_storage()
    found: set[str] = set()
    try:
        dirs, _ = storage.listdir("gonext_plugins/blobs")
    except FileNotFoundError:
        return found
    for folder in dirs:
        found |= {f"gonext_plugins/blobs/{folder}/{name}"
                  for name in storage.listdir(f"gonext_plugins/blobs/{folder}")[1]}
    return found


class SignalLog:
    """Records the lifecycle signals that reached receivers (they fire on commit)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._receivers = []
        for name in ("plugin_installed", "plugin_activated", "plugin_deactivated", "plugin_upgraded",
                     "plugin_rolled_back", "plugin_uninstalled", "plugin_quarantined"):
            def receiver(sender, name=name, **kwargs):  # type: ignore[no-untyped-def]
                self.seen.append(name)
            getattr(signals, name).connect(receiver, weak=False)
            self._receivers.append((getattr(signals, name), receiver))

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)


@pytest.fixture
def signal_log():  # type: ignore[no-untyped-def]
    log = SignalLog()
    yield log
    log.close()


# --- install ----------------------------------------------------------------------------------


@ON_COMMIT
def test_install_writes_rows_blob_audit_and_signal(make_bundle, publisher, signal_log) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(**HOOKED)
    result = lifecycle.install(bundle, GRANTS, "tests")
    plugin = result.plugin
    assert plugin.state == PluginState.INACTIVE
    version = PluginVersion.objects.get(plugin=plugin)
    assert version.version == "1.0.0" and version.signed and version.publisher_key == publisher
    assert version.wasm_sha256 == bundle.wasm_sha256
    assert get_storage().exists(blob_name(bundle.wasm_sha256))
    granted = CapabilityGrant.objects.filter(plugin=plugin).values_list("capability", flat=True)
    assert set(granted) == set(GRANTS)
    event = AuditEvent.objects.get(plugin_slug="demo", action="install")
    assert event.actor_label == "tests" and event.details["fingerprint"] == publisher.fingerprint
    assert signal_log.seen == ["plugin_installed"]
    assert registry.get("demo") is None  # installed, not active


@ON_COMMIT
def test_install_and_activate_runs_the_plugin(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE
    assert registry.get("demo").invoke("filter", "upper", "hello") == "HELLO"
    assert actions() == ["install", "activate"]
    assert signal_log.seen == ["plugin_installed", "plugin_activated"]


def test_install_of_an_existing_slug_says_upgrade(make_bundle) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(), ["kv"], "tests")
    with pytest.raises(PluginExists, match="upgrade"):
        lifecycle.install(make_bundle(version="2.0.0"), ["kv"], "tests")
    assert PluginVersion.objects.count() == 1


def test_missing_required_grant_is_refused_and_nothing_is_written(make_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(capabilities=["kv", "jobs.enqueue"], optionalCapabilities=["http.fetch"])
    with pytest.raises(ConsentRequired) as refused:
        lifecycle.install(bundle, ["kv"], "tests")
    assert refused.value.missing == ["jobs.enqueue"]
    assert refused.value.as_dict()["error"] == "consent_required"
    assert not Plugin.objects.exists() and not blobs()
    assert not AuditEvent.objects.filter(plugin_slug="demo").exists()
    # Optional capabilities may be left out.
    lifecycle.install(bundle, ["kv", "jobs.enqueue"], "tests")
    assert "http.fetch" not in lifecycle.granted_capabilities(Plugin.objects.get(slug="demo"))


def test_grants_naming_unknown_or_unrequested_capabilities_are_refused(make_bundle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownCapability, match="teleport"):
        lifecycle.install(make_bundle(), ["kv", "teleport"], "tests")
    with pytest.raises(LifecycleError, match=r"does not ask for http\.fetch"):
        lifecycle.install(make_bundle(), ["kv", "http.fetch"], "tests")
    assert not Plugin.objects.exists() and not blobs()


def test_unsigned_bundle_needs_dev_mode_and_is_audited_loudly(make_bundle, settings) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(signed=False)
    with pytest.raises(SignatureError, match="not signed"):
        lifecycle.install(bundle, ["kv"], "tests")
    assert not Plugin.objects.exists()
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "DEV_MODE": True}
    lifecycle.install(bundle, ["kv"], "tests")
    assert actions() == ["install", "unsigned_install"]
    event = AuditEvent.objects.get(action="install")
    assert event.details["signed"] is False and "UNSIGNED" in event.details["warning"]
    assert not PluginVersion.objects.get().signed


def test_key_revoked_after_reading_is_refused_at_install(make_bundle, publisher) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle()
    lifecycle.revoke_key(publisher, "tests")
    with pytest.raises(SignatureError, match="not trusted"):
        lifecycle.install(bundle, ["kv"], "tests")
    assert not Plugin.objects.exists() and not blobs()


def test_failure_inside_install_leaves_database_and_storage_as_they_were(make_bundle) -> None:  # type: ignore[no-untyped-def]
    import wasmtime

    bad = make_bundle(wasm=wasmtime.wat2wasm(WRONG_IMPORT_TYPE_WAT))
    before_events = AuditEvent.objects.count()
    with pytest.raises(PluginLoadError, match=r"env\.gn_log has the wrong type"):
        lifecycle.install(bad, ["kv"], "tests", activate=True)  # activation fails inside the transaction
    assert not Plugin.objects.exists() and not PluginVersion.objects.exists()
    assert AuditEvent.objects.count() == before_events
    assert not blobs()


# --- activate / deactivate --------------------------------------------------------------------


@ON_COMMIT
def test_activate_deactivate_round_trip(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests")
    assert lifecycle.activate("demo", "tests").changed
    assert not lifecycle.activate("demo", "tests").changed  # already active: no-op, no audit
    assert registry.get("demo") is not None
    assert lifecycle.deactivate("demo", "tests").changed
    assert registry.get("demo") is None
    assert not lifecycle.deactivate("demo", "tests").changed
    assert actions() == ["install", "activate", "deactivate"]
    event = AuditEvent.objects.get(action="deactivate")
    assert (event.details["before"], event.details["after"]) == ("active", "inactive")


def test_activation_needs_hooks_subscribe_for_hooks(make_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(capabilities=["kv"], hooks=[{"name": "upper", "kind": "filter"}])
    lifecycle.install(bundle, ["kv"], "tests")
    with pytest.raises(LifecycleError, match=r"hooks\.subscribe"):
        lifecycle.activate("demo", "tests")
    assert Plugin.objects.get(slug="demo").state == PluginState.INACTIVE


def test_unknown_plugin_is_a_typed_error() -> None:
    with pytest.raises(PluginNotFound):
        lifecycle.activate("nope", "tests")


# --- upgrade / rollback -----------------------------------------------------------------------


@ON_COMMIT
def test_upgrade_with_new_capability_needs_consent_and_old_version_keeps_running(make_bundle) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    v2 = make_bundle(version="2.0.0", capabilities=[*GRANTS, "jobs.enqueue"],
                     hooks=HOOKED["hooks"])
    with pytest.raises(ConsentRequired) as refused:
        lifecycle.upgrade("demo", v2, [], "tests")
    assert refused.value.missing == ["jobs.enqueue"]
    plugin = Plugin.objects.get(slug="demo")
    assert plugin.active_version.version == "1.0.0" and plugin.state == PluginState.ACTIVE
    assert registry.get("demo").version == "1.0.0"
    assert PluginVersion.objects.count() == 1

    lifecycle.upgrade("demo", v2, ["jobs.enqueue"], "tests")
    assert registry.get("demo").version == "2.0.0"
    event = AuditEvent.objects.get(action="upgrade")
    assert event.details["capabilities_added"] == ["jobs.enqueue"]
    assert (event.details["before"], event.details["after"]) == ("1.0.0", "2.0.0")


def test_versions_are_immutable(make_bundle) -> None:  # type: ignore[no-untyped-def]
    first = make_bundle()
    lifecycle.install(first, ["kv"], "tests")
    assert not lifecycle.upgrade("demo", make_bundle(), [], "tests").changed  # same bytes: no-op
    with pytest.raises(VersionConflict, match="immutable"):
        lifecycle.upgrade("demo", make_bundle(description="changed"), [], "tests")
    lifecycle.upgrade("demo", make_bundle(version="1.1.0"), [], "tests")
    with pytest.raises(LifecycleError, match="rollback"):
        lifecycle.upgrade("demo", make_bundle(version="1.0.5"), [], "tests")
    with pytest.raises(LifecycleError, match="is for 'other'"):
        lifecycle.upgrade("demo", make_bundle(slug="other", version="9.0.0"), [], "tests")


@ON_COMMIT
def test_rollback_default_and_explicit(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    lifecycle.upgrade("demo", make_bundle(version="1.1.0", **HOOKED), [], "tests")
    lifecycle.upgrade("demo", make_bundle(version="2.0.0-rc.1", **HOOKED), [], "tests")
    assert registry.get("demo").version == "2.0.0-rc.1"
    assert lifecycle.rollback("demo", "tests").version.version == "1.1.0"
    assert registry.get("demo").version == "1.1.0"
    assert lifecycle.rollback("demo", "tests", to_version="2.0.0-rc.1").version.version == "2.0.0-rc.1"
    assert not lifecycle.rollback("demo", "tests", to_version="2.0.0-rc.1").changed
    with pytest.raises(LifecycleError, match="not installed"):
        lifecycle.rollback("demo", "tests", to_version="0.1.0")
    lifecycle.rollback("demo", "tests", to_version="1.0.0")
    with pytest.raises(LifecycleError, match="no older version"):
        lifecycle.rollback("demo", "tests")
    assert signal_log.seen.count("plugin_rolled_back") == 3
    assert registry.get("demo").invoke("filter", "upper", "ok") == "OK"


def test_rollback_to_a_version_needing_a_revoked_capability_is_refused(make_bundle) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(capabilities=["kv", "jobs.enqueue"]), ["kv", "jobs.enqueue"], "tests",
                      activate=True)
    lifecycle.upgrade("demo", make_bundle(version="2.0.0", capabilities=["kv"]), [], "tests")
    lifecycle.revoke("demo", "jobs.enqueue", "tests")
    with pytest.raises(ConsentRequired, match=r"jobs\.enqueue"):
        lifecycle.rollback("demo", "tests")
    assert Plugin.objects.get(slug="demo").active_version.version == "2.0.0"


# --- uninstall --------------------------------------------------------------------------------


@ON_COMMIT
def test_uninstall_leaves_no_grants_kv_or_unreferenced_blobs(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    lifecycle.upgrade("demo", make_bundle(version="2.0.0", wasm=_other_wasm(), **HOOKED), [], "tests")
    # A second plugin shares version 1's bytes: that blob must survive.
    lifecycle.install(make_bundle(slug="twin"), ["kv"], "tests")
    PluginKV.objects.create(plugin_slug="demo", key="k", value=1, size=1)
    assert len(blobs()) == 2
    lifecycle.uninstall("demo", "tests")
    assert not Plugin.objects.filter(slug="demo").exists()
    assert not CapabilityGrant.objects.filter(plugin__slug="demo").exists()
    assert not PluginKV.objects.filter(plugin_slug="demo").exists()
    assert blobs() == {blob_name(make_bundle(slug="twin").wasm_sha256)}
    assert registry.get("demo") is None
    event = AuditEvent.objects.get(action="uninstall")
    assert event.plugin_slug == "demo" and event.details["versions"] == ["1.0.0", "2.0.0"]
    assert "plugin_uninstalled" in signal_log.seen


@ON_COMMIT
def test_uninstall_keep_data_keeps_kv_for_a_reinstall(make_bundle) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(), ["kv"], "tests")
    PluginKV.objects.create(plugin_slug="demo", key="k", value={"x": 1}, size=7)
    lifecycle.uninstall("demo", "tests", keep_data=True)
    assert not Plugin.objects.exists() and not blobs()
    assert PluginKV.objects.filter(plugin_slug="demo").count() == 1
    lifecycle.install(make_bundle(), ["kv"], "tests")
    assert PluginKV.objects.get(plugin_slug="demo", key="k").value == {"x": 1}


def _other_wasm() -> bytes:
    import wasmtime

    from tests.conftest import ABI_GUEST

    return wasmtime.wat2wasm(ABI_GUEST.read_text().replace("hello from guest", "hello from guest2"))


# --- grants and keys --------------------------------------------------------------------------


@ON_COMMIT
def test_grant_optional_and_revoke_required_deactivates(make_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(capabilities=["kv", "hooks.subscribe"], optionalCapabilities=["jobs.enqueue"],
                         hooks=HOOKED["hooks"])
    lifecycle.install(bundle, GRANTS, "tests", activate=True)
    assert lifecycle.grant("demo", ["jobs.enqueue"], "tests").changed
    assert "jobs.enqueue" in registry.get("demo").capabilities
    lifecycle.revoke("demo", "jobs.enqueue", "tests")  # optional: keeps running
    assert "jobs.enqueue" not in registry.get("demo").capabilities
    assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE
    lifecycle.revoke("demo", "kv", "tests")  # required: cannot run without it
    plugin = Plugin.objects.get(slug="demo")
    assert plugin.state == PluginState.INACTIVE and "'kv' was revoked" in plugin.state_reason
    assert registry.get("demo") is None
    assert actions()[-3:] == ["revoke", "revoke", "deactivate"]


def test_revoking_a_key_deactivates_what_it_signed(make_bundle, publisher) -> None:  # type: ignore[no-untyped-def]
    other_private, other_public = signing.generate_key()
    lifecycle.trust_key("Other", other_public, "tests")
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    lifecycle.install(make_bundle(slug="other", key=other_private, **HOOKED), GRANTS, "tests", activate=True)
    affected = lifecycle.revoke_key(publisher, "tests")
    assert affected == ["demo"]
    assert Plugin.objects.get(slug="demo").state == PluginState.INACTIVE
    assert Plugin.objects.get(slug="other").state == PluginState.ACTIVE
    assert registry.get("demo") is None and registry.get("other") is not None
    assert PublisherKey.objects.get(pk=publisher.pk).revoked_at is not None
    with pytest.raises(LifecycleError, match="revoked"):
        lifecycle.trust_key("again", publisher.public_key, "tests")


def test_trust_key_validates_the_key() -> None:
    with pytest.raises(SignatureError, match="ed25519"):
        lifecycle.trust_key("bad", "not-base64!", "tests")
    with pytest.raises(SignatureError, match="32 bytes"):
        lifecycle.trust_key("short", "AAAA", "tests")


# --- quarantine -------------------------------------------------------------------------------


@ON_COMMIT
def test_quarantine_after_the_fifth_fault_in_a_minute_and_not_before(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    loaded = registry.get("demo")
    for attempt in range(1, 5):
        with pytest.raises(PluginTrap, match="something broke"):
            loaded.invoke("filter", "panic", "x")
        assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE, attempt
    with pytest.raises(PluginTrap):
        loaded.invoke("filter", "panic", "x")
    plugin = Plugin.objects.get(slug="demo")
    assert plugin.state == PluginState.QUARANTINED
    assert "5 faults" in plugin.state_reason and "something broke" in plugin.state_reason
    assert PluginFault.objects.filter(plugin=plugin, kind="trap").count() == 5
    assert PluginFault.objects.first().guest_message == "boom: something broke"
    assert AuditEvent.objects.filter(action="quarantine").count() == 1
    assert "plugin_quarantined" in signal_log.seen
    assert registry.get("demo") is None
    # An admin can reactivate it.
    lifecycle.activate("demo", "admin")
    assert registry.get("demo").invoke("filter", "upper", "back") == "BACK"


def test_old_faults_outside_the_window_do_not_count(make_bundle, settings) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    plugin = Plugin.objects.get(slug="demo")
    old = timezone.now() - timedelta(seconds=61)
    for _ in range(4):
        PluginFault.objects.create(plugin=plugin, kind="trap", message="old")
    PluginFault.objects.update(created_at=old)
    loaded = registry.get("demo")
    for _ in range(4):
        with pytest.raises(PluginTrap):
            loaded.invoke("filter", "panic", "x")
    assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE


def test_guest_error_status_is_not_a_fault(make_bundle) -> None:  # type: ignore[no-untyped-def]
    from gonext_plugins.errors import HookError

    lifecycle.install(make_bundle(**HOOKED), GRANTS, "tests", activate=True)
    for _ in range(6):
        with pytest.raises(HookError):
            registry.get("demo").invoke("filter", "err", "x")
    assert Plugin.objects.get(slug="demo").state == PluginState.ACTIVE
    assert not PluginFault.objects.exists()


def test_signals_do_not_fire_for_rolled_back_transactions(make_bundle, signal_log) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle()
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.install(bundle, ["kv"], "tests")
        raise RuntimeError("caller's transaction fails")
    assert signal_log.seen == []
    assert not Plugin.objects.exists()
    # The blob was written before the caller's transaction failed; garbage collection removes it.
    assert blobs() == {blob_name(bundle.wasm_sha256)}
    assert lifecycle.collect_blobs(grace_seconds=0) == [blob_name(bundle.wasm_sha256)]
    assert not blobs()


def test_key_lookup_by_prefix_is_typed_and_never_matches_everything(publisher) -> None:  # type: ignore[no-untyped-def]
    from gonext_plugins.errors import KeyNotFound

    for bad in ("", "   ", "abc"):
        with pytest.raises(KeyNotFound, match="at least 8"):
            lifecycle.revoke_key(bad, "tests")
    with pytest.raises(KeyNotFound, match="no publisher key"):
        lifecycle.revoke_key("00000000deadbeef", "tests")
    assert PublisherKey.objects.get(pk=publisher.pk).revoked_at is None
    assert lifecycle.revoke_key(publisher.fingerprint[:12].upper(), "tests") == []
    events = AuditEvent.objects.filter(action="revoke_key").count()
    assert lifecycle.revoke_key(publisher, "tests") == []  # already revoked: no-op, no audit
    assert AuditEvent.objects.filter(action="revoke_key").count() == events == 1


def test_trusting_a_trusted_key_again_is_a_quiet_no_op(publisher) -> None:  # type: ignore[no-untyped-def]
    assert lifecycle.trust_key("same", publisher.public_key, "tests").pk == publisher.pk
    assert AuditEvent.objects.filter(action="trust_key").count() == 1


def test_log_is_always_granted_without_asking(make_bundle) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(capabilities=["kv", "log"]), ["kv"], "tests", activate=True)
    assert "log" in registry.get("demo").capabilities
    assert "log" in lifecycle.effective(lifecycle.granted_capabilities(Plugin.objects.get(slug="demo")),
                                        registry.get("demo").manifest)


def test_jobs_declared_without_gn_handle_job_refuse_activation(make_bundle) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import guest_wasm

    bundle = make_bundle(wasm=guest_wasm("minimal"), capabilities=["kv", "jobs.enqueue"],
                         jobs=[{"name": "demo.work"}])
    lifecycle.install(bundle, ["kv", "jobs.enqueue"], "tests")
    with pytest.raises(PluginLoadError, match="gn_handle_job"):
        lifecycle.activate("demo", "tests")
    assert Plugin.objects.get(slug="demo").state == PluginState.INACTIVE
