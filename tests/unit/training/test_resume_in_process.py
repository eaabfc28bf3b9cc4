"""Deterministic in-process resume (fast tier): the resumed run is the uninterrupted run, and
another run's checkpoint is refused. Tiny data, batch 1, two CPU epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.training import train
from minivess.training.config import TrainConfig


def _cfg(ckdir: Path, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, checkpoint_dir=str(ckdir), augment=False, samples_per_volume=1, **changes
    )


def test_resume_matches_the_uninterrupted_run(tiny_data: Path, tmp_path: Path, plan_factory):
    import torch

    plan = plan_factory(batch_size=1)
    ref = train(tiny_data, plan, _cfg(tmp_path / "ref", 2), progress=False)
    first = train(tiny_data, plan, _cfg(tmp_path / "cut", 1), progress=False)
    assert first.resumed_from_epoch is None
    resumed = train(tiny_data, plan, _cfg(tmp_path / "cut", 2), progress=False)
    assert resumed.resumed_from_epoch == 1
    assert resumed.final_metrics == ref.final_metrics  # same losses, Dice, learning rate
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Another run's checkpoint (here: another fold) is never continued.
    with pytest.raises(ConfigError, match=r"belongs to another run.*fold"):
        train(tiny_data, plan, _cfg(tmp_path / "cut", 3, fold=1), progress=False)
