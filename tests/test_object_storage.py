"""Plugin blobs in object storage: a real S3 server (SeaweedFS's ``weed server -s3``, started here by
``tests/servers.py``) behind django-storages' S3 backend, configured as ``STORAGES["gonext_plugins"]``.

In this process: install, upgrade, rollback and uninstall keep their blobs in S3 (nothing on local
disk), ``plugin gc`` removes orphaned S3 blobs, and an unreachable server is a typed error (503 from
the API). In fresh processes (``tests/procs/storage_probe.py``, a shared SQLite file): a machine with
an empty artifact cache fetches the blob from S3, compiles and caches it; the next load is a cache
hit with no S3 request at all; a tampered artifact is discarded and recompiled; a tampered blob is
refused; S3 down is a typed error, never a crash and never a fault against the plugin.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import override_settings

from gonext_plugins import lifecycle
from gonext_plugins.errors import BlobStorageUnavailable
from gonext_plugins.loading import close_runtime
from gonext_plugins.models import PluginFault, PluginVersion
from gonext_plugins.registry import registry
from gonext_plugins.storage import PREFIX, blob_name, get_storage

from .api.helpers import CONTENT_HOOKS, MARKER_V2, assert_error, marker_wasm, signed_bundle
from .conftest import REPO, guest_wasm
from .servers import S3Server, free_port, s3_server
from .test_api import client_for, install, make_user
from .test_cross_process import base_env, manage
from .test_cross_process import signed_bundle as xproc_bundle

pytestmark = pytest.mark.slow

CAPS = ["kv", "hooks.subscribe"]
PROBE = Path(__file__).resolve().parent / "procs" / "storage_probe.py"
FAST_FAILING_CLIENT = Config(connect_timeout=2, read_timeout=10, s3={"addressing_style": "path"},
                             retries={"max_attempts": 2, "mode": "standard"})


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def stored_keys(s3: S3Server) -> set[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=PREFIX + "/")
    return {item["Key"] for item in listing.get("Contents", [])}


def on_s3(s3: S3Server, **options: Any) -> Any:
    """``override_settings`` putting plugin blobs on ``s3`` (the Django 5 way: a storage alias)."""
    entry = s3.storages_entry(client_config=FAST_FAILING_CLIENT, **options)
    return override_settings(STORAGES={**django_settings.STORAGES, "gonext_plugins": entry})


def unreachable(s3: S3Server) -> S3Server:
    """The same server's credentials on a port where nothing listens."""
    return S3Server(endpoint_url=f"http://127.0.0.1:{free_port()}", bucket=s3.bucket,
                    access_key=s3.access_key, secret_key=s3.secret_key, log_path=s3.log_path)


# --- in this process ------------------------------------------------------------------------------


def test_lifecycle_keeps_blobs_in_s3_and_gc_removes_orphans(
        s3: S3Server, make_bundle: Any, settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    v1, v2 = marker_wasm(), marker_wasm(MARKER_V2)
    with on_s3(s3):
        assert type(get_storage()).__name__ == "S3Storage"
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(make_bundle(wasm=v1, slug="s3demo", hooks=CONTENT_HOOKS, capabilities=CAPS),
                              CAPS, "tests", activate=True)
            lifecycle.upgrade("s3demo", make_bundle(wasm=v2, slug="s3demo", version="2.0.0",
                                                    hooks=CONTENT_HOOKS, capabilities=CAPS), CAPS, "tests")
            lifecycle.rollback("s3demo", "tests")
        names = {blob_name(hashlib.sha256(wasm).hexdigest()) for wasm in (v1, v2)}
        assert set(PluginVersion.objects.values_list("blob_name", flat=True)) == names
        assert stored_keys(s3) >= names
        assert not (Path(settings.MEDIA_ROOT) / PREFIX).exists()  # nothing on local disk

        # An orphan (a crash between writing a blob and committing its version): gc removes it
        # from S3 and keeps every referenced blob.
        orphan_wasm = b"\0asm\1\0\0\0orphan"
        orphan = blob_name(hashlib.sha256(orphan_wasm).hexdigest())
        s3.client().put_object(Bucket=s3.bucket, Key=orphan, Body=orphan_wasm)
        call_command("plugin", "gc", "--grace", "3600")  # too young: kept
        assert orphan in stored_keys(s3)
        call_command("plugin", "gc", "--grace", "0")
        keys = stored_keys(s3)
        assert orphan not in keys and keys >= names

        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.deactivate("s3demo", "tests")
            lifecycle.uninstall("s3demo", "tests")
        assert not stored_keys(s3) & names


def test_an_unreachable_s3_is_a_typed_error(s3: S3Server, make_bundle: Any, publisher: Any) -> None:
    with on_s3(unreachable(s3)):
        with pytest.raises(BlobStorageUnavailable) as caught:
            lifecycle.install(make_bundle(slug="nos3"), ["kv"], "tests")
        assert caught.value.code == "storage_unavailable"
        assert "Traceback" not in caught.value.message
        admin = client_for(make_user("root", superuser=True))
        response = install(admin, signed_bundle(publisher.private_key, slug="nos3api"), "kv")
        assert_error(response, 503, "storage_unavailable")
    assert not PluginVersion.objects.filter(plugin__slug__in=["nos3", "nos3api"]).exists()


def test_an_uninstall_during_an_outage_commits_and_leaves_the_blob_to_gc(
        s3: S3Server, make_bundle: Any, django_capture_on_commit_callbacks: Any) -> None:
    wasm = marker_wasm()
    name = blob_name(hashlib.sha256(wasm).hexdigest())
    with on_s3(s3):
        lifecycle.install(make_bundle(wasm=wasm, slug="gone", hooks=CONTENT_HOOKS, capabilities=CAPS),
                          CAPS, "tests")
    with on_s3(unreachable(s3)), django_capture_on_commit_callbacks(execute=True):
        lifecycle.uninstall("gone", "tests")  # the delete after commit fails: logged, not raised
    assert not PluginVersion.objects.filter(plugin__slug="gone").exists()
    assert name in stored_keys(s3)
    with on_s3(s3):
        call_command("plugin", "gc", "--grace", "0")
    assert name not in stored_keys(s3)


def test_the_registry_rides_out_an_outage_and_loads_when_storage_returns(
        s3: S3Server, make_bundle: Any, settings: Any) -> None:
    """A process that must fetch a blob while S3 is down loads nothing, records no fault (five
    would quarantine the plugin everywhere), and loads it at its next sync once S3 answers: no
    change of generation, no restart."""
    with on_s3(s3):
        lifecycle.install(make_bundle(slug="outage", hooks=[{"name": "upper", "kind": "filter"}],
                                      capabilities=CAPS), CAPS, "tests", activate=True)
    close_runtime()
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "gonext_plugins" / "cache")  # a fresh machine
    with on_s3(unreachable(s3)):
        registry.sync(force=True)
        assert registry.get("outage", sync=False) is None
    assert not PluginFault.objects.filter(plugin__slug="outage").exists()
    with on_s3(s3):
        assert registry.sync() is True  # the same generation: retried because it was incomplete
        loaded = registry.get("outage", sync=False)
        assert loaded is not None and loaded.invoke("filter", "upper", "back") == "BACK"


