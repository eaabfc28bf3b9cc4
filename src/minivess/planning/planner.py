"""The planner: HardwareBudget × DatasetProfile × ModelProfile × overrides → TrainingPlan.

A pure function made of small ``determine_*`` steps (nnU-Net's experiment planner style). Each
step returns its value and the reason, which becomes a :class:`~minivess.planning.plan.Decision`,
so the plan explains itself. Rules (docs/planner.md):

* **Tier** from the seed's table (``configs/planner.yaml``).
* **Fit:** the patch fits every volume on every axis (the smallest volume bounds it), so no
  volume is padded by default. An override larger than a volume pads only those volumes, each
  listed in ``padded_volumes`` and in the decisions; with ``allow_padding: false`` it is refused.
* **Divisibility per axis** from the model's topology: a thin axis gets stride 1 at the deep
  levels, so Z=5 data gets a valid patch.
* **Memory:** the estimate stays within 80% of the VRAM (GPU) or of the RAM left after the
  cache (CPU); otherwise the patch shrinks along the axis with the most room, then the batch.
* **Cache rate:** at most 60% of free RAM, never more than the data needs.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from pydantic import Field

from minivess.config import StrictModel, parse_model
from minivess.data.schema import DatasetProfile, Shape3
from minivess.errors import ConfigError, PlanError
from minivess.keys import Source, Tier
from minivess.planning.calibration import Calibration
from minivess.planning.cloud import gpu_candidates, parse_accelerator
from minivess.planning.hardware import HardwareBudget
from minivess.planning.memory import memory_model, training_mb
from minivess.planning.plan import Decision, PlanNetwork, TrainingPlan
from minivess.planning.profiles import MemorySpec, ModelProfile, TopologySpec
from minivess.planning.settings import PlannerSettings, TierSpec, load_planner_settings
from minivess.planning.topology import (
    divisors_of,
    is_valid_size,
    kernels_for,
    nearest_valid,
    network_shape,
    round_down,
    strides_for,
)

_AXES = ("x", "y", "z")
log = logging.getLogger(__name__)


class PlanOverrides(StrictModel):
    """What a researcher may fix by hand (``--set key=value``, ``--overrides FILE``, ``plan:``).

    Every field but ``allow_padding`` is a :class:`TrainingPlan` field; None means "automatic".
    """

    tier: Tier | None = None
    patch_size: Shape3 | None = None
    batch_size: int | None = Field(default=None, ge=1)
    cache_rate: float | None = Field(default=None, ge=0, le=1)
    num_workers: int | None = Field(default=None, ge=0)
    amp: bool | None = None
    grad_accum_steps: int | None = Field(default=None, ge=1)
    sw_roi: Shape3 | None = None
    sw_overlap: float | None = Field(default=None, ge=0, lt=1)
    accelerators: list[str] | None = None
    allow_padding: bool = Field(
        default=True, description="pad volumes smaller than an overridden patch (each is listed)"
    )

    def source(self, name: str) -> Source:
        """``override`` when the researcher set ``name``, else ``auto``."""
        return Source.OVERRIDE if getattr(self, name) is not None else Source.AUTO


def parse_overrides(
    overrides: dict[str, Any] | PlanOverrides | None, origin: str = "plan overrides"
) -> PlanOverrides:
    """Validate an overrides mapping; unknown keys raise ConfigError with "did you mean"."""
    if isinstance(overrides, PlanOverrides):
        return overrides
    return parse_model(PlanOverrides, overrides or {}, origin)


def load_overrides(path: Path | None = None, set_items: list[str] | None = None) -> dict[str, Any]:
    """Overrides from a YAML mapping file and ``--set key=value`` items (``--set`` wins).

    The file is either the mapping itself or an experiment YAML holding it under ``plan:``.
    Keys are validated (unknown key -> ConfigError with "did you mean").
    """
    from minivess.config import deep_merge, parse_set_overrides, read_yaml

    data: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of plan fields, e.g. 'batch_size: 2'")
        data = raw["plan"] if isinstance(raw.get("plan"), dict) else raw
        parse_model(PlanOverrides, data, str(path))
    merged = deep_merge(data, parse_set_overrides(set_items))
    parse_model(PlanOverrides, merged, "--set" if set_items else str(path or "overrides"))
    return merged


# --------------------------------------------------------------------------------------------
# determine_* steps
# --------------------------------------------------------------------------------------------


def determine_tier(hw: HardwareBudget, settings: PlannerSettings) -> tuple[Tier, str]:
    """The seed's tier from the GPU count and nominal VRAM (GB)."""
    if not hw.has_gpu:
        return Tier.CPU, "no GPU detected"
    nominal = round(hw.gpu_vram_mb / 1024)
    name = hw.gpu_name or "GPU"
    if nominal < settings.cpu_fallback_vram_gb:
        return Tier.CPU, (
            f"WARNING: {name} has {nominal} GB < {settings.cpu_fallback_vram_gb:g} GB; "
            "training on CPU"
        )
    if hw.gpu_count > 1:
        return Tier.CLOUD_MULTI, f"{hw.gpu_count} GPUs ({name}, {nominal} GB each)"
    singles = sorted(
        (t for t in settings.tiers if t not in (Tier.CPU, Tier.CLOUD_MULTI)),
        key=lambda t: -settings.tiers[t].min_vram_gb,
    )
    for tier in singles:
        if nominal >= settings.tiers[tier].min_vram_gb:
            return tier, f"one {name} with {nominal} GB >= {settings.tiers[tier].min_vram_gb:g} GB"
    return Tier.CPU, f"{name} with {nominal} GB is below every GPU tier"


