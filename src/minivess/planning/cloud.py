"""The planner inverted: which cloud GPUs fit a model at a patch and batch, cheapest first.

The GPU table (name -> VRAM, relative cost class) lives in ``configs/gpus.yaml`` only. The
ordered list feeds SkyPilot's ``resources.ordered`` (try in this order) or ``any_of``.
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict

from minivess.data.schema import Shape3
from minivess.errors import ConfigError
from minivess.keys import Environment
from minivess.planning.hardware import HardwareBudget
from minivess.planning.memory import training_mb
from minivess.planning.plan import TrainingPlan
from minivess.planning.profiles import ModelProfile
from minivess.planning.settings import GpuTable, PlannerSettings, load_gpu_table
from minivess.planning.topology import network_shape


class Candidate(BaseModel):
    """One adequate GPU type, with the estimate that made it adequate."""

    model_config = ConfigDict(frozen=True)

    name: str
    count: int
    vram_gb: float
    cost_class: int
    estimate_mb: float

    @property
    def accelerator(self) -> str:
        """SkyPilot accelerator string, e.g. ``"L4:1"``."""
        return f"{self.name}:{self.count}"


def gpu_candidates(
    profile: ModelProfile,
    patch: Shape3,
    batch: int,
    settings: PlannerSettings,
    *,
    count: int = 1,
    amp: bool | None = None,
    table: GpuTable | None = None,
) -> list[Candidate]:
    """Every GPU type whose VRAM budget holds one training step, cheapest adequate first.

    The whole list goes into the plan (a node with any of them keeps the plan); each launch
    target keeps its allowed and offered ones, up to its ``max_candidates``.

    Args:
        profile: the model (its ``vram`` memory model is used).
        patch: (x, y, z) voxels; batch: per-device samples.
        settings: planner constants (the VRAM budget fraction).
        count: GPUs per node in the accelerator string.
        amp: mixed precision (default: what the profile supports).
    """
    table = table or load_gpu_table()
    amp = profile.supports_amp if amp is None else amp
    shape = network_shape(patch, profile.topology)
    need = training_mb(profile.vram, shape[0] * shape[1] * shape[2], batch, amp)
    out = [
        Candidate(name=n, count=count, vram_gb=g.vram_gb, cost_class=g.cost_class, estimate_mb=need)
        for n, g in table.gpus.items()
        if need <= settings.vram_budget_fraction * g.vram_gb * 1024
    ]
    out.sort(key=lambda c: (c.cost_class, c.vram_gb, c.name))
    return out


def candidates_for_plan(
    plan: TrainingPlan, settings: PlannerSettings | None = None, table: GpuTable | None = None
) -> list[Candidate]:
    """GPU types that hold ``plan``'s patch and batch (its model profile's ``vram`` model)."""
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.settings import load_planner_settings

    profile = load_model_profile(plan.model)
    return gpu_candidates(
        profile,
        plan.patch_size,
        plan.batch_size,
        settings or load_planner_settings(),
        count=plan.devices,
        table=table,
    )


def parse_accelerator(spec: str, table: GpuTable | None = None) -> tuple[str, int]:
    """``"L4:1"`` -> ``("L4", 1)``; the name must be in the GPU table.

    Raises:
        ConfigError: unknown GPU (with "did you mean") or a bad count.
    """
    table = table or load_gpu_table()
    name, _, count_txt = spec.partition(":")
    try:
        count = int(count_txt) if count_txt else 1
    except ValueError:
        raise ConfigError(f"accelerator '{spec}': count must be an integer, e.g. L4:1") from None
    if count < 1:
        raise ConfigError(f"accelerator '{spec}': count must be >= 1")
    if name not in table.gpus:
        close = difflib.get_close_matches(name, list(table.gpus), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"accelerator '{name}' is not in configs/gpus.yaml.{hint} "
            f"Known: {', '.join(table.gpus)}; add a row there for a new GPU."
        )
    return name, count


def hardware_for_accelerator(spec: str, table: GpuTable | None = None) -> HardwareBudget:
    """The budget of a typical cloud VM with ``spec`` (e.g. ``"A100:4"``), to plan for it."""
    table = table or load_gpu_table()
    name, count = parse_accelerator(spec, table)
    vm = table.vm_per_gpu
    ram = vm.ram_gb * count
    return HardwareBudget(
        cpu_cores=vm.cpu_cores * count,
        ram_total_gb=ram,
        ram_available_gb=round(0.9 * ram, 1),
        gpu_name=name,
        gpu_vram_mb=int(table.gpus[name].vram_gb * 1024),
        gpu_count=count,
        disk_free_gb=vm.disk_gb,
        environment=Environment.CLOUD,
    )


def skypilot_resources(accelerators: list[str], mode: str = "ordered") -> dict[str, list]:
    """The ``resources`` fragment for a SkyPilot task: ``{"ordered": [{"accelerators": ...}]}``.

    Args:
        accelerators: e.g. ``plan.accelerators``.
        mode: ``"ordered"`` (try cheapest first) or ``"any_of"`` (let SkyPilot pick).
    """
    if mode not in ("ordered", "any_of"):
        raise ConfigError(f"mode '{mode}': use 'ordered' or 'any_of'")
    return {mode: [{"accelerators": a} for a in accelerators]}
