"""Each selectable loss prefers the right answer to the wrong one."""

from __future__ import annotations

import pytest

from minivess.training.config import LossName
from minivess.training.losses import build_loss, deep_supervision_loss


@pytest.mark.parametrize("name", list(LossName))
def test_loss_is_lower_for_correct_prediction(name: LossName) -> None:
    import torch

    label = torch.zeros(1, 1, 12, 12, 4)
    label[..., 4:8, 4:8, :] = 1
    good = torch.cat([(1 - label) * 8 - 4, label * 8 - 4], dim=1)  # logits agreeing with label
    bad = torch.cat([good[:, 1:], good[:, :1]], dim=1)  # classes swapped
    loss = build_loss(name)
    lg, lb = float(loss(good, label)), float(loss(bad, label))
    assert lg < lb
    assert torch.isfinite(torch.tensor([lg, lb])).all()


def test_deep_supervision_heads_are_weighted() -> None:
    """Heads weigh 1, 1/2, 1/4 (normalised): a good full-resolution head and two bad coarse
    ones give ``(L0 + L1/2 + L2/4) / 1.75``, not their plain mean nor head 0 alone."""
    import torch

    label = torch.zeros(1, 1, 8, 8, 4)
    label[..., 2:6, 2:6, :] = 1
    good = torch.cat([(1 - label) * 8 - 4, label * 8 - 4], dim=1)
    bad = -good
    half = 0.5 * good
    stacked = torch.stack([good, bad, half], dim=1)  # (B, heads, C, x, y, z)
    loss = build_loss("dice")
    parts = [float(loss(h, label)) for h in (good, bad, half)]
    assert len(set(parts)) == 3  # three different head losses, so the weights show
    want = (parts[0] + parts[1] / 2 + parts[2] / 4) / 1.75
    got = float(deep_supervision_loss(loss, stacked, label))
    assert got == pytest.approx(want, rel=1e-6)
    assert got != pytest.approx(sum(parts) / 3, rel=1e-3)


def test_cldice_loss_scores_the_vessel_channel_only() -> None:
    """The loss equals MONAI's soft Dice + clDice on the foreground probability alone."""
    import torch
    from monai.losses import SoftDiceclDiceLoss

    torch.manual_seed(0)
    label = torch.zeros(1, 1, 16, 16, 6)
    label[..., 6:9, 2:14, 1:5] = 1
    logits = torch.randn(1, 2, 16, 16, 6)
    fg = torch.softmax(logits, dim=1)[:, 1:]
    want = SoftDiceclDiceLoss(iter_=3)(fg, label)
    assert float(build_loss("cldice")(logits, label)) == pytest.approx(float(want), rel=1e-5)


def test_cldice_loss_is_high_when_every_vessel_is_missed() -> None:
    """All-background prediction: with the background channel counted the loss would be ~0.5."""
    import torch

    label = torch.zeros(1, 1, 16, 16, 6)
    label[..., 6:9, 2:14, 1:5] = 1
    miss = torch.cat([torch.full_like(label, 6.0), torch.full_like(label, -6.0)], dim=1)
    assert float(build_loss("cldice")(miss, label)) > 0.9
