"""Spacing-aware pooling against nnU-Net v2's topology rule, on the same shapes and spacings.

The expected tuples were computed once by running the reference function
``get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, max_numpool)`` from
nnU-Net v2 (github.com/MIC-DKFZ/nnUNet, file
``nnunetv2/experiment_planning/experiment_planners/network_topology.py``) on each row's inputs;
its outputs ``num_pool_per_axis``, ``pool_op_kernel_sizes``, ``conv_kernel_sizes`` and the padded
``patch_size`` are pasted verbatim. nnU-Net is not a dependency: the rule is re-implemented in
``minivess.planning.pooling``.
"""

from __future__ import annotations

import pytest

from minivess.planning.pooling import round_down_patch, spacing_pooling

#: (spacing, patch, min_feature_map_size, num_pool_per_axis, pool kernels, conv kernels,
#:  padded patch) -- reference outputs with max_numpool=999999 (nnU-Net's planner default).
REFERENCE = [
    (
        (1.0, 1.0, 1.0),
        (128, 128, 128),
        4,
        (5, 5, 5),
        ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        ((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (128, 128, 128),
    ),
    (
        (0.5, 0.5, 2.0),
        (384, 384, 20),
        4,
        (6, 6, 2),
        ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1)),
        ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (384, 384, 20),
    ),
    (
        (0.7, 0.7, 5.0),
        (208, 208, 5),
        4,
        (5, 5, 0),
        ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 1), (2, 2, 1), (2, 2, 1)),
        ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (224, 224, 5),
    ),
    (
        (1.0, 1.0, 2.0),
        (160, 160, 48),
        4,
        (5, 5, 3),
        ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 1)),
        ((3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (160, 160, 48),
    ),
    (
        (0.3, 0.3, 1.2),
        (512, 512, 40),
        4,
        (7, 7, 3),
        ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1)),
        ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (512, 512, 40),
    ),
    (
        (2.0, 1.0, 1.0),
        (64, 96, 80),
        4,
        (3, 4, 4),
        ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (64, 96, 80),
    ),
    (
        (1.0, 1.0, 3.0),
        (100, 70, 13),
        4,
        (4, 4, 1),
        ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 1), (2, 2, 1)),
        ((3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (112, 80, 14),
    ),
    (
        (1.0, 1.0, 1.0),
        (8, 8, 2),
        4,
        (1, 1, 0),
        ((1, 1, 1), (2, 2, 1)),
        ((3, 3, 3), (3, 3, 3)),
        (8, 8, 2),
    ),
    (
        (4.97, 4.97, 5.0),
        (96, 96, 24),
        4,
        (4, 4, 2),
        ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1)),
        ((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (96, 96, 24),
    ),
    (
        (0.9, 0.9, 1.5),
        (57, 33, 19),
        3,
        (3, 3, 2),
        ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1)),
        ((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (64, 40, 20),
    ),
    (
        (1.0, 1.0, 1.0),
        (12, 40, 24),
        4,
        (1, 2, 2),
        ((1, 1, 1), (2, 2, 2), (1, 2, 2)),
        ((3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (12, 40, 24),
    ),
]

#: The same with a per-axis cap (reference run with max_numpool given as the 4th element).
REFERENCE_CAPPED = [
    (
        (0.5, 0.5, 2.0),
        (384, 384, 20),
        4,
        3,
        (3, 3, 1),
        ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2)),
        ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3)),
        (384, 384, 20),
    ),
    (
        (1.0, 1.0, 1.0),
        (128, 128, 128),
        4,
        2,
        (2, 2, 2),
        ((1, 1, 1), (2, 2, 2), (2, 2, 2)),
        ((3, 3, 3), (3, 3, 3), (3, 3, 3)),
        (128, 128, 128),
    ),
]


@pytest.mark.parametrize(
    ("spacing", "patch", "mfs", "pools", "strides", "kernels", "padded"), REFERENCE
)
def test_pooling_matches_nnunet_v2(spacing, patch, mfs, pools, strides, kernels, padded):
    got = spacing_pooling(spacing, patch, mfs)
    assert got.pools_per_axis == pools
    assert tuple(got.strides) == strides
    assert tuple(got.kernels) == kernels
    assert got.padded_patch == padded
    assert got.divisors == tuple(2**p for p in pools)


@pytest.mark.parametrize(
    ("spacing", "patch", "mfs", "cap", "pools", "strides", "kernels", "padded"), REFERENCE_CAPPED
)
def test_pooling_matches_nnunet_v2_with_a_per_axis_cap(
    spacing, patch, mfs, cap, pools, strides, kernels, padded
):
    got = spacing_pooling(spacing, patch, mfs, max_pools_per_axis=cap)
    assert (got.pools_per_axis, tuple(got.strides), tuple(got.kernels), got.padded_patch) == (
        pools,
        strides,
        kernels,
        padded,
    )


def test_depth_cap_keeps_the_first_levels_of_the_reference():
    """A network of 4 downsamplings takes the reference's first 4 levels: z joins at level 3."""
    full = spacing_pooling((0.5, 0.5, 2.0), (384, 384, 20), 4)
    capped = spacing_pooling((0.5, 0.5, 2.0), (384, 384, 20), 4, max_levels=4)
    assert capped.strides == full.strides[:5]
    assert capped.pools_per_axis == (4, 4, 2)


def test_round_down_patch_is_divisible_and_fits():
    """nnU-Net pads 100×70×13 up to 112×80×14; fitting the data rounds down instead."""
    patch, plan = round_down_patch((1.0, 1.0, 3.0), (100, 70, 13), 4)
    assert all(patch[a] <= (100, 70, 13)[a] for a in range(3))
    assert all(patch[a] % plan.divisors[a] == 0 for a in range(3))
    assert plan == spacing_pooling((1.0, 1.0, 3.0), patch, 4)
    assert patch == (96, 64, 12)
