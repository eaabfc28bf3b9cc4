"""Export and parity on CPU: TorchScript, ONNX with dynamic spatial axes, ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from serving_factories import make_model

from minivess.serving.export import ParityError, dice, export_onnx, parity_check
from minivess.serving.inference import EXPORT_REPORT, ONNX_INPUT


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_onnx_parity_on_a_real_volume(bundle, volume_path) -> None:
    assert bundle.parity is not None
    assert bundle.parity.dice >= 0.99
    assert bundle.parity.max_abs_diff < 1e-3
    assert bundle.parity.shape == (64, 48, 10)
    report = json.loads((bundle.bundle / EXPORT_REPORT).read_text())
    assert report["parity"]["dice"] == bundle.parity.dice


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_onnx_has_dynamic_spatial_axes_and_matches_torch_off_window(bundle, model) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    graph_input = onnx.load(str(bundle.onnx_path)).graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "x", "y", "z"]
    x = torch.randn(2, 1, 48, 40, 5)  # not the traced 32×32×8 window
    sess = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {ONNX_INPUT: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == ref.shape == (2, 2, 48, 40, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_torchscript_matches_torch(bundle, model) -> None:
    import torch

    ts = torch.jit.load(str(bundle.torchscript_path))
    x = torch.randn(1, 1, 32, 32, 8)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # export + ONNX Runtime sessions: several seconds on 2 cores
def test_parity_fails_loudly_when_onnx_is_another_network(tmp_path, plan, volume_path) -> None:
    from minivess.serving.nifti import load_volume

    other = export_onnx(make_model(plan, seed=1), plan, tmp_path / "other.onnx")
    volume = load_volume(volume_path, 10**7).array
    with pytest.raises(ParityError, match=r"Dice .* < 0.99"):
        parity_check(make_model(plan, seed=2), other, plan, volume)


def test_dice() -> None:
    a = np.array([0, 1, 1, 0])
    assert dice(a, a) == 1.0
    assert dice(a, 1 - a) == 0.0
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    assert dice(a, np.array([0, 1, 0, 0])) == pytest.approx(2 / 3)
