"""Suite-wide test settings. Area fixtures live in each area's conftest.py."""

from __future__ import annotations

import os

import pytest

# Plots render off-screen; torch stays on the 2 CPU cores the suite is sized for.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _restore_environ():
    """Each test gets back the environment it started with.

    ``mlflow.set_tracking_uri`` (called by the flows) exports ``MLFLOW_TRACKING_URI``; left in
    place it would silently point later tests' subprocesses at a server that is gone.
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
