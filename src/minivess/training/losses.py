"""Segmentation losses (MONAI), selected by name. All take logits (B, C, x, y, z) and an
integer label map (B, 1, x, y, z) and apply softmax + one-hot internally."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minivess.training.config import LossName

if TYPE_CHECKING:
    import torch
    from torch import nn


def build_loss(name: LossName | str) -> nn.Module:
    """The MONAI loss called ``name``.

    * ``dicece``: :class:`monai.losses.DiceCELoss` (Dice + cross-entropy);
    * ``dice``: :class:`monai.losses.DiceLoss`;
    * ``focal``: :class:`monai.losses.FocalLoss` (softmax, gamma 2);
    * ``cldice``: :class:`monai.losses.SoftDiceclDiceLoss` (Dice + soft centreline Dice, which
      rewards keeping thin vessels connected), on the vessel channel only: the background's
      "centreline" is the whole volume's medial axis, and including it made this the worst
      loss of every grid (val Dice 0.38 against 0.66 without it, at 15 epochs).
    """
    from monai.losses import DiceCELoss, DiceLoss, FocalLoss, SoftDiceclDiceLoss

    name = LossName(name)
    if name is LossName.DICECE:
        return DiceCELoss(to_onehot_y=True, softmax=True)
    if name is LossName.DICE:
        return DiceLoss(to_onehot_y=True, softmax=True)
    if name is LossName.FOCAL:
        return FocalLoss(to_onehot_y=True, use_softmax=True)
    return SoftDiceclDiceLoss(to_onehot_y=True, softmax=True, iter_=3, include_background=False)


def deep_supervision_loss(
    loss: nn.Module, output: torch.Tensor, label: torch.Tensor
) -> torch.Tensor:
    """Loss of a network output, handling DynUNet's deep-supervision stack.

    ``output`` is (B, C, x, y, z), or (B, H, C, x, y, z) with H supervision heads (head 0 at full
    resolution); heads are weighted 1, 1/2, 1/4, ... and normalised.
    """
    if output.dim() == label.dim():
        return loss(output, label)
    heads = output.unbind(dim=1)
    weights = [0.5**i for i in range(len(heads))]
    total = sum(w * loss(h, label) for w, h in zip(weights, heads, strict=True))
    return total / sum(weights)
