"""pytest plugin for measuring where the suite's CPU goes (not loaded by CI or ``make test``).

Each test's wall time and CPU time are recorded: its process plus the children reaped during it
(``getrusage`` SELF + CHILDREN). A server is counted when it is reaped, which is often in a
later test's teardown. Under pytest-xdist each worker appends to ``$CPUPROF_OUT.<worker>`` (JSON
lines). The controller, or a run without workers, prints the totals and the ``CPUPROF_TOP``
(default 15) dearest tests at the end::

    CPUPROF_OUT=/tmp/cpu PYTHONPATH=.ci .venv/bin/pytest -q -p cpuprof -n 3 --dist loadgroup

Figures taken with it are in docs/benchmarks.md ("Test suite wall time").
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_OUT = os.environ.get("CPUPROF_OUT")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_TOP = int(os.environ.get("CPUPROF_TOP", "15"))


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    wall0, cpu0 = time.monotonic(), _cpu_s()
    yield
    if _OUT:
        row = {"id": item.nodeid, "worker": _WORKER or "main",
               "wall_s": time.monotonic() - wall0, "cpu_s": _cpu_s() - cpu0}  # fmt: skip
        with open(f"{_OUT}.{_WORKER or 'main'}", "a") as f:
            f.write(json.dumps(row) + "\n")


def _files() -> list[Path]:
    out = Path(str(_OUT))
    return sorted(out.parent.glob(out.name + ".*"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller clears an earlier run's files (before xdist starts its workers)."""
    if _OUT and not _WORKER:
        for f in _files():
            f.unlink()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _OUT or _WORKER:
        return
    rows = [json.loads(line) for f in _files() for line in f.open()]
    if not rows:
        return
    total = sum(r["cpu_s"] for r in rows)
    print(f"\ncpuprof: {len(rows)} tests, {total:.0f} CPU-s (files {_OUT}.*)")
    for r in sorted(rows, key=lambda r: -r["cpu_s"])[:_TOP]:
        print(f"{r['cpu_s']:8.1f} CPU-s {r['wall_s']:7.1f} s  {r['worker']:5}  {r['id']}")