def determine_cache_rate(
    hw: HardwareBudget, dataset: DatasetProfile, settings: PlannerSettings
) -> tuple[float, str]:
    """Fraction of volumes to cache: at most ``cache_ram_fraction`` of free RAM."""
    need = dataset.total_size_gb * settings.cache_bytes_factor
    room = settings.cache_ram_fraction * hw.ram_available_gb
    if need <= room:
        return 1.0, (
            f"the data needs {need:.2f} GB (image+label float32) <= "
            f"{settings.cache_ram_fraction:.0%} of {hw.ram_available_gb:.1f} GB free RAM"
        )
    rate = math.floor(room / need * 100) / 100
    return rate, (
        f"the data needs {need:.2f} GB; {settings.cache_ram_fraction:.0%} of "
        f"{hw.ram_available_gb:.1f} GB free RAM holds {rate:.0%} of it"
    )


def determine_memory_budget(
    hw: HardwareBudget, gpu: bool, cache_gb: float, settings: PlannerSettings
) -> tuple[float, str]:
    """MiB one training step may use: a fraction of the VRAM, or of the RAM left after the cache."""
    if gpu:
        budget = settings.vram_budget_fraction * hw.gpu_vram_mb
        return budget, f"{settings.vram_budget_fraction:.0%} of {hw.gpu_vram_mb} MiB VRAM"
    free = max(hw.ram_available_gb - cache_gb, 0.0)
    budget = settings.ram_budget_fraction * free * 1024
    return budget, (
        f"{settings.ram_budget_fraction:.0%} of {free:.1f} GB free RAM left after "
        f"{cache_gb:.1f} GB of cache"
    )


def _grow_free_axes(
    capped: list[int], target: Shape3, limits: list[int], cost: list[int] | None = None
) -> list[int]:
    """Scale the axes that the data did not cap so the patch keeps the target's voxel count.

    ``limits`` is the per-axis ceiling (model max, smallest volume). Axes that hit their ceiling
    while growing are fixed there and the rest is redistributed (at most three rounds).
    ``cost`` is what each capped axis costs the network (an internally padded axis costs its
    padded size), default ``capped``.
    """
    cost = cost or capped
    goal = target[0] * target[1] * target[2]
    out = list(capped)
    free = [a for a in range(3) if capped[a] == target[a] and capped[a] < limits[a]]
    for _ in range(3):
        if not free or out[0] * out[1] * out[2] >= goal:
            break
        fixed = math.prod(max(out[a], cost[a]) for a in range(3) if a not in free)
        scale = (goal / (fixed * math.prod(out[a] for a in free))) ** (1 / len(free))
        if scale <= 1.0:
            break  # growing only: never below what the data allows
        for a in free:
            out[a] = min(limits[a], int(out[a] * scale))
        free = [a for a in free if out[a] < limits[a]]
    return out


