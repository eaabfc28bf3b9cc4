"""Spacing-aware pooling: which axes a U-Net downsamples at each level, from spacing AND shape.

The rule is nnU-Net v2's (``get_pool_and_conv_props`` in
``nnunetv2/experiment_planning/experiment_planners/network_topology.py``), re-implemented here
and checked against its outputs in ``tests/unit/planning/test_planning_pooling.py``:

* at each level, an axis may be pooled while its feature map is ``>= 2 * min_feature_size``
  voxels and its current spacing is less than twice the finest current spacing (so a coarse
  z joins the pooling only once x and y have been halved down to its resolution);
* when only one axis qualifies, it must be ``>= 3 * min_feature_size`` to be pooled alone;
* pooling an axis doubles its spacing and halves its size (rounded up);
* the conv kernel of an axis is 3 once its spacing is within a factor of two of the finest
  spacing, else 1 (the last, bottleneck level always has 3);
* the patch must be a multiple of ``2 ** pools`` per axis: nnU-Net pads it up
  (:attr:`PoolingPlan.padded_patch`); the planner rounds down instead when the patch must fit
  the data (:func:`round_down_patch`).

Two additions, both off by default so the reference behaviour is the default:
``max_levels`` caps the number of downsampling levels (a network's depth) and
``max_pools_per_axis`` caps the halvings of one axis (nnU-Net passes a huge number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minivess.data.schema import Shape3, Spacing3


@dataclass(frozen=True)
class PoolingPlan:
    """The topology for one patch: per-level strides and kernels, first level included."""

    pools_per_axis: Shape3
    strides: list[Shape3]  # strides[0] is the input level's (1, 1, 1)
    kernels: list[Shape3]  # one per level, the last being the bottleneck's (3, 3, 3)
    padded_patch: Shape3  # the patch padded up to a multiple of the divisors (nnU-Net's output)

    @property
    def divisors(self) -> Shape3:
        """``2 ** pools`` per axis: every patch axis must be a multiple of it."""
        p = self.pools_per_axis
        return (2 ** p[0], 2 ** p[1], 2 ** p[2])


def _poolable(
    size: list[float], spacing: list[float], pools: list[int], min_feature_size: int, cap: int
) -> list[int]:
    """Axes pooled at the next level (empty: the encoder stops here)."""
    big = [a for a in range(len(size)) if size[a] >= 2 * min_feature_size]
    if not big:
        return []
    finest = min(spacing[a] for a in big)
    axes = [a for a in big if spacing[a] / finest < 2 and pools[a] < cap]
    if len(axes) == 1 and size[axes[0]] < 3 * min_feature_size:
        return []
    return axes


def spacing_pooling(
    spacing: tuple[float, ...],
    patch: tuple[int, ...],
    min_feature_size: int,
    max_pools_per_axis: int = 999_999,
    max_levels: int | None = None,
) -> PoolingPlan:
    """Strides and kernels of a U-Net for ``patch`` voxels of ``spacing`` (any units).

    Args:
        spacing: voxel size per axis, same axis order as ``patch``.
        patch: the patch (voxels per axis).
        min_feature_size: smallest edge of a bottleneck feature map (nnU-Net: 4).
        max_pools_per_axis: halvings of one axis at most (nnU-Net's ``max_numpool``).
        max_levels: downsampling levels at most (the network's depth), None = unbounded.
    """
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(s) for s in patch]
    pools = [0] * dim
    kernel = [1] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while max_levels is None or len(strides) - 1 < max_levels:
        axes = _poolable(cur_size, cur_spacing, pools, min_feature_size, max_pools_per_axis)
        if not axes:
            break
        finest = min(cur_spacing)
        kernel = [3 if kernel[a] == 3 or cur_spacing[a] / finest < 2 else 1 for a in range(dim)]
        for a in axes:
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        strides.append(tuple(2 if a in axes else 1 for a in range(dim)))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)
    padded = tuple(-(-patch[a] // 2 ** pools[a]) * 2 ** pools[a] for a in range(dim))
    return PoolingPlan(
        pools_per_axis=tuple(pools),  # type: ignore[arg-type]
        strides=strides,  # type: ignore[arg-type]
        kernels=kernels,  # type: ignore[arg-type]
        padded_patch=padded,
    )


def round_down_patch(
    spacing: Spacing3,
    patch: Shape3,
    min_feature_size: int,
    max_pools_per_axis: int = 999_999,
    max_levels: int | None = None,
) -> tuple[Shape3, PoolingPlan]:
    """The largest patch ``<= patch`` (per axis) that is a multiple of its own divisors.

    Rounding an axis down can remove a pooling level, which lowers its divisor, so this
    iterates until the patch is stable (at most a few rounds: the pool counts only decrease).
    """
    cur: Shape3 = patch
    while True:
        plan = spacing_pooling(spacing, cur, min_feature_size, max_pools_per_axis, max_levels)
        d = plan.divisors
        new: Shape3 = (cur[0] // d[0] * d[0], cur[1] // d[1] * d[1], cur[2] // d[2] * d[2])
        if new == cur:
            return cur, plan
        cur = new
