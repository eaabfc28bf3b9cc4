"""The one sliding-window inference: training validation, evaluation and serving all call it.

Windows are the plan's ``sw_roi`` with its ``sw_overlap``, ``sw_batch_size`` of them per forward
pass, blended with a Gaussian, so the three places score and serve the same way.

The algorithm is MONAI's ``sliding_window_inference`` with ``mode="gaussian"`` (the same window
grid, importance map, accumulation order and padding; tests/unit/models/test_sliding.py checks
it against MONAI's), in plain torch: ``import monai`` loads every MONAI subpackage, and with
them mlflow, pandas, scipy and scikit-image, which doubled a serving replica's CPU time before
its first answer (``benchmarks/serve_start.py``; docs/benchmarks.md, "Stop 24"). Serving needs
none of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from minivess.planning.plan import TrainingPlan

#: Gaussian window weights: sigma = this x the window's size along each axis (MONAI's default).
SIGMA_SCALE = 0.125
#: The smallest weight of a window (MONAI's floor, so an edge voxel is never divided by zero).
MIN_WEIGHT = 1e-3


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


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start voxels of the windows along one axis of ``size`` voxels (``size >= roi``): a step of
    ``roi x (1 - overlap)`` (at least 1), the last window flush with the end."""
    step = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    count = next((d + 1 for d in range(math.ceil(size / step)) if d * step + roi >= size), 1)
    return [min(d * step, size - roi) for d in range(count)]


def gaussian_weights(roi: Sequence[int], device: Any = None, dtype: Any = None) -> torch.Tensor:
    """The (x, y, z) weight of each voxel of a window: a separable Gaussian with peak 1 and sigma
    :data:`SIGMA_SCALE` x the window's size, floored at :data:`MIN_WEIGHT`."""
    import torch

    weights: torch.Tensor | None = None
    for size in roi:
        x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float, device=device)
        axis = torch.exp(x**2 / (-2 * (size * SIGMA_SCALE) ** 2))
        weights = axis if weights is None else weights.unsqueeze(-1) * axis
    assert weights is not None, "a window has at least one axis"
    floor = max(torch.min(weights).item(), MIN_WEIGHT)
    return torch.clamp_(weights, min=floor).to(dtype or torch.float)


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
    import torch
    import torch.nn.functional as F

    image = image.as_subclass(torch.Tensor)  # a MONAI MetaTensor's metadata plays no part
    roi = tuple(int(r) for r in plan.sw_roi)
    overlap = plan.sw_overlap if overlap is None else overlap
    per_pass = sw_batch_size or plan.sw_batch_size
    if image.dim() != len(roi) + 2 or image.shape[0] == 0:
        raise ValueError(f"image of shape {tuple(image.shape)}: want (B >= 1, C, {len(roi)} axes)")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap {overlap} must be in [0, 1)")
    if per_pass < 1:
        raise ValueError(f"windows per forward pass {per_pass} must be >= 1")
    batch, size = image.shape[0], tuple(image.shape[2:])
    # An axis shorter than the window is zero-padded, half before and half after (MONAI's order:
    # F.pad lists the last axis first).
    short = [max(r - n, 0) for n, r in zip(size, roi, strict=True)]
    pads = [(d // 2, d - d // 2) for d in short]
    if any(any(p) for p in pads):
        image = F.pad(image, [v for pad in reversed(pads) for v in pad])
    full = tuple(max(n, r) for n, r in zip(size, roi, strict=True))
    windows = [
        tuple(slice(a, a + r) for a, r in zip(starts, roi, strict=True))
        for starts in itertools.product(
            *(window_starts(n, r, overlap) for n, r in zip(full, roi, strict=True))
        )
    ]
    weight = gaussian_weights(roi, device=image.device, dtype=image.dtype)[None, None]
    out: torch.Tensor | None = None
    for first in range(0, len(windows) * batch, per_pass):
        todo = range(first, min(first + per_pass, len(windows) * batch))
        where = [(i // len(windows), windows[i % len(windows)]) for i in todo]
        inputs = torch.cat([image[(slice(b, b + 1), slice(None), *w)] for b, w in where])
        logits = primary_output(predictor(inputs))
        if tuple(logits.shape[2:]) != roi:
            raise ValueError(f"the predictor returned {tuple(logits.shape)} for windows {roi}")
        if out is None:
            out = torch.zeros(
                (batch, logits.shape[1], *full), dtype=image.dtype, device=image.device
            )
            count = torch.zeros((1, 1, *full), dtype=image.dtype, device=image.device)
            for w in windows:
                count[(slice(None), slice(None), *w)] += weight
        weighted = (logits * weight).to(logits.dtype)
        for (b, w), one in zip(where, weighted, strict=True):
            out[(slice(b, b + 1), slice(None), *w)] += one
    assert out is not None  # B >= 1: at least one window ran
    out /= count
    return out[
        (
            slice(None),
            slice(None),
            *(slice(p[0], p[0] + n) for p, n in zip(pads, size, strict=True)),
        )
    ]
