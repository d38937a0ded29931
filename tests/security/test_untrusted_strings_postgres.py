"""Issue #13, class 7: every string a plugin or a client supplies is stored safely on every
supported database.

Each scenario below runs on the suite's database (SQLite) in this process, and
``test_every_scenario_on_postgresql`` runs them all again in a child pytest against a throwaway
PostgreSQL cluster (``postgres_url`` from ``test_cross_process``), where a NUL in ``text`` or in
``jsonb`` is refused by the server. The plugin side is a real WAT guest (``untrusted_text.wat``:
``gn_panic`` and ``gn_log`` with a NUL byte, a job result holding ``"\\u0000"``) and the real
``hostcall_guest``; nothing is mocked.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from gonext_plugins import bundle, jobs, lifecycle, logs
from gonext_plugins.errors import ManifestError, PluginTrap
from gonext_plugins.models import AuditEvent, Plugin, PluginFault, PluginJobRun, PluginKV, PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry
from tests.api.helpers import assert_error
from tests.conftest import guest_wasm, make_manifest
from tests.test_cross_process import postgres_url  # noqa: F401  (a fixture)
from tests.test_jobs import work_until_final

from .postgres_child import on_the_expected_database, run_module_on_postgresql  # noqa: F401  (autouse)

# Real commits: the same module runs again on PostgreSQL (postgres_child), where what is under test
# (row locks under READ COMMITTED, what the server refuses) needs committed transactions.
pytestmark = pytest.mark.django_db(transaction=True)

ESCAPED_NUL = "\\x00"  # what a NUL becomes in a stored record: four visible characters


@cache
def text_wasm() -> bytes:
    return guest_wasm("untrusted_text")


def install(make_bundle: Any, slug: str, wasm: bytes, caps: tuple[str, ...], **fields: Any) -> LoadedPlugin:
    lifecycle.install(make_bundle(wasm=wasm, slug=slug, capabilities=list(caps), **fields), list(caps),
                      "tests", activate=True)
    loaded = registry.get(slug)
    assert loaded is not None
    return loaded


def test_a_panic_message_with_nul_is_stored_and_still_quarantines(make_bundle: Any, settings: Any) -> None:
    """Before: no fault row was ever written on PostgreSQL (DataError), so a plugin trapping on every
    call was never quarantined. Now each fault is stored, the NUL visible as ``\\x00``."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "QUARANTINE_FAULTS": 3}
    loaded = install(make_bundle, "nulpanic", text_wasm(), ("hooks.subscribe",),
                     hooks=[{"name": "panic", "kind": "action"}])
    for _ in range(3):
        with pytest.raises(PluginTrap):
            loaded.invoke("action", "panic", [])
    faults = list(PluginFault.objects.filter(plugin__slug="nulpanic"))
    assert len(faults) == 3
    assert {f.guest_message for f in faults} == {f"boom{ESCAPED_NUL}after"}
    plugin = Plugin.objects.get(slug="nulpanic")
    assert plugin.state == "quarantined"
    assert ESCAPED_NUL in plugin.state_reason
    audit = AuditEvent.objects.filter(plugin_slug="nulpanic", action="quarantine").get()
    assert ESCAPED_NUL in json.dumps(audit.details)
    logs.flush()
    host = list(PluginLogEntry.objects.filter(plugin="nulpanic", source="host")
                .values_list("message", flat=True))
    trap_line = f"trap in panic: guest panicked: boom{ESCAPED_NUL}after"
    assert sum(line.startswith(trap_line) for line in host) == 3, host
    assert f"boom{ESCAPED_NUL}after" in host[-1] and host[-1].startswith("quarantined:"), host


def test_a_log_line_with_nul_costs_no_other_line(make_bundle: Any) -> None:
    """Before: the batch holding the NUL line failed as a whole on PostgreSQL, taking another
    plugin's line and a host event with it. Now every line of the batch is stored."""
    loaded = install(make_bundle, "nullog", text_wasm(), ("hooks.subscribe",),
                     hooks=[{"name": "log", "kind": "action"}])
    logs.flush()
    logs.runtime_log_sink("bystander", logs.INFO, "a line of another plugin", "guest")
    loaded.invoke("action", "log", [])
    logs.log_event("nullog", logs.ERROR, "quarantined: a host event in the same batch")
    logs.flush()
    expected = {f"line{ESCAPED_NUL}with nul": "nullog", "a line of another plugin": "bystander",
                "quarantined: a host event in the same batch": "nullog"}
    stored = PluginLogEntry.objects.filter(message__in=list(expected)).values_list("message", "plugin")
    assert dict(stored) == expected


