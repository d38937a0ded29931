"""The cluster fixture: one cluster per test session, started by the first check that needs it
(all checks live in test_cluster.py, so ``pytest -n 2 --dist loadfile`` runs them on one worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Cluster, running_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing check also shows the end of every process's log."""
    report = yield
    if report.failed and call.when == "call" and "cluster" in getattr(item, "funcargs", {}):
        report.sections.append(("cluster process logs", item.funcargs["cluster"].tails()))
    return report