def fit_patch(
    target: Shape3, dataset: DatasetProfile, model: ModelProfile, keep_voxels: bool = False
) -> tuple[Shape3, str]:
    """Largest valid patch <= target, the model's max and the smallest volume, per axis.

    Args:
        target: the tier's patch (x, y, z) voxels.
        keep_voxels: when the data caps an axis (Z=5), grow the other axes (within the model max
            and the smallest volume) so the patch keeps the target's voxel count.

    Raises:
        PlanError: an axis has no valid size (the data is thinner than the model allows).
    """
    topo = model.topology
    limits = [min(model.limits.max_patch[a], dataset.min_shape[a]) for a in range(3)]
    capped = [min(target[a], limits[a]) for a in range(3)]
    cost = list(network_shape((capped[0], capped[1], capped[2]), topo))
    grown = _grow_free_axes(capped, target, limits, cost) if keep_voxels else capped
    patch = [round_down(c, topo) for c in grown]
    for a in range(3):
        if patch[a] < 1:
            raise PlanError(
                f"model '{model.name}' cannot fit axis {_AXES[a]} of the smallest volume "
                f"({dataset.min_shape[a]} voxels): its topology needs multiples of "
                f"{topo.fixed_divisor}. Override patch_size (volumes get padded) or pick another "
                "model."
            )
    out: Shape3 = (patch[0], patch[1], patch[2])
    reason = (
        f"target {tuple(target)} capped by the smallest volume {tuple(dataset.min_shape)} and "
        f"the model max {tuple(model.limits.max_patch)} -> {tuple(capped)}"
    )
    if grown != capped:
        reason += f", uncapped axes grown to keep the target's voxels -> {tuple(grown)}"
    return out, reason + f", rounded down per axis to the topology -> {out}"


def _can_shrink(patch: Shape3, axis: int, floor: Shape3, topo: TopologySpec) -> int:
    """The next smaller valid size on ``axis`` that keeps the network buildable, or 0."""
    new = round_down(patch[axis] - 1, topo)
    if new < max(floor[axis], 1):
        return 0
    cand = list(patch)
    cand[axis] = new
    smaller: Shape3 = (cand[0], cand[1], cand[2])
    if _voxels(smaller, topo) >= _voxels(patch, topo):
        return 0  # an internally padded axis: shrinking it saves nothing
    try:
        strides_for(smaller, topo)
    except PlanError:
        return 0
    return new


def _voxels(patch: Shape3, topo: TopologySpec) -> int:
    shape = network_shape(patch, topo)
    return shape[0] * shape[1] * shape[2]


