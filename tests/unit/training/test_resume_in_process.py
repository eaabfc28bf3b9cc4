"""Deterministic in-process resume (fast tier): a run cut by SIGTERM in the middle of an epoch
and resumed is the uninterrupted run, its learning rate follows the cosine schedule, and
another run's checkpoint is refused. Tiny data, batch 1, two CPU epochs."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.training import loop, train
from minivess.training.config import TrainConfig
from minivess.training.loop import TrainingPreempted


def _cfg(ckdir: Path, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, checkpoint_dir=str(ckdir), augment=False, samples_per_volume=1, **changes
    )


def _sigterm_after_step(monkeypatch: pytest.MonkeyPatch, epoch: int, step: int) -> None:
    """Deliver a real SIGTERM to this process right after ``step`` (0-based) of ``epoch``.

    The loop's own handler is installed (pytest runs the test in the main thread); only the
    moment is chosen here, as a spot VM's notice would choose it.
    """
    real = loop._Run._step

    def step_then_sigterm(self, batch, index):  # type: ignore[no-untyped-def]
        loss = real(self, batch, index)
        if len(self.history) == epoch and index == step:
            signal.raise_signal(signal.SIGTERM)
        return loss

    monkeypatch.setattr(loop._Run, "_step", step_then_sigterm)


def test_resume_matches_the_uninterrupted_run(
    tiny_data: Path, tmp_path: Path, plan_factory, monkeypatch: pytest.MonkeyPatch
):
    import torch

    plan = plan_factory(batch_size=1)
    ref = train(tiny_data, plan, _cfg(tmp_path / "ref", 2), progress=False)
    # The cosine schedule over 2 epochs: the base rate, then half of it.
    lr = _cfg(tmp_path, 2).lr
    assert [h["lr"] for h in ref.history] == pytest.approx([lr, lr * 0.5], rel=1e-9)

    # SIGTERM after the first step of the second epoch: the loop flushes last.pt mid-epoch.
    with monkeypatch.context() as mp:
        _sigterm_after_step(mp, epoch=1, step=0)
        with pytest.raises(TrainingPreempted) as cut:
            train(tiny_data, plan, _cfg(tmp_path / "cut", 2), progress=False)
    assert (cut.value.epoch, cut.value.step) == (1, 1)
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 1)

    resumed = train(tiny_data, plan, _cfg(tmp_path / "cut", 2), progress=False)
    assert resumed.resumed_from_epoch == 1
    assert resumed.final_metrics == ref.final_metrics  # same losses, Dice, learning rate
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Another run's checkpoint (here: another fold) is never continued.
    with pytest.raises(ConfigError, match=r"belongs to another run.*fold"):
        train(tiny_data, plan, _cfg(tmp_path / "cut", 3, fold=1), progress=False)
