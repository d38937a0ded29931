"""Fixtures for the runtime tests: plain pytest, no Django settings needed."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gonext_plugins.runtime import Limits, Plugin, Runtime

GUESTS = Path(__file__).resolve().parents[1] / "guests"
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "wasm-malformed"


def wat(name: str) -> str:
    return (GUESTS / f"{name}.wat").read_text()


def require_fast_dispatcher() -> None:
    """The fast dispatcher ships with the runtime: if it cannot load, the ABI tests on it FAIL (a
    skipped dispatcher would let the one production uses go untested)."""
    try:
        importlib.import_module("gonext_plugins.runtime.dispatch_fast")
    except ImportError as exc:
        pytest.fail(f"gonext_plugins.runtime.dispatch_fast cannot load: {exc!r}")


@pytest.fixture(params=["slow", "fast"])
def dispatcher(request: pytest.FixtureRequest) -> str:
    """Run ABI tests against both dispatchers: they must behave the same."""
    if request.param == "fast":
        require_fast_dispatcher()
    return str(request.param)


class LogRecorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str, str]] = []

    def __call__(self, plugin: str, level: int, message: str, source: str) -> None:
        self.lines.append((plugin, level, message, source))


@pytest.fixture
def logs() -> LogRecorder:
    return LogRecorder()


@pytest.fixture
def rt(dispatcher: str, logs: LogRecorder) -> Iterator[Runtime]:
    runtime = Runtime(limits=Limits(fuel=50_000_000, hard_timeout_ms=5_000), log_sink=logs,
                      dispatcher=dispatcher)  # type: ignore[arg-type]
    yield runtime
    runtime.close()


@pytest.fixture
def slow_rt(logs: LogRecorder) -> Iterator[Runtime]:
    runtime = Runtime(log_sink=logs, dispatcher="slow")
    yield runtime
    runtime.close()


@pytest.fixture
def guest(rt: Runtime) -> Plugin:
    return rt.load(wat("abi_guest"), name="guest")