def fit_memory(
    patch: Shape3,
    batch: int,
    *,
    model: ModelProfile,
    mem: MemorySpec,
    amp: bool,
    budget_mb: float,
    patch_fixed: bool,
    batch_fixed: bool,
    advice: str = "Use a bigger GPU or a lighter model.",
) -> tuple[Shape3, int, float, list[str]]:
    """Shrink the patch (axis with the most room first), then the batch, until within budget.

    "Room" of an axis is ``patch / min_patch`` (how many times it is above the model's floor);
    each step moves that axis to its next smaller valid size.

    Returns:
        (patch, batch, estimate MiB, notes describing each shrink).

    Raises:
        PlanError: nothing left to shrink and the estimate still exceeds the budget.
    """
    topo = model.topology
    floor = tuple(min(model.limits.min_patch[a], patch[a]) for a in range(3))
    floor3: Shape3 = (floor[0], floor[1], floor[2])
    notes: list[str] = []
    est = training_mb(mem, _voxels(patch, topo), batch, amp)
    start = (patch, batch)
    while est > budget_mb:
        options = (
            []
            if patch_fixed
            else [
                (patch[a] / max(floor3[a], 1), patch[a], -a, a)
                for a in range(3)
                if _can_shrink(patch, a, floor3, topo)
            ]
        )
        if options:
            axis = max(options)[3]
            cand = list(patch)
            cand[axis] = _can_shrink(patch, axis, floor3, topo)
            patch = (cand[0], cand[1], cand[2])
        elif not batch_fixed and batch > 1:
            batch -= 1
        else:
            fixed = [n for n, f in (("patch_size", patch_fixed), ("batch_size", batch_fixed)) if f]
            if fixed:
                raise PlanError(
                    f"model '{model.name}' needs {est:.0f} MiB at patch {patch}, batch {batch} "
                    f"(fixed by override: {', '.join(fixed)}), over the budget of "
                    f"{budget_mb:.0f} MiB: lower the override or use a bigger device."
                )
            raise PlanError(
                f"model '{model.name}' needs {est:.0f} MiB even at its smallest patch {patch} "
                f"and batch {batch}, over the budget of {budget_mb:.0f} MiB: the device is too "
                f"small for this model at any patch. {advice}"
            )
        est = training_mb(mem, _voxels(patch, topo), batch, amp)
    if (patch, batch) != start:
        notes.append(
            f"shrunk from patch {start[0]} batch {start[1]} to patch {patch} batch {batch} "
            f"to fit {budget_mb:.0f} MiB"
        )
    return patch, batch, est, notes


def validate_patch_override(patch: Shape3, model: ModelProfile) -> None:
    """Every axis of an overridden patch must suit the model's topology.

    Raises:
        ConfigError: naming the axis and the nearest valid sizes.
    """
    for a in range(3):
        if not is_valid_size(patch[a], model.topology):
            below, above = nearest_valid(patch[a], model.topology)
            raise ConfigError(
                f"patch_size {tuple(patch)}: axis {_AXES[a]}={patch[a]} does not suit the "
                f"topology of '{model.name}'; use {below or above}"
                + (f" or {above}" if below else "")
                + "."
            )
    if max(patch) > 0:
        strides_for(patch, model.topology)


def padded_volumes(patch: Shape3, dataset: DatasetProfile) -> tuple[list[str], list[Decision]]:
    """Volumes smaller than ``patch`` on some axis, with one decision each."""
    names: list[str] = []
    decisions: list[Decision] = []
    for v in dataset.volumes:
        if any(v.shape[a] < patch[a] for a in range(3)):
            to = tuple(max(v.shape[a], patch[a]) for a in range(3))
            names.append(v.name)
            decisions.append(
                Decision(
                    name=f"padding:{v.name}",
                    value={"shape": list(v.shape), "padded_to": list(to)},
                    reason=f"{v.name} {tuple(v.shape)} is smaller than the patch {patch}; "
                    f"zero-padded to {to} when loaded",
                    source=Source.OVERRIDE,
                )
            )
    return names, decisions


# --------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------


class _Decisions:
    """Collects decisions; a value the researcher overrode is marked ``override``."""

    def __init__(self, ov: PlanOverrides) -> None:
        self.ov = ov
        self.items: list[Decision] = []

    def __call__(self, name: str, value: Any, reason: str, field: str | None = None) -> None:
        src = self.ov.source(field) if field else Source.AUTO
        if src is Source.OVERRIDE:
            reason = f"set by the researcher ({reason})" if reason else "set by the researcher"
        self.items.append(Decision(name=name, value=value, reason=reason, source=src))


def describe_hardware(hw: HardwareBudget) -> str:
    """One line summarising the budget the plan is made for."""
    gpus = f"{hw.gpu_count}x {hw.gpu_name} ({hw.gpu_vram_mb} MiB each)" if hw.has_gpu else "no GPU"
    return (
        f"{hw.cpu_cores} CPU cores, {hw.ram_available_gb:.1f} of {hw.ram_total_gb:.1f} GB RAM "
        f"free (swap {hw.swap_total_gb:.1f} GB is never planned on), {gpus}, "
        f"environment {hw.environment}"
    )


