"""``manage.py plugin run``: one hook or job of a project dir or a bundle against a fixture, no site.

Through call_command (no ``django_db`` mark: pytest-django fails any test that touches the database,
so these also hold that the command needs none) and, for the exit codes, a real process.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gonext_plugins import bundle
from gonext_plugins.devtools import builders
from gonext_plugins.devtools.fsutil import output_path
from tests.conftest import guest_wasm, make_manifest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("plugin", "run", *args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run(*args, "--json"))
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A built project directory: manifest.json + build/dev/plugin.wasm of the ABI guest."""
    directory = tmp_path / "demo"
    output_path(directory).parent.mkdir(parents=True)
    manifest = make_manifest(capabilities=["hooks.subscribe"], optionalCapabilities=["kv"],
                             settings={"type": "object",
                                       "properties": {"n": {"type": "integer", "default": 2}}},
                             hooks=[{"name": "upper", "kind": "filter"}, {"name": "log", "kind": "action"}])
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "plugin.wat").write_text((REPO / "tests" / "guests" / "abi_guest.wat").read_text())
    output_path(directory).write_bytes(guest_wasm("abi_guest"))
    return directory


def test_a_filter_prints_output_logs_fuel_time_and_memory(project: Path) -> None:
    text = run(str(project), "--hook", "upper", "--value", '"hello"')
    assert "filter upper: ok" in text and 'output: "HELLO"' in text
    assert "fuel: " in text and "wall time: " in text and "peak memory: 131,072 bytes" in text
    logged = run(str(project), "--hook", "log")
    assert "action log: ok" in logged and "log [guest info] hello from guest" in logged


def test_the_json_shape(project: Path) -> None:
    out = run_json(str(project), "--hook", "upper", "--value", '"a"', "--args", "[1, 2]")
    assert set(out) == {"kind", "name", "status", "output", "error", "trap", "logs", "hostCalls", "enqueued",
                        "fuel", "wallMs", "peakMemoryBytes"}
    assert (out["kind"], out["status"], out["output"]) == ("filter", "ok", "A")
    assert out["fuel"] > 0 and out["peakMemoryBytes"] == 131072
    job = run_json(str(project), "--job", "sync", "--payload", '{"n": 1}', "--id", "t-1")
    assert job["output"] == {"kind": "job", "job": "sync", "id": "t-1", "payload": {"n": 1}}


def test_host_calls_grants_and_limits(project: Path) -> None:
    granted = run_json(str(project), "--hook", "hc:kv.incr", "--kind", "action")
    assert granted["status"] == "ok" and granted["hostCalls"][0]["name"] == "kv.incr"
    for denied in (run_json(str(project), "--hook", "hc:kv.incr", "--kind", "action", "--no-grants"),
                   run_json(str(project), "--hook", "hc:kv.incr", "--kind", "action",
                            "--grant", "hooks.subscribe")):
        assert denied["hostCalls"] == [] and any("denied" in line["message"] for line in denied["logs"])
    with pytest.raises(CommandError, match=r"call_failed: .*fuel"):
        run(str(project), "--hook", "loop", "--fuel", "50000")
    with pytest.raises(CommandError, match=r"call_failed: .*(timeout|deadline)"):
        run(str(project), "--hook", "loop", "--timeout-ms", "50", "--fuel", "100000000000")
    small = run_json(str(project), "--hook", "upper", "--value", '"x"', "--memory-pages", "2")
    assert small["status"] == "ok"
    with pytest.raises(CommandError, match="load_error"):
        run(str(project), "--hook", "upper", "--memory-pages", "1")


def test_bench_reports_min_median_p99(project: Path) -> None:
    text = run(str(project), "--hook", "upper", "--value", '"x"', "--bench", "20")
    assert "bench: 20 runs, time min" in text and "p99" in text and "fuel min" in text
    out = run_json(str(project), "--hook", "upper", "--value", '"x"', "--bench", "5")
    assert out["bench"]["runs"] == 5 and out["bench"]["minFuel"] == out["bench"]["maxFuel"] > 0


def test_fixtures_pass_and_a_failing_expect_is_exit_1_with_a_diff(project: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"hook": "upper", "kind": "filter", "value": "ab", "kv": {"k": 1},
                                "expect": {"result": "AB", "kv": {"k": 1}, "logs": []}}))
    assert "expect: ok" in run(str(project), "--fixture", str(good))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "upper", "kind": "filter", "value": "ab", "expect": {"result": "ab"}}))
    out = io.StringIO()
    with pytest.raises(CommandError, match="expect_failed") as raised:
        call_command("plugin", "run", str(project), "--fixture", str(bad), stdout=out)
    assert raised.value.returncode == 1
    assert '-"ab"' in out.getvalue() and '+"AB"' in out.getvalue()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"hook": "upper", "value": "x", "colour": 1}))
    with pytest.raises(CommandError, match="bad_fixture: unknown fixture field"):
        run(str(project), "--fixture", str(broken))


def test_a_bundle_target(tmp_path: Path) -> None:
    path = tmp_path / "demo.gnplugin"
    path.write_bytes(bundle.pack(make_manifest(), guest_wasm()))
    assert run_json(str(path), "--hook", "upper", "--value", '"b"')["output"] == "B"


def test_bad_input_is_a_typed_error(project: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="bad_fixture: --value is not JSON"):
        run(str(project), "--hook", "upper", "--value", "{nope")
    with pytest.raises(CommandError, match=r"bad_fixture: .*neither"):
        run(str(tmp_path / "missing"), "--hook", "upper")
    (tmp_path / "unbuilt").mkdir()
    (tmp_path / "unbuilt" / "manifest.json").write_text(json.dumps(make_manifest()))
    with pytest.raises(CommandError, match="not_built"):
        run(str(tmp_path / "unbuilt"), "--hook", "upper")


@pytest.fixture(scope="module")
def zig_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ziglang")
    directory = tmp_path_factory.mktemp("zig") / "echo"
    directory.mkdir()
    shutil.copy(REPO / "tests" / "guests" / "zig_sdk_echo" / "main.zig", directory / "main.zig")
    (directory / "manifest.json").write_text(json.dumps(make_manifest(slug="echo")))
    builders.compile_project(directory)
    return directory


def test_a_trap_is_reported_with_its_source_line(zig_project: Path) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError, match="call_failed: action panic ended with status trap"):
        call_command("plugin", "run", str(zig_project), "--hook", "panic", "--args", '["boom"]', stdout=out)
    assert "guest says: boom" in out.getvalue()
    source = (zig_project / "main.zig").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(source) if 'gn.panicf("guest says' in text)
    assert f"main.zig:{line}" in out.getvalue()


def test_exit_codes_from_the_command_line(project: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONPATH": str(REPO)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(REPO / "manage.py"), "plugin", "run", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert cli(str(project), "--hook", "upper", "--value", '"q"').returncode == 0
    failed = cli(str(project), "--hook", "err")
    assert failed.returncode == 1
    assert "error: call_failed: action err ended with status error" in failed.stderr
    assert cli(str(project)).returncode == 2  # neither --hook, --job nor --fixture
    assert cli(str(project), "--hook", "upper", "--bench", "0").returncode == 2
