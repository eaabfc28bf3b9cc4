"""Fixtures of the training unit tests: a tiny MiniVess-like dataset (with a Z=5 volume)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: (name, Z) of the tiny dataset; mv03 is the thin Z=5 volume that breaks naive patch sizes.
TINY_Z = {"mv01": 12, "mv02": 8, "mv03": 5, "mv04": 10, "mv05": 9, "mv06": 7}


def write_tiny_dataset(out: Path, xy: int = 32) -> Path:
    """Six 32×32×Z volumes drawn by the data engineer's generator, MiniVess layout."""
    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume

    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, (name, z) in enumerate(TINY_Z.items()):
        write_volume(out, VolumeSpec(name, (xy, xy, z), (1.0, 1.0, 2.0), seed=100 + i), seed=0)
    return out


def tiny_plan(**changes):
    """A hand-built plan for the tiny data: (16, 16, 4) patches, batch 2, 3-level DynUNet."""
    from minivess.keys import Tier
    from minivess.planning.plan import TrainingPlan

    fields = dict(
        model="dynunet",
        tier=Tier.CPU,
        patch_size=(16, 16, 4),
        batch_size=2,
        cache_rate=1.0,
        num_workers=1,
        amp=False,
        sw_roi=(32, 32, 4),
        sw_overlap=0.25,
        strides=[(1, 1, 1), (2, 2, 1), (2, 2, 2)],
        kernel_sizes=[(3, 3, 3)] * 3,
    )
    return TrainingPlan(**(fields | changes))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def plan_factory():
    """:func:`tiny_plan`, as a fixture (test modules cannot import conftest)."""
    return tiny_plan
