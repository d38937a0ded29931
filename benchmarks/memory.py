"""Memory per loaded plugin and per live instance: the figures docs/deploy.md's sizing formula uses.

``python -m benchmarks memory [--instances N]`` measures, each guest in a fresh process (so one
guest's allocations do not hide the next one's), the resident set size (VmRSS) of:

- the process with the wasmtime engine up and no plugin (the baseline);
- after ``Runtime.load`` (the compiled module and the pool's first instance);
- after the pool holds N instances, each of which has served one call (so its linear memory is
  touched as it is in service, not merely reserved).

Guests: the SEO example (Zig, ``examples/plugins/seo``, one ``wp_head`` action with a post) and the
tiny WAT upper-case filter of the runtime benchmark (``benchmarks/guests/upper_gonext.wat``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
GUESTS = {"seo": "the SEO example (Zig)", "tiny_wat": "the WAT upper-case filter"}


def rss_kib() -> int:
    """This process's resident set size, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _guest(name: str) -> tuple[bytes, str, bytes, int]:
    """(wasm, hook, payload of one call, memory pages its manifest caps it at)."""
    import wasmtime

    if name == "seo":
        from gonext_plugins.devtools.zigbuild import build_zig

        wasm = build_zig(ROOT / "examples" / "plugins" / "seo").read_bytes()
        post = {"id": 1, "title": "Growing tomatoes", "slug": "growing-tomatoes", "url": "/posts/1/",
                "body": "Tomatoes like sun. " * 200, "excerpt": "Tomatoes like sun.", "tags": ["garden"]}
        payload = {"kind": "action", "hook": "wp_head", "args": [post]}
        return wasm, "wp_head", orjson.dumps(payload), 64
    wat = (ROOT / "benchmarks" / "guests" / "upper_gonext.wat").read_text()
    payload = {"kind": "filter", "hook": "upper", "value": "hello " * 100, "args": []}
    return bytes(wasmtime.wat2wasm(wat)), "upper", orjson.dumps(payload), 256


def measure_one(name: str, instances: int) -> dict[str, Any]:
    """The three RSS figures for guest ``name`` with a pool of ``instances``, in this process."""
    import tempfile

    from gonext_plugins.errors import PluginError
    from gonext_plugins.runtime import Limits, Runtime

    wasm, hook, payload, pages = _guest(name)
    limits = Limits(memory_pages=pages, min_instances=1, max_instances=instances)
    with tempfile.TemporaryDirectory() as cache:
        runtime = Runtime(limits=limits, cache_dir=cache)  # a plugin's limits may only lower these
        runtime.load(wasm, name="warm-up").close()  # the compile cache filled: loads below are warm
        base = rss_kib()
        plugin = runtime.load(wasm, name=f"mem-{name}")
        loaded = rss_kib()
        held = [plugin.pool.checkout() for _ in range(instances)]
        for inst in held:
            # A host function the bare runtime lacks is an error: the instance still ran and touched memory.
            with contextlib.suppress(PluginError):
                inst.dispatcher.call("gn_handle_hook", hook.encode(), payload)
        full = rss_kib()
        for inst in held:
            plugin.pool.checkin(inst)
        plugin.close()
        runtime.close()
    return {"guest": name, "instances": instances, "baseline_kib": base,
            "plugin_loaded_kib": loaded - base,
            "per_instance_kib": round((full - loaded) / (instances - 1), 1),
            "module_bytes": len(wasm)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__)
    parser.add_argument("--instances", type=int, default=16, help="pool size to fill (default 16)")
    parser.add_argument("--one", choices=sorted(GUESTS), help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args(argv)
    if args.instances < 2:
        parser.error("--instances must be at least 2")
    if args.one:
        print(json.dumps(measure_one(args.one, args.instances)))
        return 0
    results = []
    for name in GUESTS:
        out = subprocess.run([sys.executable, "-m", "benchmarks", "memory", "--one", name,
                              "--instances", str(args.instances)], cwd=ROOT, capture_output=True, text=True,
                             check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{GUESTS[r['guest']]:<28} module {r['module_bytes'] / 1024:7.1f} KiB  "
              f"engine+runtime {r['baseline_kib'] / 1024:6.1f} MiB  "
              f"plugin loaded +{r['plugin_loaded_kib'] / 1024:5.2f} MiB"
              f"  each further instance +{r['per_instance_kib'] / 1024:5.2f} MiB  (pool of {r['instances']})")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
