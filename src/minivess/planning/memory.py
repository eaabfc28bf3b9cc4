"""Memory model: ``base_mb + batch * voxels * bytes_per_voxel`` (MiB), static or calibrated."""

from __future__ import annotations

from minivess.planning.calibration import Calibration
from minivess.planning.profiles import MemorySpec, ModelProfile

_MIB = 2**20


def training_mb(mem: MemorySpec, voxels: int, batch: int, amp: bool) -> float:
    """Peak memory of one training step, MiB.

    Args:
        mem: the memory model of the device.
        voxels: voxels of one network input (the padded patch for internally padded axes).
        batch: samples per step.
        amp: mixed precision (multiplies the per-voxel term by ``mem.amp_factor``).
    """
    per_voxel = mem.train_bytes_per_voxel * (mem.amp_factor if amp else 1.0)
    return mem.base_mb + batch * voxels * per_voxel / _MIB


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
        return static, f"static estimate from model profile '{profile.name}' ({kind})"
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