def determine_amp(ov: PlanOverrides, model: ModelProfile, gpu: bool) -> tuple[bool, str]:
    """Mixed precision: on a GPU when the model supports it (or as overridden)."""
    if ov.amp is not None:
        if ov.amp and not model.supports_amp:
            raise PlanError(f"amp=true: model '{model.name}' does not support mixed precision")
        return ov.amp, ""
    if gpu and model.supports_amp:
        return True, "GPU and the model supports mixed precision"
    return False, "the model does not support mixed precision" if gpu else "CPU training: fp32"


def check_padding(
    patch: Shape3, dataset: DatasetProfile, ov: PlanOverrides
) -> tuple[list[str], list[Decision]]:
    """Volumes an (overridden) patch would pad; refused when ``allow_padding`` is false."""
    padded, decisions = padded_volumes(patch, dataset)
    if not any(patch[a] > dataset.min_shape[a] for a in range(3)):
        return [], []
    if not ov.allow_padding:
        first = padded[:3] or ["the smallest volume"]
        more = f" and {len(padded) - 3} more" if len(padded) > 3 else ""
        raise PlanError(
            f"patch_size {patch} is larger than volume {', '.join(first)}{more} "
            f"(smallest shape {tuple(dataset.min_shape)}) and allow_padding is false: "
            "use a smaller patch_size or set allow_padding=true"
        )
    if not dataset.volumes:
        decisions.append(
            Decision(
                name="padding",
                value=list(dataset.min_shape),
                source=Source.OVERRIDE,
                reason="the profile has no per-volume stats; volumes smaller than the patch "
                "are padded",
            )
        )
    return padded, decisions


def determine_sw_roi(ov: PlanOverrides, patch: Shape3, divisors: Shape3) -> Shape3:
    """Sliding-window roi: the training patch, or an override that suits the network.

    Raises:
        ConfigError: an overridden roi axis is not a multiple of the network's divisor.
    """
    if ov.sw_roi is None:
        return patch
    for a in range(3):
        if ov.sw_roi[a] % divisors[a]:
            raise ConfigError(
                f"sw_roi {tuple(ov.sw_roi)}: axis {_AXES[a]}={ov.sw_roi[a]} is not a multiple "
                f"of {divisors[a]} (the network's divisor on that axis)"
            )
    return (ov.sw_roi[0], ov.sw_roi[1], ov.sw_roi[2])


def determine_accelerators(
    ov: PlanOverrides,
    model: ModelProfile,
    patch: Shape3,
    batch: int,
    count: int,
    settings: PlannerSettings,
) -> tuple[list[str], str]:
    """Cloud GPU candidates for this patch and batch, cheapest first (or as overridden)."""
    if ov.accelerators is not None:
        for acc in ov.accelerators:
            parse_accelerator(acc)
        return list(ov.accelerators), ""
    cands = gpu_candidates(model, patch, batch, settings, count=count, amp=model.supports_amp)
    if not cands:
        return [], "no GPU in configs/gpus.yaml holds this patch and batch"
    return [c.accelerator for c in cands], (
        f"cloud GPUs whose {settings.vram_budget_fraction:.0%} VRAM holds this patch and batch "
        f"({cands[0].estimate_mb:.0f} MiB, static vram model), cheapest first (configs/gpus.yaml)"
    )


