"""Resampling end to end: train on a resampled grid -> the checkpoint and the serving bundle record
the spacing -> serving resamples the input and returns the mask on the input's grid ->
evaluation scores against the original labels on the original grid."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TARGET = (1.0, 1.0, 1.0)  # the tiny data are (1, 1, 2): training doubles z


def test_train_resampled_then_serve_maps_the_mask_to_the_input_grid(
    tiny_data: Path, tmp_path: Path, plan_factory
) -> None:
    import nibabel as nib

    from minivess.data.synth import LABEL_SUFFIX, NIFTI_EXT, SEG_DIR
    from minivess.evaluation import evaluate
    from minivess.evaluation.metrics import dice
    from minivess.serving.inference import load_segmenter, read_spacing
    from minivess.serving.local import bundle_for
    from minivess.serving.settings import ServeSettings
    from minivess.training import train
    from minivess.training.checkpoint import checkpoint_meta, target_spacing
    from minivess.training.config import ResamplingConfig, TrainConfig

    resampling = ResamplingConfig(enabled=True, method="spacing", target_spacing=TARGET)
    cfg = TrainConfig(epochs=1, checkpoint_dir=str(tmp_path / "ck"), resampling=resampling)
    summary = train(tiny_data, plan_factory(), cfg, progress=False)
    assert target_spacing(checkpoint_meta(summary.checkpoint)) == TARGET

    bundle = bundle_for(summary.checkpoint, tmp_path / "serve")
    assert read_spacing(bundle) == TARGET
    seg = load_segmenter(ServeSettings(model_path=bundle, backend="onnx"))
    assert seg.target_spacing == TARGET

    calls: list[tuple[int, ...]] = []
    predictor = seg.predictor
    seg.predictor = lambda batch: (calls.append(tuple(batch.shape)), predictor(batch))[1]

    image_file = sorted((tiny_data / "raw").glob("*.nii*"))[0]
    img = nib.load(image_file)
    volume = np.asarray(img.dataobj, dtype=np.float32)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    assert spacing != TARGET

    mask = seg.segment(volume, spacing=spacing)
    assert mask.shape == volume.shape  # back on the input grid
    resampled_windows = len(calls)
    calls.clear()
    seg.segment(volume)  # spacing unknown: taken as the model's grid, no resampling
    assert resampled_windows > len(calls)  # twice the slices: more windows along z

    # evaluation scores on the original grid, against the original label
    report = evaluate(tiny_data, [summary.checkpoint], tmp_path / "eval")
    name = report.members[0].name
    name_of = image_file.name.removesuffix(NIFTI_EXT)
    label_file = tiny_data / SEG_DIR / f"{name_of}{LABEL_SUFFIX}{NIFTI_EXT}"
    label = np.asarray(nib.load(label_file).dataobj) > 0.5
    served = dice(mask == 1, label)
    with open(report.per_volume_csv) as fh:
        rows = {r["volume"]: r for r in csv.DictReader(fh) if r["model"] == name}
    assert float(rows[name_of]["dice"]) == pytest.approx(served, abs=0.05)
