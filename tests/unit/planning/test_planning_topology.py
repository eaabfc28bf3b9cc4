"""Per-axis topology: halvings, valid sizes and the shared stride schedule."""

from __future__ import annotations

import pytest

from minivess.errors import PlanError
from minivess.planning.profiles import TopologySpec
from minivess.planning.topology import (
    axis_halvings,
    divisors_of,
    is_valid_size,
    kernels_for,
    network_shape,
    round_down,
    strides_for,
)

UNET = TopologySpec(rule="per_axis", max_levels=5, min_levels=3, min_feature_size=4)
SWIN = TopologySpec(rule="fixed", max_levels=6, min_levels=6, fixed_divisor=32, pad_small_axes=True)


@pytest.mark.parametrize(
    ("size", "k"), [(1, 0), (5, 0), (7, 0), (8, 1), (15, 1), (16, 2), (64, 4), (512, 4)]
)
def test_halvings_stop_at_the_min_feature_size(size, k):
    assert axis_halvings(size, UNET) == k


def test_round_down_gives_the_largest_valid_size():
    for size in range(1, 300):
        best = round_down(size, UNET)
        assert is_valid_size(best, UNET) and best <= size
        assert not any(is_valid_size(s, UNET) for s in range(best + 1, size + 1))
    assert round_down(5, UNET) == 5 and round_down(9, UNET) == 8 and round_down(100, UNET) == 96


def test_thin_axis_keeps_stride_one():
    strides = strides_for((96, 96, 5), UNET)
    assert strides[0] == (1, 1, 1) and len(strides) == 5
    assert all(s[2] == 1 for s in strides)
    assert divisors_of(strides) == (16, 16, 1)


def test_thin_axis_joins_the_downsampling_last():
    strides = strides_for((64, 64, 16), UNET)  # halvings (4, 4, 2)
    assert [s[2] for s in strides[1:]] == [1, 1, 2, 2]
    assert divisors_of(strides) == (16, 16, 4)
    assert kernels_for(strides, UNET) == [(3, 3, 3)] * 5
    strided = UNET.model_copy(update={"kernel_rule": "strided"})
    assert kernels_for(strides, strided)[1] == (3, 3, 1)


def test_too_small_for_the_minimum_depth():
    with pytest.raises(PlanError, match="needs 3 levels"):
        strides_for((12, 12, 5), UNET)


def test_fixed_divisor_with_internal_padding():
    assert [round_down(s, SWIN) for s in (5, 31, 32, 63, 64, 100)] == [5, 31, 32, 32, 64, 96]
    assert network_shape((64, 96, 5), SWIN) == (64, 96, 32)
    strides = strides_for((64, 96, 5), SWIN)
    assert divisors_of(strides) == (32, 32, 1) and len(strides) == 6
    strict = SWIN.model_copy(update={"pad_small_axes": False})
    assert round_down(5, strict) == 0 and not is_valid_size(16, strict)
