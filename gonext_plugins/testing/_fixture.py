"""Running a fixture (the ``manage.py plugin run --fixture`` format) and checking its ``expect``.

Format: ``{"hook" | "job", "kind": "action"|"filter", "value", "args", "payload", "id", "grants",
"settings", "kv", "http", "functions", "expect": {"result", "kv", "logs"}}``; see docs/commands.md.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FixtureError
from ._harness import CallResult, PluginHarness, load_json
from ._host import canned

FIELDS = frozenset({"hook", "job", "kind", "value", "args", "payload", "id", "grants", "settings", "kv",
                    "http", "functions", "expect"})
EXPECT_FIELDS = frozenset({"result", "kv", "logs"})


@dataclass
class FixtureResult:
    """A fixture's call and what of its ``expect`` did not hold (``diff``: a readable diff each)."""

    call: CallResult
    mismatches: dict[str, str] = field(default_factory=dict)
    kv: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.call.ok and not self.mismatches

    @property
    def diff(self) -> str:
        return "\n".join(f"expect.{name}:\n{text}" for name, text in self.mismatches.items())

    def check(self) -> None:
        """Raise ``AssertionError`` with the diff (for pytest) when the fixture did not pass."""
        if not self.call.ok:
            trap = f"\n{self.call.trap['text']}" if self.call.trap else ""
            raise AssertionError(f"{self.call.kind} {self.call.name} ended with status {self.call.status}: "
                                 f"{self.call.error}{trap}")
        if self.mismatches:
            raise AssertionError(self.diff)


def _pretty(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def json_diff(expected: Any, actual: Any) -> str:
    lines = difflib.unified_diff(_pretty(expected), _pretty(actual), "expected", "actual", lineterm="")
    return "\n".join(lines)


def parse(fixture: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(kind, name, fixture) checked: the fields known, exactly one of hook/job, kind for a hook."""
    unknown = sorted(set(fixture) - FIELDS)
    if unknown:
        raise FixtureError(f"unknown fixture field(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(FIELDS))}")
    if ("hook" in fixture) == ("job" in fixture):
        raise FixtureError('a fixture names exactly one of "hook" and "job"')
    expect = fixture.get("expect", {})
    if not isinstance(expect, Mapping) or set(expect) - EXPECT_FIELDS:
        raise FixtureError(f"expect must be an object with only {', '.join(sorted(EXPECT_FIELDS))}")
    if "job" in fixture:
        return "job", str(fixture["job"]), dict(fixture)
    kind = fixture.get("kind")
    if kind not in ("action", "filter"):
        raise FixtureError('a hook fixture needs "kind": "action" or "filter"')
    if not isinstance(fixture.get("args", []), list):
        raise FixtureError("args must be a JSON array")
    return str(kind), str(fixture["hook"]), dict(fixture)


def run_fixture(harness: PluginHarness, source: str | Path | Mapping[str, Any]) -> FixtureResult:
    """Set the harness up as the fixture says (grants, settings, kv, http stubs, site functions),
    make the call, and compare what ``expect`` names."""
    kind, name, fixture = parse(load_json(source))
    harness.set_grants(fixture.get("grants"))
    harness.set_settings(fixture.get("settings") or {})
    harness.kv.load(fixture.get("kv") or {})
    harness.set_http(fixture.get("http") or [])
    functions = fixture.get("functions") or {}
    if not isinstance(functions, Mapping):
        raise FixtureError("functions must be an object of name -> {capability, result|error}")
    for fn, spec in functions.items():
        harness.add_function(fn, *canned(fn, spec))
    args = fixture.get("args", [])
    if kind == "filter":
        call = harness.filter(name, fixture.get("value"), *args)
    elif kind == "action":
        call = harness.action(name, *args)
    else:
        call = harness.job(name, fixture.get("payload"), id=fixture.get("id"))
    result = FixtureResult(call, kv=harness.kv.snapshot())
    expect = fixture.get("expect", {})
    if "result" in expect and call.ok and call.output != expect["result"]:
        result.mismatches["result"] = json_diff(expect["result"], call.output)
    if "kv" in expect and result.kv != expect["kv"]:
        result.mismatches["kv"] = json_diff(expect["kv"], result.kv)
    if "logs" in expect and call.plugin_logs != expect["logs"]:
        result.mismatches["logs"] = json_diff(expect["logs"], call.plugin_logs)
    return result
