"""Windows per forward pass in sliding-window inference: planned, bounded by memory, then used by
validation, evaluation and serving (one sliding-window helper)."""

from __future__ import annotations

import pytest

from minivess.keys import Source
from minivess.planning.memory import inference_mb
from minivess.planning.planner import PlanOverrides, StepBudget, determine_sw_batch, plan_training
from minivess.planning.profiles import load_model_profile
from minivess.planning.settings import load_planner_settings
from minivess.serving.settings import Backend

ROI = (64, 64, 16)
VOXELS = 64 * 64 * 16  # DynUNet does not pad this roi inside the network


def _step(windows_that_fit: float) -> StepBudget:
    """A step budget that holds the inference of ``windows_that_fit`` windows of :data:`ROI`."""
    model = load_model_profile("dynunet")
    mem = model.memory(gpu=False)
    one = inference_mb(mem, VOXELS, False, 1)
    per_window = inference_mb(mem, VOXELS, False, 2) - one
    budget = one + (windows_that_fit - 1) * per_window
    return StepBudget(model=model, mem=mem, amp=False, budget_mb=budget)


@pytest.mark.parametrize(
    ("fit", "batch", "want", "why"),
    [
        (100, 1, 4, "for 4 windows <= budget"),
        (3.5, 1, 2, "for 2 windows <= budget"),
        (1.5, 1, 1, "the training batch (1); 2 windows would not fit the"),
        (100, 8, 8, "the training batch (8)"),  # never fewer: it fits (no backward pass)
    ],
)
def test_windows_double_from_the_training_batch_while_they_fit(fit, batch, want, why) -> None:
    size, reason = determine_sw_batch(PlanOverrides(), ROI, batch, _step(fit), cap=4)
    assert size == want
    assert why in reason, reason


def test_an_override_wins_and_names_the_automatic_value() -> None:
    size, reason = determine_sw_batch(PlanOverrides(sw_batch_size=8), ROI, 1, _step(100), cap=4)
    assert (size, reason) == (8, "auto would use 4")


def test_a_cpu_plan_carries_its_windows_per_forward_and_the_reason(make_profile, hardware) -> None:
    data = make_profile([(256, 256, 16)] * 4)
    dynunet = load_model_profile("dynunet")
    plan = plan_training(hardware["cpu_16gb"], data, dynunet)
    cap = load_planner_settings().sw_batch_max
    assert plan.batch_size < cap == plan.sw_batch_size
    decision = plan.decision("sw_batch_size")
    assert decision.source is Source.AUTO and "budget" in decision.reason
    fixed = plan_training(hardware["cpu_16gb"], data, dynunet, overrides={"sw_batch_size": 1})
    assert fixed.sw_batch_size == 1
    assert fixed.decision("sw_batch_size").source is Source.OVERRIDE
    assert fixed.plan_hash != plan.plan_hash  # it changes what the plan's runs compute


def _recorder(seen: list[int]):
    import torch

    def predict(x: torch.Tensor) -> torch.Tensor:
        seen.append(int(x.shape[0]))
        return torch.zeros((x.shape[0], 2, *x.shape[2:]))

    return predict


def test_the_sliding_window_sends_the_plans_windows_per_forward() -> None:
    import numpy as np
    import torch

    from minivess.models.sliding import sliding_window
    from minivess.serving.inference import Segmenter
    from tests.fixtures.tiny import tiny_plan

    plan = tiny_plan(sw_batch_size=3)  # roi (32, 32, 4): 3 x 3 x 1 windows of (80, 80, 4)
    seen: list[int] = []
    sliding_window(torch.zeros(1, 1, 80, 80, 4), plan, _recorder(seen))
    assert seen == [3, 3, 3]
    seen.clear()
    Segmenter(_recorder(seen), plan, Backend.TORCH).logits(np.zeros((80, 80, 4), "f4"))
    assert seen == [3, 3, 3]  # serving: the plan's, unless the serve settings say otherwise
    seen.clear()
    Segmenter(_recorder(seen), plan, Backend.TORCH, sw_batch_size=1).logits(
        np.zeros((80, 80, 4), "f4")
    )
    assert seen == [1] * 9
