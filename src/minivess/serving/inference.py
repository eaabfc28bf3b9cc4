"""Sliding-window segmentation with a TorchScript/torch module or an ONNX Runtime session.

Both engines sit behind :class:`Segmenter`: ``segment(volume) -> mask``, where ``volume`` is a
(x, y, z) array of raw intensities and ``mask`` a (x, y, z) uint8 array of class indices. The
window size is the plan's ``sw_roi`` (x, y, z voxels); volumes smaller than the window are padded
by MONAI and cropped back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minivess.serving.preprocess import preprocess_for_inference
from minivess.serving.settings import Backend, Device, ServeSettings

if TYPE_CHECKING:
    import torch

    from minivess.planning.plan import TrainingPlan

log = logging.getLogger(__name__)

#: Names inside a serving bundle directory.
PLAN_FILE = "plan.json"
#: The training grid of a resampled model (``{"target_spacing": [x, y, z] | null}``).
SPACING_FILE = "spacing.json"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.ts"
WEIGHTS_FILE = "weights.pt"
EXPORT_REPORT = "export.json"
#: Input/output names of the ONNX graph.
ONNX_INPUT, ONNX_OUTPUT = "image", "logits"


class Segmenter:
    """Runs sliding-window inference with ``predictor`` (N, 1, x, y, z) -> (N, C, x, y, z).

    Args:
        predictor: maps a float32 torch tensor batch to logits.
        plan: the training plan (``sw_roi``, ``sw_overlap``).
        backend: the engine name, for logs and metrics.
        sw_batch_size: windows per forward pass; ``None`` uses ``plan.sw_batch_size``.
        sw_overlap: overlap in [0, 1); ``None`` uses ``plan.sw_overlap``.
        target_spacing: (x, y, z) header units of the grid the model trained on, when training
            resampled; inputs at another spacing are resampled to it and the mask is mapped
            back to the input's grid. ``None``: the model trained at native resolution.
    """

    def __init__(
        self,
        predictor: Callable[[torch.Tensor], torch.Tensor],
        plan: TrainingPlan,
        backend: Backend,
        sw_batch_size: int | None = None,
        sw_overlap: float | None = None,
        target_spacing: tuple[float, float, float] | None = None,
    ) -> None:
        self.predictor = predictor
        self.target_spacing = target_spacing
        self.plan = plan
        self.backend = backend
        self.sw_batch_size = plan.sw_batch_size if sw_batch_size is None else sw_batch_size
        self.sw_overlap = plan.sw_overlap if sw_overlap is None else sw_overlap

    def logits(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Class logits (C, x, y, z) float32 of a raw (x, y, z) volume, on the volume's grid.

        ``spacing``: the volume's (x, y, z) voxel size in header units. For a model trained on
        a resampled grid the volume is resampled to it first and the logits are mapped back;
        ``None`` means the volume is already on the model's grid.
        """
        from minivess.data.grid import needs_resampling, resampled_shape, to_shape

        if volume.ndim != 3:
            raise ValueError(f"expected a (x, y, z) volume, got shape {volume.shape}")
        if spacing is None or self.target_spacing is None:
            return self._logits(volume)
        if not needs_resampling(spacing, self.target_spacing):
            return self._logits(volume)
        grid = resampled_shape(volume.shape, spacing, self.target_spacing)
        logits = self._logits(to_shape(volume, grid))
        return to_shape(logits, volume.shape)

    def _logits(self, volume: np.ndarray) -> np.ndarray:
        import torch

        from minivess.models.sliding import sliding_window

        image = torch.from_numpy(preprocess_for_inference(volume))[None, None]
        with torch.inference_mode():
            logits = sliding_window(
                image, self.plan, self.predictor,
                sw_batch_size=self.sw_batch_size, overlap=self.sw_overlap,
            )  # fmt: skip
        return logits[0].float().numpy()

    def segment(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Mask (x, y, z) uint8 of class indices (argmax over the logits), on the input's grid;
        ``spacing`` as in :meth:`logits`."""
        return np.argmax(self.logits(volume, spacing), axis=0).astype(np.uint8)


def torch_predictor(module: Any, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap an ``nn.Module`` / TorchScript module as a predictor (eval mode, no grad).

    On ``cuda`` the module is moved there once; each batch goes there and back."""
    import torch

    from minivess.models.sliding import primary_output

    module.eval()
    if device != "cpu":
        module.to(device)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = primary_output(module(batch.to(device)))
        return out.cpu() if device != "cpu" else out

    return predict


def onnx_providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime execution providers for ``device`` (CUDA falls back to CPU for odd ops)."""
    if device == Device.CUDA.value:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(path: Path, num_threads: int | None = None, device: str = "cpu") -> Any:
    """An ONNX Runtime session for ``path`` (CPU, or the CUDA provider).

    Its intra-op threads are ``num_threads``, else torch's count (``OMP_NUM_THREADS``, else the
    physical cores; ONNX Runtime alone ignores that variable and takes every core), so the
    backends are measured and served on the same number of threads.
    """
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=onnx_providers(device))


def eager_module(bundle: Path, plan: TrainingPlan) -> Any:
    """The network rebuilt from ``plan`` with the bundle's state dict (plain PyTorch)."""
    import torch

    from minivess.models import build_model

    state = torch.load(bundle / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    out_channels = int(state.pop("__out_channels__", torch.tensor(2)).item())
    model = build_model(plan, in_channels=1, out_channels=out_channels)
    model.load_state_dict(state)
    return model.eval()


def onnx_predictor(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap an ONNX Runtime session as a predictor."""
    import torch

    def predict(batch: torch.Tensor) -> torch.Tensor:
        out = session.run([ONNX_OUTPUT], {ONNX_INPUT: batch.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)

    return predict


def load_segmenter(settings: ServeSettings) -> Segmenter:
    """Build the :class:`Segmenter` of the bundle ``settings.model_path`` with its backend.

    Raises:
        ConfigError: no model path, or the bundle lacks the file the backend needs.
    """
    import torch

    from minivess.errors import ConfigError
    from minivess.planning.plan import TrainingPlan

    bundle = settings.require_model_path()
    plan_path = bundle / PLAN_FILE
    model_file = (
        bundle
        / {
            Backend.ONNX: ONNX_FILE,
            Backend.TORCH: TORCHSCRIPT_FILE,
            Backend.EAGER: WEIGHTS_FILE,
        }[settings.backend]
    )
    for needed in (plan_path, model_file):
        if not needed.is_file():
            raise ConfigError(
                f"{needed}: missing from the serving bundle; export one with "
                "minivess.serving.export.export_bundle (minivess serve --model-uri does it)."
            )
    plan = TrainingPlan.load(plan_path)
    target_spacing = read_spacing(bundle)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = settings.device.value
    if settings.backend is Backend.ONNX:
        predictor = onnx_predictor(onnx_session(model_file, settings.num_threads, device))
    elif settings.backend is Backend.TORCH:
        predictor = torch_predictor(torch.jit.load(str(model_file), map_location="cpu"), device)
    else:
        predictor = torch_predictor(eager_module(bundle, plan), device)
    segmenter = Segmenter(
        predictor, plan, settings.backend, settings.sw_batch_size, settings.sw_overlap,
        target_spacing=target_spacing,
    )  # fmt: skip
    log.info(
        "serving %s with %s on %s: roi %s, overlap %s, %s windows per forward (plan %s)",
        bundle,
        settings.backend.value,
        device,
        plan.sw_roi,
        segmenter.sw_overlap,
        segmenter.sw_batch_size,
        plan.plan_hash,
    )
    if target_spacing is not None:
        log.info("model trained at spacing %s: inputs are resampled to it", target_spacing)
    return segmenter


def read_spacing(bundle: Path) -> tuple[float, float, float] | None:
    """The training grid's spacing of a bundle (``spacing.json``); None when trained natively
    or when the bundle predates the file."""
    import json

    path = Path(bundle) / SPACING_FILE
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("target_spacing")
    if value is None:
        return None
    return float(value[0]), float(value[1]), float(value[2])
