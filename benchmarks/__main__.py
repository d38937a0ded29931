"""``python -m benchmarks <name> [args...]``: run one benchmark module's ``main(argv)``.

Each benchmark is a module ``benchmarks.<name>`` with ``main(argv: list[str]) -> int``; add a line
to ``BENCHMARKS`` to register one.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

BENCHMARKS = {
    "runtime": "benchmarks.runtime",
    "logs": "benchmarks.logs",
    "page": "benchmarks.page",
    "languages": "benchmarks.languages",
    "devloop": "benchmarks.devloop",
    "guest_fuel": "benchmarks.guest_fuel",
    "startup": "benchmarks.startup",
    "memory": "benchmarks.memory",
}


def main(argv: list[str]) -> int:
    if argv[:1] == ["all"]:
        # Each in its own process: some configure Django with their own throwaway database.
        codes = [subprocess.call([sys.executable, "-m", "benchmarks", name]) for name in BENCHMARKS]
        return max(codes)
    if not argv or argv[0] not in BENCHMARKS:
        names = ", ".join(sorted(BENCHMARKS))
        print(f"usage: python -m benchmarks <name|all> [args...]   (names: {names})", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