def plan_training(
    hardware: HardwareBudget,
    dataset: DatasetProfile,
    model: ModelProfile,
    overrides: dict[str, Any] | PlanOverrides | None = None,
    calibration: Calibration | None = None,
    settings: PlannerSettings | None = None,
) -> TrainingPlan:
    """Plan training of ``model`` on ``dataset`` with ``hardware`` (pure: no I/O but settings).

    Args:
        hardware: the budget (detected, from YAML, or a cloud GPU's).
        dataset: the profile of the data (shapes (x, y, z) voxels, sizes float32).
        model: the model profile.
        overrides: TrainingPlan field names (+ ``allow_padding``), see :class:`PlanOverrides`.
        calibration: measured memory figures of this model on this device (preferred).
        settings: planner constants (default: ``configs/planner.yaml``).

    Raises:
        ConfigError: an invalid override.
        PlanError: no plan satisfies the constraints; the message says why.
    """
    settings = settings or load_planner_settings()
    ov = parse_overrides(overrides)
    if dataset.n_volumes < 1 or min(dataset.min_shape) < 1:
        raise PlanError(f"dataset {dataset.data_dir}: no usable volume to plan for")
    decide = _Decisions(ov)
    decide("hardware", hardware.device_key, describe_hardware(hardware))

    # tier and device
    auto_tier, tier_reason = determine_tier(hardware, settings)
    tier = ov.tier or auto_tier
    if tier_reason.startswith("WARNING"):
        log.warning("planner: %s", tier_reason.removeprefix("WARNING: "))
    decide("tier", tier.value, tier_reason if ov.tier is None else f"auto was {auto_tier}", "tier")
    spec: TierSpec = settings.tier(tier)
    gpu = hardware.has_gpu and tier is not Tier.CPU
    devices = hardware.gpu_count if gpu and tier is Tier.CLOUD_MULTI else 1
    device = "cuda" if gpu else "cpu"
    on = f" on {hardware.gpu_name}" if gpu else ""
    decide("device", f"{device}x{devices}" if devices > 1 else device, f"tier {tier.value}{on}")

    # memory model (a calibration of this model on this device wins), AMP, cache, budget
    if calibration is not None and (calibration.model, calibration.device) != (
        model.name,
        hardware.device_key,
    ):
        decide(
            "calibration",
            None,
            f"ignored {calibration.file_name}: measured for {calibration.model} on "
            f"{calibration.device}, planning {model.name} on {hardware.device_key}",
        )
        calibration = None
    mem, mem_source = memory_model(model, gpu, calibration)
    amp, amp_reason = determine_amp(ov, model, gpu)
    decide("amp", amp, amp_reason, "amp")
    auto_rate, rate_reason = determine_cache_rate(hardware, dataset, settings)
    cache_rate = ov.cache_rate if ov.cache_rate is not None else auto_rate
    decide("cache_rate", cache_rate, rate_reason, "cache_rate")
    cache_gb = dataset.total_size_gb * settings.cache_bytes_factor * cache_rate
    budget_mb, budget_reason = determine_memory_budget(hardware, gpu, cache_gb, settings)

    # patch: fit + divisibility (or the override, with its padding), then memory
    auto_patch, patch_reason = (None, "")
    try:
        auto_patch, patch_reason = fit_patch(
            spec.patch, dataset, model, settings.keep_target_voxels
        )
    except PlanError as err:
        if ov.patch_size is None:
            raise
        patch_reason = f"no automatic patch fits: {err}"
    if ov.patch_size is not None:
        validate_patch_override(ov.patch_size, model)
        patch: Shape3 = (ov.patch_size[0], ov.patch_size[1], ov.patch_size[2])
        patch_reason = f"auto would fit {auto_patch}" if auto_patch else patch_reason
    else:
        assert auto_patch is not None
        patch = auto_patch
    padded, pad_decisions = check_padding(patch, dataset, ov)
    decide.items.extend(pad_decisions)
    base_batch = min(spec.batch, model.limits.max_batch)
    patch, batch, estimate, notes = fit_memory(
        patch,
        ov.batch_size if ov.batch_size is not None else base_batch,
        model=model,
        mem=mem,
        amp=amp,
        budget_mb=budget_mb,
        patch_fixed=ov.patch_size is not None,
        batch_fixed=ov.batch_size is not None,
        advice="Use a bigger GPU or a lighter model."
        if gpu
        else "Free RAM, lower cache_rate (--set cache_rate=0.2) or use a lighter model.",
    )
    decide("patch_size", list(patch), "; ".join([patch_reason, *notes]), "patch_size")

    # the network the patch implies
    strides = strides_for(patch, model.topology)
    divisors = divisors_of(strides)
    decide(
        "strides",
        [list(s) for s in strides],
        f"{len(strides)} levels; per-axis divisors {divisors} from '{model.name}' topology "
        f"({model.topology.rule}); axes too thin to halve keep stride 1",
    )
    net_shape = network_shape(patch, model.topology)
    if net_shape != patch:
        decide(
            "network_padding",
            list(net_shape),
            f"'{model.name}' needs multiples of {model.topology.fixed_divisor}: thin axes of the "
            f"patch {patch} are zero-padded to {net_shape} inside the network (the data is not)",
        )

    # batch, accumulation, memory
    if ov.batch_size is not None:
        batch_reason = f"tier {tier.value} would use {base_batch}"
    else:
        batch_reason = f"tier {tier.value} batch {spec.batch} (model max {model.limits.max_batch})"
        if batch != base_batch:
            batch_reason += f", reduced to {batch} to fit memory"
    decide("batch_size", batch, batch_reason, "batch_size")
    auto_accum = max(1, math.ceil(base_batch / batch)) if ov.batch_size is None else 1
    accum = ov.grad_accum_steps or auto_accum
    decide(
        "grad_accum_steps",
        accum,
        f"keeps the effective batch at {batch * auto_accum} (tier batch {base_batch})"
        if auto_accum > 1
        else "the batch was not reduced",
        "grad_accum_steps",
    )
    decide(
        "memory",
        round(estimate, 1),
        f"estimate {estimate:.0f} MiB <= budget {budget_mb:.0f} MiB ({budget_reason}); "
        f"memory model: {mem_source}",
    )

    # loader, sliding window, cloud
    auto_workers = max(0, min(spec.workers, hardware.cpu_cores - 1))
    workers = ov.num_workers if ov.num_workers is not None else auto_workers
    decide(
        "num_workers",
        workers,
        f"tier {tier.value} wants {spec.workers}, {hardware.cpu_cores} CPU cores leave "
        f"{auto_workers} besides the main process",
        "num_workers",
    )
    sw_roi = determine_sw_roi(ov, patch, divisors)
    decide("sw_roi", list(sw_roi), "the training patch (same network shapes)", "sw_roi")
    sw_overlap = ov.sw_overlap if ov.sw_overlap is not None else model.sw_overlap
    decide("sw_overlap", sw_overlap, f"model profile '{model.name}' default", "sw_overlap")
    count = devices if tier is Tier.CLOUD_MULTI else 1
    accelerators, acc_reason = determine_accelerators(ov, model, patch, batch, count, settings)
    decide("accelerators", accelerators, acc_reason, "accelerators")

    return TrainingPlan(
        model=model.name,
        tier=tier,
        patch_size=patch,
        batch_size=batch,
        cache_rate=cache_rate,
        num_workers=workers,
        amp=amp,
        grad_accum_steps=accum,
        sw_roi=sw_roi,
        sw_overlap=sw_overlap,
        strides=strides,
        kernel_sizes=kernels_for(strides, model.topology),
        padded_volumes=padded,
        accelerators=accelerators,
        vram_estimate_mb=round(estimate, 1),
        dataset_hash=dataset.dataset_hash,
        network=plan_network(model),
        decisions=decide.items,
        device=device,
        devices=devices,
    )


def plan_network(model: ModelProfile) -> PlanNetwork:
    """The profile's network block, copied into the plan (and so into its hash)."""
    return PlanNetwork.model_validate(model.network.model_dump(mode="json"))


def network_plan(
    model: ModelProfile, patch: Shape3, batch: int = 1, amp: bool = False
) -> TrainingPlan:
    """A minimal plan that only fixes the network (strides from ``patch``), for calibration,
    benchmarks and tests that build a network at a chosen patch.

    Raises:
        ConfigError: ``patch`` does not suit the model's topology.
    """
    validate_patch_override(patch, model)
    strides = strides_for(patch, model.topology)
    return TrainingPlan(
        model=model.name,
        tier=Tier.CPU,
        patch_size=patch,
        batch_size=batch,
        cache_rate=0.0,
        num_workers=0,
        amp=amp,
        sw_roi=patch,
        sw_overlap=model.sw_overlap,
        strides=strides,
        kernel_sizes=kernels_for(strides, model.topology),
        network=plan_network(model),
    )
