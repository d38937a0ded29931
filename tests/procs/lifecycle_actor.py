"""Process A of the cross-process tests: change plugin state on request.

Reads one JSON command per line on stdin and answers with one JSON line per command, stamped with
``committed_at`` (taken right after the lifecycle call returned, i.e. after its commit), so the
test can measure how long another process takes to notice:

    {"op": "install", "bundle": PATH, "grant": [...], "activate": true}
    {"op": "activate" | "deactivate" | "uninstall", "slug": SLUG}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _django import serve_commands

ACTOR = "tests: process A"


def run(command: dict[str, Any]) -> dict[str, Any]:
    from gonext_plugins import bundle, lifecycle

    op = command["op"]
    if op == "install":
        data = bundle.read(Path(command["bundle"]).read_bytes())
        result = lifecycle.install(data, command.get("grant", []), ACTOR,
                                   activate=command.get("activate", False))
    elif op in ("activate", "deactivate", "uninstall"):
        result = getattr(lifecycle, op)(command["slug"], ACTOR)
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"changed": result.changed, "generation": lifecycle.current_generation()}


def main() -> None:
    serve_commands(run, stamp_commit=True)


if __name__ == "__main__":
    main()
