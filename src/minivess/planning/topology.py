"""Per-axis network topology from a patch: halvings, strides, kernels, valid sizes.

Pure integer arithmetic on (x, y, z) voxel sizes; the rule's parameters come from the model
profile (:class:`~minivess.planning.profiles.TopologySpec`).

Stride layout (shared by every builder, so the plan describes the real network): with ``k_a``
halvings on axis ``a``, ``K = max k`` and ``m = min k``, downsampling level ``i`` (0-based, of
``K``) has stride 2 on axis ``a`` when ``i < k_a - m`` or ``i >= K - m``. Thin axes therefore
join the downsampling last, as nnU-Net does for anisotropic data; this is also exactly the
schedule MONAI's ``SegResNetDS`` derives from a ``resolution`` of ``2**(K - k_a)``.
"""

from __future__ import annotations

from minivess.data.schema import Shape3, Spacing3
from minivess.errors import PlanError
from minivess.planning.profiles import TopologySpec


def axis_halvings(size: int, topo: TopologySpec) -> int:
    """How many times an axis of ``size`` voxels is halved by the network.

    Examples:
        With ``min_feature_size=4, max_levels=5``: 5 -> 0, 8 -> 1, 16 -> 2, 128 -> 4.
    """
    if topo.rule == "fixed":
        assert topo.fixed_divisor is not None  # guaranteed by TopologySpec's validator
        return topo.max_levels - 1 if size >= topo.fixed_divisor or not topo.pad_small_axes else 0
    k = 0
    while k < topo.max_levels - 1 and size >= topo.min_feature_size * 2 ** (k + 1):
        k += 1
    return k


def is_valid_size(size: int, topo: TopologySpec) -> bool:
    """True when a patch axis of ``size`` voxels passes through the network unchanged."""
    if size < 1:
        return False
    if topo.rule == "fixed":
        assert topo.fixed_divisor is not None
        if size < topo.fixed_divisor:
            return topo.pad_small_axes
        return size % topo.fixed_divisor == 0
    return size % 2 ** axis_halvings(size, topo) == 0


def round_down(size: int, topo: TopologySpec) -> int:
    """The largest valid axis size ``<= size``; 0 when there is none."""
    if size < 1:
        return 0
    if topo.rule == "fixed":
        assert topo.fixed_divisor is not None
        if size < topo.fixed_divisor:
            return size if topo.pad_small_axes else 0
        return size // topo.fixed_divisor * topo.fixed_divisor
    step = 2 ** axis_halvings(size, topo)
    return size // step * step


def nearest_valid(size: int, topo: TopologySpec) -> tuple[int, int]:
    """The closest valid sizes below (or equal) and above ``size``, for error messages."""
    below = round_down(size, topo)
    above = size + 1
    while not is_valid_size(above, topo):
        above += 1
    return below, above


def network_shape(patch: Shape3, topo: TopologySpec) -> Shape3:
    """The shape the network computes on: ``patch`` plus internal padding of thin axes."""
    if topo.rule == "fixed" and topo.pad_small_axes:
        d = topo.fixed_divisor or 1
        return (max(patch[0], d), max(patch[1], d), max(patch[2], d))
    return patch


def strides_for(patch: Shape3, topo: TopologySpec) -> list[Shape3]:
    """Per-level (x, y, z) strides, the first being the input level's (1, 1, 1).

    Raises:
        PlanError: the patch is too small for the network's minimum depth.
    """
    k = [axis_halvings(s, topo) for s in patch]
    depth = max(k)
    if depth + 1 < topo.min_levels:
        need = topo.min_feature_size * 2 ** (topo.min_levels - 1)
        raise PlanError(
            f"patch {patch} is too small: the network needs {topo.min_levels} levels, i.e. at "
            f"least one axis of {need} voxels; use a larger patch or a shallower model"
        )
    low = min(k)
    levels: list[Shape3] = [(1, 1, 1)]
    for i in range(depth):
        s = tuple(2 if (i < ka - low or i >= depth - low) else 1 for ka in k)
        levels.append((s[0], s[1], s[2]))
    return levels


def kernels_for(strides: list[Shape3], topo: TopologySpec) -> list[Shape3]:
    """Per-level kernel sizes matching ``strides`` (same length)."""
    if topo.kernel_rule == "full":
        return [(3, 3, 3)] * len(strides)
    out: list[Shape3] = []
    for s in strides[1:]:
        out.append((3 if s[0] > 1 else 1, 3 if s[1] > 1 else 1, 3 if s[2] > 1 else 1))
    out.append((3, 3, 3))
    return out


def divisors_of(strides: list[Shape3]) -> Shape3:
    """Per-axis product of ``strides``: every patch axis must be a multiple of it."""
    out = [1, 1, 1]
    for s in strides:
        for a in range(3):
            out[a] *= s[a]
    return (out[0], out[1], out[2])


# --- patch-level helpers: the shape rule per axis, or the spacing rule (nnU-Net) jointly ------


def _spacing_rule(topo: TopologySpec, spacing: Spacing3 | None) -> bool:
    return topo.pooling == "spacing" and spacing is not None


def patch_strides(
    patch: Shape3, topo: TopologySpec, spacing: Spacing3 | None = None
) -> list[Shape3]:
    """Per-level strides of ``patch``: the spacing rule when the topology asks for it and the
    spacing is known, else :func:`strides_for` (the shape rule).

    Raises:
        PlanError: the network cannot reach its minimum depth on this patch.
    """
    if not _spacing_rule(topo, spacing):
        return strides_for(patch, topo)
    from minivess.planning.pooling import spacing_pooling

    assert spacing is not None
    plan = spacing_pooling(spacing, patch, topo.min_feature_size, max_levels=topo.max_levels - 1)
    if len(plan.strides) < topo.min_levels:
        need = topo.min_feature_size * 2 ** (topo.min_levels - 1)
        raise PlanError(
            f"patch {patch} is too small: the network needs {topo.min_levels} levels, i.e. at "
            f"least two axes of about {need} voxels at similar spacing; use a larger patch or "
            "a shallower model"
        )
    return plan.strides


def round_down_shape(patch: Shape3, topo: TopologySpec, spacing: Spacing3 | None = None) -> Shape3:
    """The largest valid patch ``<= patch`` per axis (an axis with no valid size becomes 0)."""
    if not _spacing_rule(topo, spacing):
        return (round_down(patch[0], topo), round_down(patch[1], topo), round_down(patch[2], topo))
    from minivess.planning.pooling import round_down_patch

    assert spacing is not None
    if min(patch) < 1:
        return (max(patch[0], 0), max(patch[1], 0), max(patch[2], 0))
    out, _ = round_down_patch(spacing, patch, topo.min_feature_size, max_levels=topo.max_levels - 1)
    return out


def patch_is_valid(patch: Shape3, topo: TopologySpec, spacing: Spacing3 | None = None) -> bool:
    """True when every axis of ``patch`` passes through the network unchanged."""
    if not _spacing_rule(topo, spacing):
        return all(is_valid_size(s, topo) for s in patch)
    return min(patch) >= 1 and round_down_shape(patch, topo, spacing) == patch
