"""The one sliding-window inference: training validation, evaluation and serving all call it.

Windows are the plan's ``sw_roi`` with its ``sw_overlap``, ``sw_batch_size`` of them per forward
pass, blended with a Gaussian (MONAI's ``sliding_window_inference``), so the three places score
and serve the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import torch

    from minivess.planning.plan import TrainingPlan

#: Window blending mode (MONAI): Gaussian weights, so window borders count less.
BLEND_MODE = "gaussian"


def primary_output(output: Any) -> torch.Tensor:
    """The full-resolution prediction of a network output (eval mode).

    Deep-supervision networks return a list/tuple of heads, or a (B, heads, C, x, y, z) tensor
    in training mode; the first head is the full-resolution one.
    """
    if isinstance(output, (list, tuple)):
        output = output[0]
    if output.dim() == 6:  # (B, heads, C, x, y, z) deep supervision
        output = output[:, 0]
    return output


def sliding_window(
    image: torch.Tensor,
    plan: TrainingPlan,
    predictor: Callable[[torch.Tensor], Any],
    *,
    sw_batch_size: int | None = None,
    overlap: float | None = None,
) -> torch.Tensor:
    """Class logits (B, C, x, y, z) of ``image`` (B, 1, x, y, z), window by window.

    Args:
        image: normalised input, on the predictor's device.
        plan: gives ``sw_roi`` (voxels, x, y, z) and ``sw_overlap`` (fraction of a window).
        predictor: a network or any callable from a (N, 1, *roi) batch to logits; its output
            goes through :func:`primary_output`.
        sw_batch_size: windows per forward pass (default: the plan's ``sw_batch_size``).
        overlap: override of the plan's overlap (serving may trade accuracy for speed).
    """
    from monai.inferers import sliding_window_inference

    out = sliding_window_inference(
        image,
        roi_size=tuple(plan.sw_roi),
        sw_batch_size=sw_batch_size or plan.sw_batch_size,
        predictor=lambda x: primary_output(predictor(x)),
        overlap=plan.sw_overlap if overlap is None else overlap,
        mode=BLEND_MODE,
    )
    return cast("torch.Tensor", out)  # MONAI's return type is a union
