"""Sliding-window inference with both backends, through the bundle loader."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from minivess.errors import ConfigError
from minivess.serving.inference import ONNX_FILE, load_segmenter
from minivess.serving.nifti import load_volume
from minivess.serving.preprocess import preprocess_for_inference
from minivess.serving.settings import Backend, ServeSettings


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_backends_agree_and_keep_the_shape(bundle, volume_path) -> None:
    volume = load_volume(volume_path, 10**7).array
    masks = {}
    for backend in Backend:
        seg = load_segmenter(ServeSettings(model_path=bundle.bundle, backend=backend))
        masks[backend] = seg.segment(volume)
        assert masks[backend].shape == volume.shape
        assert masks[backend].dtype == np.uint8
    np.testing.assert_array_equal(masks[Backend.ONNX], masks[Backend.TORCH])


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_volume_smaller_than_the_window(bundle) -> None:
    seg = load_segmenter(ServeSettings(model_path=bundle.bundle))
    small = np.random.default_rng(0).random((20, 12, 5), dtype=np.float32)
    assert seg.segment(small).shape == (20, 12, 5)


def test_serving_sees_the_voxels_trainings_pipeline_gives_the_network(volume_path) -> None:
    """The same NIfTI file through training's deterministic steps and through serving's load
    plus preprocessing: the same float32 voxels, bit for bit."""
    from minivess.training.config import ResamplingConfig
    from minivess.training.transforms import load_transforms

    item: dict = {"image": str(volume_path)}
    for step in load_transforms(ResamplingConfig(), with_label=False):
        item = step(item)
    trained = np.asarray(item["image"])[0]
    served = preprocess_for_inference(load_volume(volume_path, 10**7).array)
    assert served.dtype == np.float32 and served.shape == trained.shape
    np.testing.assert_array_equal(served, trained)
    assert abs(float(served.mean())) < 1e-4 and float(served.std()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_missing_model_file_names_it(bundle, tmp_path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(bundle.bundle, partial)
    (partial / ONNX_FILE).unlink()
    with pytest.raises(ConfigError, match=r"model\.onnx: missing"):
        load_segmenter(ServeSettings(model_path=partial))


def test_onnx_runtime_takes_torchs_thread_count_unless_told(tmp_path) -> None:
    """ONNX Runtime ignores OMP_NUM_THREADS and takes every core; the session follows torch's
    count (which honours it), so the capacity plan times both backends on the same threads."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    from minivess.serving.inference import onnx_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert onnx_session(path).get_session_options().intra_op_num_threads == 3
        assert onnx_session(path, num_threads=5).get_session_options().intra_op_num_threads == 5
    finally:
        torch.set_num_threads(before)


SERVE_WITHOUT_MONAI = """
import sys
import numpy as np
from minivess.serving.inference import load_segmenter
from minivess.serving.settings import ServeSettings
seg = load_segmenter(ServeSettings(model_path=sys.argv[1], backend="onnx"))
mask = seg.segment(np.random.default_rng(0).random((64, 48, 10), dtype=np.float32))
print(mask.shape, sorted(m for m in ("monai", "mlflow", "pandas", "skimage") if m in sys.modules))
"""


def test_an_onnx_serving_process_segments_without_importing_monai(bundle) -> None:
    """A replica's warm-up and requests never load MONAI (nor what MONAI pulls in)."""
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_MONAI, str(bundle.bundle)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "(64, 48, 10) []"
