"""Does a travelled plan fit the machine it landed on? (pure: plan + hardware in, verdict out)

``minivess launch`` plans for the cloud GPU it is about to rent and ships that plan inside the
rendered task (``minivess train --plan ...``). On the node, :func:`plan_fits` compares the plan
with the GPU the node really got: the accelerator must be one of the plan's candidates, with at
least the plan's VRAM estimate per card and at least ``plan.devices`` cards. Only when it does not
fit does the trainer re-plan for the node (:func:`replan_overrides` keeps the researcher's
overrides), and logs that as a decision with its reason.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from minivess.keys import Source
from minivess.planning.hardware import HardwareBudget
from minivess.planning.plan import Decision, TrainingPlan

#: Name of the decision recording the node's verdict on a travelled plan.
NODE_PLAN_DECISION = "node.plan"


def accelerator_matches(accelerator: str, gpu_name: str) -> bool:
    """True when a SkyPilot accelerator (``"A100-80GB:1"``) names an NVML GPU name.

    The accelerator's base name must be one word of the NVML name, or two adjacent words
    joined (SkyPilot's ``RTX4090`` is NVML's ``NVIDIA GeForce RTX 4090``); a memory suffix
    (``-80GB``) must appear in the NVML name.

    Examples:
        ``accelerator_matches("L4:1", "NVIDIA L4")`` is True;
        ``accelerator_matches("L4", "NVIDIA L40S")`` is False;
        ``accelerator_matches("RTX4090", "NVIDIA GeForce RTX 4090")`` is True;
        ``accelerator_matches("A100-80GB", "NVIDIA A100-SXM4-40GB")`` is False.
    """
    base, _, mem = accelerator.split(":", 1)[0].upper().partition("-")
    name = gpu_name.upper()
    words = name.replace("-", " ").split()
    tokens = {*words, *(a + b for a, b in pairwise(words))}
    return base in tokens and (not mem or mem in name)


def plan_fits(plan: TrainingPlan, hw: HardwareBudget) -> tuple[bool, str]:
    """(fits, reason) for running ``plan`` unchanged on ``hw``."""
    wants_gpu = plan.device == "cuda"
    if not hw.has_gpu:
        if wants_gpu:
            return False, (
                f"the plan is for a GPU ({', '.join(plan.accelerators) or 'cuda'}, "
                f"~{plan.vram_estimate_mb:.0f} MB VRAM) but this node has none"
            )
        return True, "a CPU plan on a CPU node"
    gpu = hw.gpu_name or "GPU"
    if not wants_gpu:
        return False, f"the plan is for CPU but this node has {hw.gpu_count} x {gpu}"
    if plan.accelerators and not any(accelerator_matches(a, gpu) for a in plan.accelerators):
        return False, (
            f"this node's {gpu} is not one of the plan's candidates "
            f"({', '.join(plan.accelerators)})"
        )
    if hw.gpu_vram_mb < plan.vram_estimate_mb:
        return False, (
            f"{gpu} has {hw.gpu_vram_mb} MiB, the plan needs ~{plan.vram_estimate_mb:.0f} MB"
        )
    if hw.gpu_count < plan.devices:
        return False, f"the plan uses {plan.devices} GPUs, this node has {hw.gpu_count}"
    return True, f"{gpu} ({hw.gpu_vram_mb} MiB) is a candidate with room for the plan"


def replan_overrides(plan: TrainingPlan) -> dict[str, Any]:
    """The researcher's overrides recorded in ``plan`` (decisions with source ``override``)."""
    from minivess.planning.planner import PlanOverrides

    fields = set(PlanOverrides.model_fields)
    return {
        d.name: d.value
        for d in plan.decisions
        if d.source is Source.OVERRIDE and d.name in fields and d.name != "accelerators"
    }


def node_decision(fits: bool, reason: str) -> Decision:
    """The decision logged on the node (kept in the plan the trainer uses)."""
    value = "kept the travelled plan" if fits else "re-planned for this node"
    return Decision(name=NODE_PLAN_DECISION, value=value, reason=reason, source=Source.AUTO)
