"""Each trained member as an MLflow model: a pyfunc flavour wrapping the sliding-window segmenter.

The logged model holds one artifact, the member's ``best.pt`` (which embeds its plan), plus
MLflow's ``MLmodel`` with a tensor signature and an input example. Anyone with MLflow loads it
the way MLflow users do::

    import mlflow, nibabel as nib, numpy as np
    model = mlflow.pyfunc.load_model("models:/minivess-segmenter@champion")
    volume = np.asarray(nib.load("vol.nii.gz").dataobj, dtype=np.float32)  # (x, y, z)
    mask = model.predict(volume)  # (x, y, z) uint8, 1 = vessel

The registry points at the member's logged model itself (no extra copy of the checkpoint).
Import this module lazily (it imports mlflow).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.pyfunc import PythonModel

#: Name of the logged model inside a train run (and of the one soup model of an analysis run).
MODEL_NAME = "segmenter"
#: Key of the checkpoint in the logged model's artifacts (``artifacts/best.pt`` in its folder).
CHECKPOINT_ARTIFACT = "checkpoint"
#: Shape (x, y, z) of the input example stored with the model: small, so logging stays cheap.
EXAMPLE_SHAPE = (16, 16, 4)
#: Packages the model needs at load time, pinned to the versions that logged it.
RUNTIME_PACKAGES = ("minivess", "torch", "monai", "numpy")


class SegmenterModel(PythonModel):
    """``predict(volume)``: a (x, y, z) float array of raw intensities -> (x, y, z) uint8 mask,
    by sliding-window inference with the plan's window and overlap (torch on CPU)."""

    def load_context(self, context: Any) -> None:
        from minivess.serving.inference import Segmenter, torch_predictor
        from minivess.serving.settings import Backend
        from minivess.training.checkpoint import load_model

        net, plan = load_model(context.artifacts[CHECKPOINT_ARTIFACT])
        self._segmenter = Segmenter(torch_predictor(net), plan, Backend.TORCH)

    # No type hints on predict: MLflow would try to infer a signature from them; ours is given.
    def predict(self, context, model_input, params=None):
        volume = np.asarray(model_input, dtype=np.float32)
        return self._segmenter.segment(volume)


def signature() -> Any:
    """Tensor signature: float32 (x, y, z) of any size in, uint8 (x, y, z) mask out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
    )


def input_example() -> np.ndarray:
    """A small synthetic volume: a bright tube on a dim background (float32, EXAMPLE_SHAPE)."""
    x, y, _ = np.meshgrid(*[np.arange(n) for n in EXAMPLE_SHAPE], indexing="ij")
    tube = ((x - EXAMPLE_SHAPE[0] / 2) ** 2 + (y - EXAMPLE_SHAPE[1] / 2) ** 2) < 9
    return np.where(tube, 200.0, 20.0).astype(np.float32)


def pip_requirements() -> list[str]:
    """The runtime packages, pinned to what is installed (inferring them costs a subprocess)."""
    out = []
    for pkg in RUNTIME_PACKAGES:
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(pkg)
    return out


def log_segmenter(checkpoint: Path, *, name: str = MODEL_NAME) -> Any:
    """Log ``checkpoint`` (a local ``best.pt``) as a pyfunc model of the active run.

    Returns:
        mlflow's ``ModelInfo`` (``model_uri`` is ``models:/<model_id>``).
    """
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=SegmenterModel(),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=signature(),
        input_example=input_example(),
        pip_requirements=pip_requirements(),
    )


def checkpoint_in(model_dir: Path) -> Path:
    """The checkpoint inside a downloaded logged-model folder.

    Raises:
        FileNotFoundError: naming the folder, when it holds no ``*.pt``.
    """
    found = sorted(Path(model_dir).rglob("*.pt"))
    if not found:
        raise FileNotFoundError(f"{model_dir}: no checkpoint (*.pt) in the logged model")
    return found[0]