def test_a_job_result_with_nul_is_stored(make_bundle: Any) -> None:
    """A guest's job result is JSON with ``"\\u0000"`` in it, which ``jsonb`` refuses: the result is
    stored with the NUL escaped and the job succeeds instead of staying ``running``."""
    install(make_bundle, "nuljob", text_wasm(), ("jobs.enqueue",), jobs=[{"name": "answer"}])
    run = jobs.enqueue("nuljob", "answer", {"n": 1})
    done = work_until_final(run.id)
    assert (done.status, done.result) == ("succeeded", {"text": f"a{ESCAPED_NUL}b"})


def test_plugin_data_with_nul_is_refused_not_altered(make_bundle: Any) -> None:
    """Data a plugin reads back (kv keys and values, job payloads) is refused with -1 and a log line
    naming where the NUL is; nothing is stored and the host keeps serving."""
    loaded = install(make_bundle, "nuldata", guest_wasm("hostcall_guest"), ("kv", "jobs.enqueue"),
                     jobs=[{"name": "own"}])
    refused = [
        ("kv.set", {"key": "k\u0000", "value": 1}),
        ("kv.set", {"key": "k", "value": {"deep": ["ok", "bad\u0000"]}}),
        ("kv.set", {"key": "k", "value": {"bad\u0000key": 1}}),
        ("kv.get", {"key": "k\u0000"}),
        ("kv.delete", {"key": "k\u0000"}),
        ("kv.list", {"prefix": "k\u0000"}),
        ("jobs.enqueue", {"job": "own", "payload": {"text": "a\u0000b"}}),
    ]
    for function, payload in refused:
        assert loaded.invoke("filter", function, payload) == {"hc": -1}, (function, payload)
    assert loaded.invoke("filter", "kv.set", {"key": "k", "value": "fine"}) == {"ok": True}
    assert dict(PluginKV.objects.filter(plugin_slug="nuldata").values_list("key", "value")) == {"k": "fine"}
    assert not PluginJobRun.objects.filter(plugin_slug="nuldata").exists()
    logs.flush()
    lines = list(PluginLogEntry.objects.filter(plugin="nuldata").values_list("message", flat=True))
    assert any("$.deep[1]" in line and "NUL" in line for line in lines), lines
    assert any("job payload at $.text" in line for line in lines), lines


@pytest.mark.parametrize("field, value, path", [
    ("description", "a\u0000b", "$.description"),
    ("name", "lone \ud800 surrogate", "$.name"),
    ("author", "Ann \udfff", "$.author"),
])
def test_a_manifest_with_nul_or_a_lone_surrogate_is_bad_manifest(field: str, value: Any, path: str) -> None:
    """Before: a manifest string with ``\\u0000`` passed validation and the install raised an
    uncaught ``DataError`` on PostgreSQL. Now it is ``bad_manifest`` naming the JSON path, through
    the API's one error shape, and nothing is stored."""
    manifest = make_manifest(slug="nulmanifest", **{field: value})
    with pytest.raises(ManifestError) as caught:
        bundle.read(bundle._write_zip({bundle.MANIFEST: json.dumps(manifest).encode(),
                                       bundle.WASM: guest_wasm()}), require_signature=False)
    assert path in {p for p, _ in caught.value.problems}, caught.value.problems

    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root"))
    raw = bundle._write_zip({bundle.MANIFEST: json.dumps(manifest).encode(), bundle.WASM: guest_wasm()})
    upload = SimpleUploadedFile("nul.gnplugin", raw, content_type="application/octet-stream")
    response = client.post("/api/plugins/", {"bundle": upload, "grant": ["kv"]}, format="multipart")
    data = assert_error(response, 400, "bad_manifest")
    assert path in {p["path"] for p in data["problems"]}, data
    assert not Plugin.objects.filter(slug="nulmanifest").exists()


# --- the same scenarios on PostgreSQL ---------------------------------------------------------------


@pytest.mark.slow
def test_every_scenario_on_postgresql(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    """Every test above again, on a real PostgreSQL server."""
    run_module_on_postgresql(__file__, postgres_url, tmp_path)
