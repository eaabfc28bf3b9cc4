"""Memory model of one training step (MiB), static or calibrated.

Two forms (:class:`~minivess.planning.profiles.MemorySpec`):

* **feature maps** (when ``bytes_per_feature_voxel`` is set):
  ``base_mb + batch * F(patch) * bytes_per_feature_voxel``, where ``F`` sums, over the
  network's levels, the voxels of that level's feature map times its channels
  (``min(feature_width * 2**level, max_feature_width)``). ``F / voxels`` depends on the patch
  shape and the strides (a thin z that is never pooled keeps big deep feature maps), which one
  bytes-per-voxel constant cannot follow.
* **per voxel**: ``base_mb + batch * voxels * train_bytes_per_voxel``.
"""

from __future__ import annotations

from minivess.data.schema import Shape3
from minivess.planning.calibration import Calibration
from minivess.planning.profiles import MemorySpec, ModelProfile, TopologySpec

_MIB = 2**20


def feature_voxels(
    shape: Shape3, strides: list[Shape3], topo: TopologySpec, mem: MemorySpec
) -> int:
    """Sum over levels of (feature-map voxels x channels) for a network input of ``shape``.

    ``strides`` are the plan's (first = input level). A ``fixed`` topology downsamples every
    axis of its (internally padded) input at every level.
    """
    if topo.rule == "fixed":
        strides = [(1, 1, 1)] + [(2, 2, 2)] * (topo.max_levels - 1)
    cur = list(shape)
    total = 0
    for level, s in enumerate(strides):
        cur = [-(-cur[a] // s[a]) for a in range(3)]
        width = min(mem.feature_width * 2**level, mem.max_feature_width)
        total += cur[0] * cur[1] * cur[2] * width
    return total


def training_mb(
    mem: MemorySpec, voxels: int, batch: int, amp: bool, features: int | None = None
) -> float:
    """Peak memory of one training step, MiB.

    Args:
        mem: the memory model of the device.
        voxels: voxels of one network input (the padded patch for internally padded axes).
        batch: samples per step.
        amp: mixed precision (multiplies the per-sample term by ``mem.amp_factor``).
        features: :func:`feature_voxels` of the input; used when the model has a
            ``bytes_per_feature_voxel`` figure.
    """
    factor = mem.amp_factor if amp else 1.0
    if mem.bytes_per_feature_voxel is not None and features is not None:
        return mem.base_mb + batch * features * mem.bytes_per_feature_voxel * factor / _MIB
    return mem.base_mb + batch * voxels * mem.train_bytes_per_voxel * factor / _MIB


def inference_mb(mem: MemorySpec, voxels: int, amp: bool, sw_batch: int = 1) -> float:
    """Peak memory of a sliding-window inference step, MiB."""
    per_voxel = mem.infer_bytes_per_voxel * (mem.amp_factor if amp else 1.0)
    return mem.base_mb + sw_batch * voxels * per_voxel / _MIB


def memory_model(
    profile: ModelProfile, gpu: bool, calibration: Calibration | None
) -> tuple[MemorySpec, str]:
    """The memory model to plan with and where it came from (for the decision's reason).

    A calibration of this model measured on this device wins over the profile's static figures.
    """
    static = profile.memory(gpu)
    if calibration is None:
        kind = "vram" if gpu or profile.ram is None else "ram"
        form = "feature maps" if static.bytes_per_feature_voxel else "per voxel"
        return static, f"static estimate from model profile '{profile.name}' ({kind}, {form})"
    per_voxel = calibration.train_bytes_per_voxel
    if calibration.amp:
        per_voxel /= static.amp_factor  # stored per-voxel figures are full precision
    spec = MemorySpec(
        base_mb=calibration.base_mb,
        train_bytes_per_voxel=per_voxel,
        infer_bytes_per_voxel=static.infer_bytes_per_voxel,
        amp_factor=static.amp_factor,
    )
    return spec, f"calibration {calibration.file_name} ({calibration.created})"
