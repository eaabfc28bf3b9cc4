"""Fixtures of the serving tests (factories in ``serving_factories.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_factories import make_model, make_plan, write_synthetic

from minivess.planning.plan import TrainingPlan


@pytest.fixture(scope="session")
def plan() -> TrainingPlan:
    return make_plan()


@pytest.fixture(scope="session")
def model(plan):
    return make_model(plan)


@pytest.fixture(scope="session")
def volume_path(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, plan, model, volume_path):
    """A serving bundle exported with the parity check on the synthetic volume."""
    from minivess.serving.export import export_bundle
    from minivess.serving.nifti import load_volume

    array = load_volume(volume_path, max_voxels=10**8).array
    return export_bundle(model, plan, tmp_path_factory.mktemp("bundle"), parity_volume=array)
