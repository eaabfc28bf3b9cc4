"""Resuming with a larger ``epochs`` continues the cosine schedule (in-process, tiny data).

The schedule is re-derived from the new ``epochs``: epochs already trained keep the rates they had.
Train 1 epoch then resume to 3 therefore equals 3 uninterrupted epochs exactly (epoch 1 runs at the
base rate in both schedules); 2 then 4 differs from 4 uninterrupted in epoch 2's rate only, which
the test states rather than hides.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _train(data: Path, plan, ckpt_dir: Path, epochs: int):
    from minivess.training import train
    from minivess.training.config import ResamplingConfig, TrainConfig

    cfg = TrainConfig(epochs=epochs, checkpoint_dir=str(ckpt_dir), resampling=ResamplingConfig())
    return train(data, plan, cfg, progress=False)


def _weights(path: Path) -> dict:
    from minivess.training import checkpoint as ckpt

    return ckpt.load_state(str(path), map_location="cpu")["model"]


def test_resume_to_more_epochs_continues_the_schedule(tiny_data: Path, tmp_path: Path,
                                                      plan_factory) -> None:  # fmt: skip
    import torch

    from minivess.training.loop import cosine_factor

    plan = plan_factory(batch_size=1)
    ref = _train(tiny_data, plan, tmp_path / "ref", 3)

    first = _train(tiny_data, plan, tmp_path / "resumed", 1)
    after_one = _weights(tmp_path / "resumed" / "last.pt")
    resumed = _train(tiny_data, plan, tmp_path / "resumed", 3)

    assert first.epochs_completed == 1
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 3
    # the logged lr is the optimizer's rate in that epoch, on the new 3-epoch schedule
    lrs = [h["lr"] for h in resumed.history]
    want = [1e-3 * cosine_factor(e, 3) for e in range(3)]
    assert lrs == pytest.approx(want, rel=1e-9)
    assert lrs == pytest.approx([h["lr"] for h in ref.history], rel=1e-9)
    assert all(lr > 0 for lr in lrs)
    # training went on (the bug: last.pt stayed bit-identical at lr 0)
    final = _weights(tmp_path / "resumed" / "last.pt")
    assert any(not torch.equal(after_one[k], final[k]) for k in final)
    # ... and matches the uninterrupted run
    for key, value in ref.final_metrics.items():
        assert resumed.final_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    ref_w = _weights(tmp_path / "ref" / "last.pt")
    for k in ref_w:
        assert torch.allclose(final[k], ref_w[k], rtol=1e-5, atol=1e-6), k


def test_schedule_is_rederived_not_stretched() -> None:
    """2 then 4 epochs: epoch 2 ran at the 2-epoch rate; epochs 3-4 follow the 4-epoch one."""
    from minivess.training.loop import cosine_factor

    trained = [cosine_factor(0, 2), cosine_factor(1, 2)]
    continued = [cosine_factor(e, 4) for e in (2, 3)]
    assert trained == pytest.approx([1.0, 0.5])
    assert continued == pytest.approx([0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    assert trained[1] != pytest.approx(cosine_factor(1, 4))  # the documented difference
