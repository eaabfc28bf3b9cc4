"""Built-in networks, each built from a plan (strides, kernels) and its profile's ``params``.

Every builder takes ``(plan, in_channels, out_channels, **params)`` and returns an
``nn.Module`` whose input (batch, C, x, y, z) may be any shape divisible by ``plan.divisors``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from minivess.planning.plan import TrainingPlan


class PadToMultiple(nn.Module):
    """Zero-pads each spatial axis up to a multiple of ``multiple`` (and at least ``multiple``),
    runs ``net``, and crops the output back: a network with a fixed divisor accepts thin axes.

    Args:
        net: the wrapped network, input (B, C, x, y, z).
        multiple: the divisor the network needs on every axis (e.g. 32 for SwinUNETR).
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[2:]
        target = [max(self.multiple, math.ceil(s / self.multiple) * self.multiple) for s in shape]
        if list(shape) == target:
            return self.net(x)
        pad: list[int] = []
        for s, t in zip(reversed(shape), reversed(target), strict=True):
            pad += [0, t - s]  # F.pad: last axis first, (before, after)
        out = self.net(F.pad(x, pad))
        return out[..., : shape[0], : shape[1], : shape[2]]


def build_dynunet(
    plan: TrainingPlan,
    in_channels: int,
    out_channels: int,
    *,
    base_filters: int = 16,
    max_filters: int = 256,
    res_block: bool = False,
) -> nn.Module:
    """MONAI DynUNet with the plan's per-level strides and kernels (anisotropic)."""
    from monai.networks.nets import DynUNet

    levels = len(plan.strides)
    filters = [min(base_filters * 2**i, max_filters) for i in range(levels)]
    return DynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[list(k) for k in plan.kernel_sizes],
        strides=[list(s) for s in plan.strides],
        upsample_kernel_size=[list(s) for s in plan.strides[1:]],
        filters=filters,
        norm_name=("INSTANCE", {"affine": True}),
        res_block=res_block,
    )


def build_segresnet(
    plan: TrainingPlan,
    in_channels: int,
    out_channels: int,
    *,
    init_filters: int = 16,
    blocks_down: list[int] | tuple[int, ...] = (1, 2, 2, 4),
) -> nn.Module:
    """MONAI SegResNetDS in anisotropic mode; its scales reproduce the plan's strides.

    ``SegResNetDS`` derives per-level scales from a ``resolution``; with ``k_a`` halvings per
    axis, ``resolution_a = 2**(K - k_a)`` yields exactly the plan's stride schedule (checked).
    """
    from monai.networks.nets import SegResNetDS

    levels = len(plan.strides)
    if levels > len(blocks_down):
        raise ValueError(
            f"plan has {levels} levels but the segresnet profile's blocks_down has "
            f"{len(blocks_down)} entries; add entries or lower topology.max_levels"
        )
    halvings = [int(math.log2(d)) for d in plan.divisors]
    depth = max(halvings)
    resolution = tuple(float(2 ** (depth - k)) for k in halvings)
    net = SegResNetDS(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=out_channels,
        blocks_down=tuple(blocks_down[:levels]),
        dsdepth=1,
        resolution=resolution,
    )
    scales = [tuple(int(v) for v in s) for s in (net.anisotropic_scales or [])][: levels - 1]
    if scales != [tuple(s) for s in plan.strides[1:]]:
        raise ValueError(f"SegResNetDS scales {scales} differ from the plan's {plan.strides[1:]}")
    return net


def build_swinunetr(
    plan: TrainingPlan,
    in_channels: int,
    out_channels: int,
    *,
    feature_size: int = 12,
    depths: list[int] | tuple[int, ...] = (2, 2, 2, 2),
    num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24),
    window_size: int = 7,
    use_v2: bool = True,
    norm_groups: int = 3,
) -> nn.Module:
    """MONAI SwinUNETR, wrapped so axes thinner than 32 (or not multiples) are padded inside.

    Group norm (``norm_groups`` groups) instead of instance norm: a 32-voxel axis reaches the
    bottleneck as a single voxel, where instance norm is undefined.
    """
    from monai.networks.nets import SwinUNETR

    net = SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        window_size=window_size,
        use_v2=use_v2,
        spatial_dims=3,
        norm_name=("group", {"num_groups": norm_groups}),
    )
    divisor = 2**5  # patch embedding (2) and four patch-merging stages
    if all(p % divisor == 0 for p in plan.patch_size):
        return net
    return PadToMultiple(net, divisor)


BUILDERS: dict[str, Any] = {
    "dynunet": build_dynunet,
    "segresnet": build_segresnet,
    "swinunetr": build_swinunetr,
}
