"""Export a trained network to a serving bundle (TorchScript + ONNX) and check their parity.

A serving bundle is a directory::

    plan.json     the TrainingPlan (sw_roi, sw_overlap, ...)
    model.ts      TorchScript (traced), for the torch backend
    weights.pt    the state dict, for the eager backend (network rebuilt from the plan)
    model.onnx    ONNX, batch and the three spatial axes dynamic, for ONNX Runtime
    export.json   the parity figures of the check below

The parity check runs the same sliding-window inference on a real volume with PyTorch and with
ONNX Runtime and compares them: maximum absolute logit difference and the Dice between the two
foreground masks. A Dice below :data:`MIN_PARITY_DICE` fails the export.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from minivess.errors import MinivessError
from minivess.serving.inference import (
    EXPORT_REPORT,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PLAN_FILE,
    SPACING_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    Segmenter,
    onnx_predictor,
    onnx_session,
    torch_predictor,
)
from minivess.serving.settings import Backend

if TYPE_CHECKING:
    from torch import nn

    from minivess.planning.plan import TrainingPlan

log = logging.getLogger(__name__)

#: Smallest acceptable Dice between the PyTorch and the ONNX Runtime masks.
MIN_PARITY_DICE = 0.99
#: ONNX opset of the export.
OPSET = 17


class ParityError(MinivessError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class ParityResult:
    """PyTorch vs ONNX Runtime on one volume (sliding window, same plan).

    Attributes:
        max_abs_diff: largest |logit_torch - logit_onnx| over all voxels and classes.
        dice: Dice of the two foreground masks (1.0 when both are empty).
        shape: (x, y, z) of the volume checked.
        torch_seconds / onnx_seconds: wall time of each inference.
    """

    max_abs_diff: float
    dice: float
    shape: tuple[int, int, int]
    torch_seconds: float
    onnx_seconds: float


@dataclass(frozen=True)
class ExportResult:
    """Paths of a serving bundle and its parity figures."""

    bundle: Path
    onnx_path: Path
    torchscript_path: Path
    plan_path: Path
    parity: ParityResult | None


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of the foreground (> 0) of two masks of equal shape; 1.0 when both are empty.

    The evaluation's :func:`minivess.evaluation.metrics.dice` (one Dice for the whole project).
    """
    from minivess.evaluation.metrics import dice as foreground_dice

    return foreground_dice(np.asarray(a) > 0, np.asarray(b) > 0)


def _example_input(plan: TrainingPlan):  # -> torch.Tensor
    import torch

    return torch.zeros((1, 1, *plan.sw_roi), dtype=torch.float32)


def export_torchscript(model: nn.Module, plan: TrainingPlan, out_path: Path) -> Path:
    """Trace ``model`` on a (1, 1, *sw_roi) input and save it to ``out_path``."""
    import torch

    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic are expected
        traced = torch.jit.trace(model, _example_input(plan), check_trace=False)
    torch.jit.save(traced, str(out_path))
    return Path(out_path)


def export_weights(model: nn.Module, plan: TrainingPlan, out_path: Path) -> Path:
    """The state dict (plus the number of output channels) for the ``eager`` backend."""
    import torch

    state = dict(model.state_dict())
    out_channels = getattr(model, "out_channels", None)
    if not isinstance(out_channels, int):  # networks that do not keep it: one forward pass
        with torch.no_grad():
            out = model(_example_input(plan))
        out_channels = int((out[0] if isinstance(out, (list, tuple)) else out).shape[1])
    state["__out_channels__"] = torch.tensor(int(out_channels))
    torch.save(state, str(out_path))
    return Path(out_path)


def export_onnx(model: nn.Module, plan: TrainingPlan, out_path: Path) -> Path:
    """Export ``model`` to ONNX with dynamic batch and spatial axes (x, y, z), opset 17.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and keeps
    the spatial axes symbolic, so one graph serves any window size the plan's divisors allow.
    """
    import onnx
    import torch

    model.eval()
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # instance-norm training-mode notes are expected
        torch.onnx.export(
            model,
            (_example_input(plan),),
            str(out_path),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: axes, ONNX_OUTPUT: axes},
            opset_version=OPSET,
        )
    onnx.checker.check_model(str(out_path))
    return Path(out_path)