# --- fresh processes ------------------------------------------------------------------------------


def probe(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run one probe operation in a new process; its JSON line (a traceback fails the test)."""
    done = subprocess.run([sys.executable, str(PROBE), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, f"probe {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def machine(database_url: str, workdir: Path, name: str, s3: S3Server) -> dict[str, str]:
    """The environment of a process on machine ``name``: its own MEDIA_ROOT (so its own artifact
    cache), the shared database and the shared S3 bucket."""
    media = workdir / name
    media.mkdir(exist_ok=True)
    env = base_env(database_url, media)
    env["GONEXT_TEST_BLOB_STORAGE"] = json.dumps(s3.storages_entry())
    return env


def test_fresh_processes_fetch_from_s3_once_and_then_use_their_cache(s3: S3Server, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    installer = machine(database_url, tmp_path, "machine-a", s3)
    manage(installer, "migrate", "--noinput", "-v0")
    bundle_path = tmp_path / "xproc.gnplugin"
    manage(installer, "plugin", "trust-key", "Storage publisher", xproc_bundle(bundle_path))
    assert probe(installer, "install", str(bundle_path), "kv,hooks.subscribe")["changed"] is True
    key = blob_name(hashlib.sha256(guest_wasm()).hexdigest())  # the wasm xproc_bundle packs
    assert key in stored_keys(s3)
    assert not (tmp_path / "machine-a" / PREFIX).exists()

    # Machine B, empty cache: the blob comes from S3, is compiled and cached.
    web = machine(database_url, tmp_path, "machine-b", s3)
    first = probe(web, "load", "xproc", "hello")
    assert first["result"] == "HELLO", first
    assert first["s3_calls"].get("GetObject", 0) >= 1, first
    assert (first["cache_hits"], first["cache_misses"]) == (0, 1), first
    print(f"\nload with an empty cache (S3 GET + compile): {first['load_ms']} ms")
    (artifact,) = (tmp_path / "machine-b").rglob("*.gnmod")

    # Again, a new process: a cache hit, and not one S3 request.
    second = probe(web, "load", "xproc", "again")
    assert second["result"] == "AGAIN", second
    assert second["s3_calls"] == {}, second
    assert (second["cache_hits"], second["cache_misses"]) == (1, 0), second
    print(f"load from the artifact cache, no S3 request: {second['load_ms']} ms")

    # A tampered artifact is discarded, the blob fetched again and recompiled.
    data = bytearray(artifact.read_bytes())
    data[-64] ^= 0x01
    artifact.write_bytes(bytes(data))
    third = probe(web, "load", "xproc", "fixed")
    assert third["result"] == "FIXED", third
    assert (third["cache_hits"], third["cache_misses"], third["cache_rejected"]) == (0, 1, 1), third
    assert third["s3_calls"].get("GetObject", 0) >= 1, third

    # A tampered blob in S3: refused by a machine that must fetch it (typed, not a crash); a machine
    # that compiled the verified bytes before keeps serving them from its cache.
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=(tmp_path / "xproc.gnplugin").read_bytes())
    fresh = machine(database_url, tmp_path, "machine-c", s3)
    refused = probe(fresh, "load", "xproc", "evil")
    assert refused.get("error") == "load_error" and "sha256" in refused["detail"], refused
    assert probe(web, "load", "xproc", "cached")["result"] == "CACHED"

    # S3 down, empty cache: a typed error from the loader; the registry logs it, loads nothing,
    # records no fault against the plugin (an outage is not its fault), and the process lives on.
    down = machine(database_url, tmp_path, "machine-d", unreachable(s3))
    outage = probe(down, "load", "xproc", "down")
    assert outage.get("error") == "storage_unavailable", outage
    through_registry = probe(down, "registry", "xproc", "down")
    assert through_registry["loaded"] is False and through_registry["faults"] == 0, through_registry
