"""``python -m benchmarks guest_fuel``: guest instructions (fuel) per call of the Zig SDK's guests.

Fuel is deterministic (it counts executed wasm instructions), so it compares SDK versions fairly on
a busy machine where wall time does not. Rows: the SEO example's ``wp_head`` with a post, the
reading-time-zig example's ``the_content`` and ``save_post`` fixtures, and the runtime benchmark's
tiny filter (upper-case a 140-byte string, ``benchmarks/guests/zig_upper``). Host functions are
plain Python answering as the site would (``settings.get`` from the fixture, ``kv.set``/``kv.incr``),
so only guest work counts.

``--baseline REF`` also builds every guest against the SDK as it is at git ``REF`` (into a temporary
directory) and prints both columns and the ratio, from one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "plugins"
FIXTURES = EXAMPLES / "reading-time-fixtures"
UPPER = Path(__file__).parent / "guests" / "zig_upper"
SDK_PATH = "gonext_plugins/sdk/zig/gonext.zig"
TINY_VALUE = ("The quick brown fox jumps over the lazy dog; a filter upper-cases this paragraph of post "
              "content so that every host does the same work!")[:140].ljust(140, ".")
POST = {"id": 3, "title": "How to grow tomatoes on a small balcony", "slug": "grow-tomatoes",
        "body": "Tomatoes love sun. Grow them in big pots on a sunny balcony. " * 20,
        "url": "/posts/grow-tomatoes/", "published": "2024-05-01T10:00:00Z"}


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _host_functions(settings: dict[str, Any]) -> Any:
    """What the site answers, minus the database: settings from a dict, kv writes acknowledged."""
    from gonext_plugins.runtime import HostFunctions

    def settings_get(plugin: Any, payload: Any) -> Any:
        if "key" not in payload:
            return {"settings": settings}
        key = payload["key"]
        return {"found": key in settings, "value": settings.get(key)}

    hf = HostFunctions()
    hf.register("settings.get", "self", settings_get)  # the app grants "self" to every plugin
    hf.register("kv.set", "kv", lambda plugin, payload: {"ok": True})
    hf.register("kv.incr", "kv", lambda plugin, payload: {"value": 5})
    return hf


# (row label, project dir, settings, call(plugin) -> result)
Case = tuple[str, Path, dict[str, Any], Callable[[Any], Any]]


def cases() -> list[Case]:
    content, saved = _fixture("the_content"), _fixture("save_post")
    return [
        ("seo wp_head (post)", EXAMPLES / "seo", {"twitterSite": "@gonext"},
         lambda p: p.invoke_action("wp_head", POST)),
        ("reading-time the_content", EXAMPLES / "reading-time-zig", content["settings"],
         lambda p: p.invoke_filter("the_content", content["value"], *content["args"])),
        ("reading-time save_post", EXAMPLES / "reading-time-zig", saved["settings"],
         lambda p: p.invoke_action("save_post", *saved["args"])),
        ("tiny filter (140 B string)", UPPER, {}, lambda p: p.invoke_filter("the_content", TINY_VALUE)),
    ]


def fuel_per_call(wasm: bytes, settings: dict[str, Any], call: Callable[[Any], Any], name: str) -> int:
    """Fuel of one call on a warm instance (the second call: the first may grow the heap)."""
    from gonext_plugins.runtime import Runtime
    from gonext_plugins.runtime.metrics import stats_for

    with Runtime(host_functions=_host_functions(settings), log_sink=lambda *a: None) as runtime:
        plugin = runtime.load(wasm, name=name, capabilities=frozenset({"kv", "self"}))
        first = call(plugin)
        stats = stats_for(name)
        before = stats.settled().fuel  # checkins queue their figures: a reader settles them first
        if call(plugin) != first:
            raise SystemExit(f"{name}: the second call answered differently")
        return stats.settled().fuel - before


def measure(sdk_dir: Path | None, out_dir: Path | None, tag: str) -> dict[str, int]:
    """Fuel per call of every case, each guest built against the SDK in ``sdk_dir`` (None: ours)."""
    from gonext_plugins.devtools.zigbuild import build_zig

    rows: dict[str, int] = {}
    for label, project, settings, call in cases():
        out = out_dir / project.name / "plugin.wasm" if out_dir is not None else None
        wasm = build_zig(project, out, sdk_dir=sdk_dir).read_bytes()
        rows[label] = fuel_per_call(wasm, settings, call, f"fuel-{tag}-{project.name}")
    return rows


def baseline_sdk(ref: str, into: Path) -> Path:
    """The SDK file as it is at git ``ref``, written to ``into/gonext.zig``."""
    source = subprocess.run(["git", "show", f"{ref}:{SDK_PATH}"], cwd=REPO, capture_output=True,
                            check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    (into / "gonext.zig").write_bytes(source)
    return into


def run(baseline: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {"fuel_per_call": measure(None, None, "current")}
    if baseline is not None:
        with tempfile.TemporaryDirectory(prefix="gn-fuel-") as tmp:
            sdk = baseline_sdk(baseline, Path(tmp) / "sdk")
            results["baseline"] = {"ref": baseline,
                                   "fuel_per_call": measure(sdk, Path(tmp) / "build", "baseline")}
    return results


def table(results: dict[str, Any]) -> str:
    now = results["fuel_per_call"]
    base = results.get("baseline")
    if base is None:
        lines = ["guest fuel per call (wasm instructions)"]
        lines += [f"  {label:<30}{fuel:>12,}" for label, fuel in now.items()]
        return "\n".join(lines)
    lines = [f"guest fuel per call (wasm instructions): {base['ref']} vs this tree",
             f"  {'call':<30}{base['ref']:>12}{'now':>12}{'now/base':>10}"]
    for label, fuel in now.items():
        old = base["fuel_per_call"][label]
        lines.append(f"  {label:<30}{old:>12,}{fuel:>12,}{fuel / old:>10.2f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks guest_fuel", description=__doc__)
    parser.add_argument("--baseline", metavar="REF", help="also measure the SDK at git REF, side by side")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("ziglang") is None:
        print("ziglang is not installed (pip install ziglang)", file=sys.stderr)
        return 1
    results = run(args.baseline)
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print(table(results))
    return 0
