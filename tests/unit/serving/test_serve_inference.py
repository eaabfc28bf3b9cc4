"""Sliding-window inference with both backends, through the bundle loader."""

from __future__ import annotations

import shutil

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


def test_preprocessing_is_trainings_normalisation() -> None:
    raw = np.random.default_rng(1).random((10, 9, 4), dtype=np.float32) * 500 + 40
    out = preprocess_for_inference(raw)
    assert out.shape == raw.shape
    assert abs(float(out.mean())) < 1e-4
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)


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
