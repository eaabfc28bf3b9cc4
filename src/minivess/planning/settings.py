"""Planner constants from ``configs/planner.yaml`` and the cloud GPU table ``configs/gpus.yaml``.

Each constant lives in those two files only; the planner receives them as typed objects.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from minivess.config import StrictModel, config_dir, load_yaml_model
from minivess.data.schema import Shape3
from minivess.keys import PatchPolicy, SmallVolumes, Tier


class TierSpec(StrictModel):
    """One row of the seed's tier table: start values before the dataset and memory limits."""

    min_vram_gb: float = Field(ge=0, description="nominal GB of a single GPU to reach this tier")
    patch: Shape3 = Field(description="target patch (x, y, z) voxels before constraints")
    batch: int = Field(ge=1, description="per-device batch")
    workers: int = Field(ge=0, description="data-loader workers")


class PlannerSettings(StrictModel):
    """Budgets and the tier table (see ``configs/planner.yaml`` for the meaning of each)."""

    vram_budget_fraction: float = Field(gt=0, le=1)
    ram_budget_fraction: float = Field(gt=0, le=1)
    cache_ram_fraction: float = Field(ge=0, le=1)
    cache_bytes_factor: float = Field(gt=0)
    cpu_fallback_vram_gb: float = Field(ge=0)
    keep_target_voxels: bool = Field(
        default=True, description="grow uncapped axes when the data caps one (see planner.yaml)"
    )
    patch_policy: PatchPolicy = Field(
        default=PatchPolicy.MIN_VOLUME, description="seed D2 default; median_pad = nnU-Net"
    )
    small_volumes: SmallVolumes | None = Field(
        default=None, description="None: quarantine under min_volume, pad under median_pad"
    )
    batch_dataset_fraction: float = Field(
        default=0.05, gt=0, le=1, description="a batch covers at most this share of the data"
    )
    sw_batch_max: int = Field(
        default=4, ge=1, description="windows per forward in sliding-window inference, at most"
    )
    tiers: dict[Tier, TierSpec]

    def tier(self, tier: Tier) -> TierSpec:
        """The row of ``tier``."""
        return self.tiers[tier]


class GpuSpec(StrictModel):
    """One cloud GPU type: memory per card (GB) and relative price class (1 = cheapest)."""

    vram_gb: float = Field(gt=0)
    cost_class: int = Field(ge=1)
    usd_per_hour: float | None = Field(default=None, gt=0)
    clouds: list[str] | None = Field(
        default=None, description="SkyPilot clouds that offer this GPU; None = not restricted"
    )
    tflops_fp16: float | None = Field(default=None, gt=0, description="datasheet, dense")
    tflops_fp32: float | None = Field(default=None, gt=0, description="datasheet, non-tensor")

    def tflops(self, amp: bool) -> float | None:
        """Throughput in the training precision (FP16 tensor cores under AMP)."""
        return self.tflops_fp16 if amp else self.tflops_fp32


class VmPerGpu(StrictModel):
    """What a cloud VM offers per GPU (to plan for a GPU this machine does not have)."""

    cpu_cores: int = Field(ge=1)
    ram_gb: float = Field(gt=0)
    disk_gb: float = Field(gt=0)


class CpuVm(StrictModel):
    """The CPU-only VM a serve replica gets when serving is CPU-bound, and its price."""

    cpus: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    usd_per_hour: float = Field(gt=0)


class GpuTable(StrictModel):
    """The cloud GPU table, keyed by SkyPilot accelerator name."""

    gpus: dict[str, GpuSpec]
    vm_per_gpu: VmPerGpu
    serve_cpu_vm: CpuVm | None = None
    spot_price_fraction: float = Field(default=0.35, gt=0, le=1)

    def offers(self, accelerator: str, infra: str) -> bool:
        """Whether ``infra`` (``"aws"``, ``"gcp/us-central1"``, ``"ssh/lab"``) can give
        ``accelerator`` (``"A10G:1"``): False only when the table lists the infra's cloud for
        some GPU but not for this one. Unknown GPUs and unlisted clouds are not restricted."""
        cloud = infra.split("/", 1)[0].lower()
        spec = self.gpus.get(accelerator.split(":", 1)[0])
        listed = {c.lower() for g in self.gpus.values() for c in g.clouds or ()}
        if spec is None or spec.clouds is None or cloud not in listed:
            return True
        return cloud in {c.lower() for c in spec.clouds}


@lru_cache(maxsize=8)
def _load_settings(path: Path, mtime: float) -> PlannerSettings:
    return load_yaml_model(PlannerSettings, path)


@lru_cache(maxsize=8)
def _load_gpus(path: Path, mtime: float) -> GpuTable:
    return load_yaml_model(GpuTable, path)


def load_planner_settings(path: Path | None = None) -> PlannerSettings:
    """Read ``configs/planner.yaml`` (or ``path``); cached per file version."""
    path = Path(path) if path else config_dir() / "planner.yaml"
    return _load_settings(path, path.stat().st_mtime if path.exists() else 0.0)


def load_gpu_table(path: Path | None = None) -> GpuTable:
    """Read ``configs/gpus.yaml`` (or ``path``); cached per file version."""
    path = Path(path) if path else config_dir() / "gpus.yaml"
    return _load_gpus(path, path.stat().st_mtime if path.exists() else 0.0)
