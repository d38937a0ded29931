"""``manage.py plugin run``: run one hook or job of a plugin against a fixture, without a site.

Option parsing and rendering only; the work is :mod:`gonext_plugins.testing` (Django-free). Needs no
database: the host functions answer from memory (kv, settings, http stubs, the fixture's functions).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from django.core.management.base import CommandError

from gonext_plugins.errors import FixtureError
from gonext_plugins.runtime.levels import NAMES
from gonext_plugins.testing import CallResult, FixtureResult, PluginHarness, load_json, run_fixture
from gonext_plugins.testing._fixture import parse as parse_fixture

RUN_SUBCOMMANDS: dict[str, str] = {
    "run": "run a hook or job of a project dir, .gnplugin or .wasm against a fixture; print output, logs, "
           "fuel, time, memory (no site needed)",
}


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FixtureError(f"--{what} is not JSON: {exc}") from exc


class RunCommands:
    """``args_run`` / ``handle_run`` (see ``plugin.py``)."""

    stdout: Any

    def args_run(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target",
                            help="a built project directory, a .gnplugin, or a .wasm with manifest.json")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--hook", help="the hook to run (with --value for a filter, --args)")
        what.add_argument("--job", help="the job to run (with --payload)")
        what.add_argument("--fixture", help="a fixture file (docs/commands.md); its expect is checked")
        parser.add_argument("--kind", choices=("action", "filter"),
                            help="the hook's kind (default: the manifest's, else filter with --value)")
        parser.add_argument("--value", help="a filter's value (JSON)")
        parser.add_argument("--args", dest="call_args_json", metavar="JSON",
                            help="the hook's arguments (a JSON array)")
        parser.add_argument("--payload", help="the job's payload (JSON)")
        parser.add_argument("--id", help="the job's idempotency key")
        parser.add_argument("--grant", action="append", metavar="CAP",
                            help="grant only these capabilities (repeat; default: all the manifest asks for)")
        parser.add_argument("--no-grants", action="store_true", help="grant nothing but log and self")
        parser.add_argument("--fuel", type=int, help="instruction budget per call")
        parser.add_argument("--memory-pages", type=int, help="linear memory cap in 64 KiB pages")
        parser.add_argument("--timeout-ms", type=int, help="hard deadline per call")
        parser.add_argument("--bench", type=int, metavar="N", help="run the call N times on one instance")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle_run(self, *, target: str, hook: str | None, job: str | None, fixture: str | None,
                   kind: str | None, value: str | None, call_args_json: str | None, payload: str | None,
                   id: str | None,
                   grant: list[str] | None, no_grants: bool, fuel: int | None, memory_pages: int | None,
                   timeout_ms: int | None, bench: int | None, json: bool, **_: Any) -> None:
        if bench is not None and bench < 1:
            raise CommandError("usage: --bench must be at least 1", returncode=2)
        grants = [] if no_grants else grant
        with PluginHarness.load(target, grants=grants, fuel=fuel, memory_pages=memory_pages,
                                timeout_ms=timeout_ms) as harness:
            checked: FixtureResult | None = None
            if fixture is not None:
                data = load_json(fixture)
                parse_fixture(data)
                if grants is not None:
                    data["grants"] = grants
                checked = run_fixture(harness, data)
                call = checked.call
                again = lambda: run_fixture(harness, data).call  # noqa: E731
            else:
                call_args = _json_arg(call_args_json, "args") or []
                if not isinstance(call_args, list):
                    raise FixtureError("--args must be a JSON array")
                if job is not None:
                    job_payload = _json_arg(payload, "payload")
                    again = lambda: harness.job(job, job_payload, id=id)  # noqa: E731
                else:
                    assert hook is not None
                    declared = next((h.kind for h in harness.manifest.hooks if h.name == hook), None)
                    hook_kind = kind or declared or ("filter" if value is not None else "action")
                    if hook_kind == "filter":
                        filter_value = _json_arg(value, "value")
                        again = lambda: harness.filter(hook, filter_value, *call_args)  # noqa: E731
                    else:
                        again = lambda: harness.action(hook, *call_args)  # noqa: E731
                call = again()
            timings = [again() for _ in range(bench)] if bench else []
        self._render(call, checked, timings, as_json=json)
        if not call.ok:
            raise CommandError(f"call_failed: {call.kind} {call.name} ended with status {call.status}: "
                               f"{call.error}", returncode=1)
        if checked is not None and not checked.passed:
            raise CommandError("expect_failed: the fixture's expect did not hold (diff above)", returncode=1)

    def _render(self, call: CallResult, checked: FixtureResult | None, timings: list[CallResult], *,
                as_json: bool) -> None:
        bench = None
        if timings:
            times = sorted(t.wall_ms for t in timings)
            fuels = sorted(t.fuel for t in timings)
            bench = {"runs": len(times), "minMs": round(times[0], 3),
                     "medianMs": round(statistics.median(times), 3),
                     "p99Ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
                     "minFuel": fuels[0], "medianFuel": int(statistics.median(fuels)), "maxFuel": fuels[-1]}
        if as_json:
            out = call.as_dict()
            if checked is not None:
                out["expect"] = {"passed": checked.passed, "mismatches": checked.mismatches, "kv": checked.kv}
            if bench is not None:
                out["bench"] = bench
            self.stdout.write(json.dumps(out, ensure_ascii=False))
            return
        lines = [f"{call.kind} {call.name}: {call.status}" + (f" ({call.error})" if call.error else "")]
        if call.ok:
            lines.append("output: " + json.dumps(call.output, ensure_ascii=False))
        if call.trap:
            lines.append(call.trap["text"])
        for line in call.logs:
            lines.append(f"log [{line.source} {NAMES.get(line.level, line.level)}] {line.message}")
        for host_call in call.host_calls:
            answer = f"error {host_call.error}" if host_call.error else json.dumps(host_call.result)
            lines.append(f"host call {host_call.name} {json.dumps(host_call.payload)} -> {answer}")
        for queued in call.enqueued:
            lines.append(f"enqueued job {queued['job']} {json.dumps(queued['payload'])}")
        lines.append(f"fuel: {call.fuel:,}   wall time: {call.wall_ms:.3f} ms   "
                     f"peak memory: {call.peak_memory_bytes:,} bytes")
        if checked is not None:
            lines.append("expect: ok" if checked.passed else f"expect: FAILED\n{checked.diff}")
        if bench is not None:
            lines.append(f"bench: {bench['runs']} runs, time min {bench['minMs']} ms, "
                         f"median {bench['medianMs']} ms, p99 {bench['p99Ms']} ms; "
                         f"fuel min {bench['minFuel']:,}, median {bench['medianFuel']:,}")
        self.stdout.write("\n".join(lines))
