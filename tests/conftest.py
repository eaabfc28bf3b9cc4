"""Suite-wide test settings. Area fixtures live in each area's conftest.py."""

from __future__ import annotations

import compileall
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.mlflow_db import mlflow_db, mlflow_template  # noqa: F401  (fixtures)

# Plots render off-screen. One intra-op thread per process: the suite runs tests side by side
# on 2 cores, and a second OpenMP thread on a busy machine spins instead of working (the same
# inference took 1.5-2.2x the CPU time: benchmarks/threads.py, docs/benchmarks.md "Stop 22").
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Compile ``src/`` once, before any worker starts, where ``PYTHONDONTWRITEBYTECODE`` is set
    (as on this project's machines): otherwise every ``minivess`` subprocess the suite starts
    compiles the package from source again (up to 0.3 CPU-s each; Python caches it by default)."""
    if sys.dont_write_bytecode and "PYTEST_XDIST_WORKER" not in os.environ:
        compileall.compile_dir(Path(__file__).parents[1] / "src", quiet=1)


@pytest.fixture(scope="session", autouse=True)
def _bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """BentoML's stores (models, bentos, its Prometheus files) in this test process's temp
    dir, not the developer's ~/bentoml: each xdist worker's servers get their own."""
    if "BENTOML_HOME" in os.environ:
        yield
        return
    os.environ["BENTOML_HOME"] = str(tmp_path_factory.mktemp("bentoml"))
    yield
    del os.environ["BENTOML_HOME"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the run slow tests first; make ``--dist loadgroup`` keep each ``xdist_group`` on
    one worker under pytest 9.

    pytest-xdist 3.8 tags a grouped test by assigning ``item._nodeid = "<id>@<group>"``, which
    pytest 9 no longer reads (a node's id is ``item._id``): every group was silently ignored,
    and two workers each ran the session's main job. This hook runs after xdist's and applies
    its tag the way pytest 9 reads ids; it is a no-op once xdist sets the id itself.
    """
    _slow_first(items)
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        tagged = item.__dict__.get("_nodeid")
        if isinstance(tagged, str) and tagged != item.nodeid:
            item._id = NodeId.parse(tagged)  # type: ignore[attr-defined]


def _slow_first(items: list[pytest.Item]) -> None:
    """Slow tests first, each tier in collection order: the workers start on the long
    subprocess-heavy tests and the many short fast ones fill the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
