"""Ensembles over trained members: mean probability, majority vote, model soup.

Probabilities are foreground probabilities (x, y, z) in [0, 1]; masks are boolean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from minivess.planning.plan import TrainingPlan


def mean_probability(probs: list[np.ndarray]) -> np.ndarray:
    """Average of the members' foreground probabilities."""
    return np.mean(np.stack(probs), axis=0)


def majority_vote(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Voxels predicted foreground by more than half the members, and the vote fraction."""
    fraction = np.mean(np.stack(masks).astype(np.float32), axis=0)
    return fraction > 0.5, fraction


def soup_compatible(plans: list[TrainingPlan], states: list[dict[str, Any]]) -> str | None:
    """None when the members can be weight-averaged, else the reason they cannot."""
    if len(states) < 2:
        return "fewer than two members"
    first = plans[0]
    for plan in plans[1:]:
        same = (plan.model, plan.strides, plan.kernel_sizes) == (
            first.model,
            first.strides,
            first.kernel_sizes,
        )
        if not same:
            return f"architectures differ ({first.model} vs {plan.model} or strides/kernels)"
    ref = {k: tuple(v.shape) for k, v in states[0].items()}
    for state in states[1:]:
        if {k: tuple(v.shape) for k, v in state.items()} != ref:
            return "parameter names or shapes differ"
    return None


def model_soup(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Uniform weight average of state dicts (floating tensors; others from the first member)."""
    out = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            out[key] = sum(s[key].double() for s in states).div(len(states)).to(value.dtype)
        else:
            out[key] = value.clone()
    return out
