"""The synthetic MiniVess-like dataset: statistics, determinism, layout, voxels."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from minivess.data.synth import synthesize, volume_specs


def test_full_scale_specs_mimic_minivess() -> None:
    specs = volume_specs("full", seed=0)
    zs = [s.shape[2] for s in specs]
    assert [s.name for s in specs] == [f"mv{i:02d}" for i in range(1, 71)]
    assert all(s.shape[:2] == (512, 512) for s in specs)
    assert (min(zs), max(zs)) == (5, 110)
    assert zs.count(5) == 1 and zs.count(110) == 1
    assert 18 <= statistics.median(zs) <= 26
    mv02 = specs[1]
    assert mv02.spacing[0] == pytest.approx(4.97)
    others = [s for s in specs if s.name != "mv02"]
    assert all(0.3 <= s.spacing[0] <= 1.2 and s.spacing[2] > s.spacing[0] for s in others)


@pytest.mark.parametrize("seed", [0, 7])
def test_small_scale_is_small_and_has_a_z5_volume(seed: int) -> None:
    specs = volume_specs(seed=seed)
    assert len(specs) == 6
    assert min(s.shape[2] for s in specs) == 5
    assert all(64 <= s.shape[0] <= 128 and s.shape[2] <= 24 for s in specs)


def test_specs_are_deterministic_and_seeded() -> None:
    assert volume_specs("full", seed=3) == volume_specs("full", seed=3)
    assert volume_specs("full", seed=3) != volume_specs("full", seed=4)
    assert [s.name for s in volume_specs("full", n_volumes=5)] == [f"mv0{i}" for i in range(1, 6)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        volume_specs("huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_volumes"):
        volume_specs(n_volumes=0)


def test_written_volumes_match_specs(small_dataset: Path) -> None:
    for spec in volume_specs():
        img = nib.load(small_dataset / "raw" / f"{spec.name}.nii.gz")
        lab = nib.load(small_dataset / "seg" / f"{spec.name}_y.nii.gz")
        assert img.shape == lab.shape == spec.shape
        assert np.allclose(img.header.get_zooms(), spec.spacing, rtol=1e-5)
        assert np.allclose(np.diag(img.affine)[:3], spec.spacing, rtol=1e-5)
        image = np.asanyarray(img.dataobj)
        label = np.asanyarray(lab.dataobj)
        assert image.dtype == np.uint16 and label.dtype == np.uint8
        assert set(np.unique(label)) == {0, 1}
        assert 0.005 < label.mean() < 0.10  # a few % foreground
        # vessels are brighter than background, and there is noise everywhere
        assert image[label == 1].mean() > 1.5 * image[label == 0].mean()
        assert image[label == 0].std() > 10
        meta = json.loads((small_dataset / "json" / f"{spec.name}.json").read_text())
        assert meta["shape_xyz"] == list(spec.shape)


def test_same_seed_same_voxels(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", n_volumes=2, seed=5, progress=False)
    b = synthesize(tmp_path / "b", n_volumes=2, seed=5, progress=False, workers=2)
    for pa, pb in zip(a, b, strict=True):
        va = np.asanyarray(nib.load(pa.label).dataobj)
        vb = np.asanyarray(nib.load(pb.label).dataobj)
        assert np.array_equal(va, vb)
        ia = np.asanyarray(nib.load(pa.image).dataobj)
        ib = np.asanyarray(nib.load(pb.image).dataobj)
        assert np.array_equal(ia, ib)