def parity_check(
    model: nn.Module,
    onnx_path: Path,
    plan: TrainingPlan,
    volume: np.ndarray,
    min_dice: float = MIN_PARITY_DICE,
) -> ParityResult:
    """Compare PyTorch and ONNX Runtime sliding-window inference on ``volume`` (x, y, z).

    Raises:
        ParityError: the Dice between the two masks is below ``min_dice``.
    """
    torch_seg = Segmenter(torch_predictor(model), plan, Backend.TORCH)
    onnx_seg = Segmenter(onnx_predictor(onnx_session(onnx_path)), plan, Backend.ONNX)
    t0 = time.perf_counter()
    ref = torch_seg.logits(volume)
    t1 = time.perf_counter()
    got = onnx_seg.logits(volume)
    t2 = time.perf_counter()
    result = ParityResult(
        max_abs_diff=float(np.abs(ref - got).max()),
        dice=dice(ref.argmax(0), got.argmax(0)),
        shape=(int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2])),
        torch_seconds=t1 - t0,
        onnx_seconds=t2 - t1,
    )
    log.info(
        "parity torch vs onnx on %s: max |diff| %.3g, Dice %.5f",
        result.shape,
        result.max_abs_diff,
        result.dice,
    )
    if result.dice < min_dice:
        raise ParityError(
            f"{onnx_path}: ONNX and PyTorch masks disagree (Dice {result.dice:.4f} < {min_dice}, "
            f"max |diff| {result.max_abs_diff:.3g}); check for ops the ONNX exporter changes."
        )
    return result


def write_spacing(bundle: Path, target_spacing: Sequence[float] | None) -> Path:
    """Write the bundle's ``spacing.json``: ``{"target_spacing": [x, y, z] | null}``."""
    value = None if target_spacing is None else [float(v) for v in target_spacing]
    path = Path(bundle) / SPACING_FILE
    path.write_text(json.dumps({"target_spacing": value}) + "\n")
    return path


def export_bundle(
    model: nn.Module,
    plan: TrainingPlan,
    out_dir: Path,
    parity_volume: np.ndarray | None = None,
    target_spacing: tuple[float, float, float] | None = None,
) -> ExportResult:
    """Write a serving bundle for ``model`` to ``out_dir`` (see the module docstring).

    ``target_spacing`` (x, y, z, header units): the grid the model trained on when training
    resampled (``None``: native resolution). It is written to ``spacing.json``; serving then
    resamples each input to it and maps the mask back to the input's grid.

    Args:
        model: the trained network (moved to CPU, put in eval mode).
        plan: its training plan.
        out_dir: the bundle directory, created if missing; files in it are overwritten.
        parity_volume: a real (x, y, z) volume for :func:`parity_check`; ``None`` skips it.

    Raises:
        ParityError: see :func:`parity_check`.
    """
    model = model.cpu().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = plan.save(out / PLAN_FILE)
    write_spacing(out, target_spacing)
    ts_path = export_torchscript(model, plan, out / TORCHSCRIPT_FILE)
    export_weights(model, plan, out / WEIGHTS_FILE)
    onnx_path = export_onnx(model, plan, out / ONNX_FILE)
    log.info("exported %s and %s (plan %s)", ts_path.name, onnx_path.name, plan.plan_hash)
    parity = None
    if parity_volume is not None:
        parity = parity_check(model, onnx_path, plan, parity_volume)
    report = {
        "plan_hash": plan.plan_hash,
        "opset": OPSET,
        "parity": asdict(parity) if parity else None,
    }
    (out / EXPORT_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return ExportResult(out, onnx_path, ts_path, plan_path, parity)
