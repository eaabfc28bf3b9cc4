"""Validation: every broken input is quarantined with its one-line reason; the rest goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_badfiles import BAD_CASES, write_pair

from minivess.data.gate import validate_dataset
from minivess.data.profiler import profile_dataset
from minivess.data.schema import VolumePair
from minivess.data.validation import load_checked, validate_pair
from minivess.errors import DataError


@pytest.mark.parametrize("workers", [1, 2])
def test_each_bad_input_is_quarantined_with_its_reason(bad_dataset: Path, workers: int) -> None:
    profile = profile_dataset(bad_dataset, workers=workers, progress=False)

    reasons = {Path(r.file).name.split(".")[0]: r.reason for r in profile.rejected}
    for name, (_, fragment) in BAD_CASES.items():
        assert name in reasons, f"{name} was not rejected"
        assert fragment in reasons[name], f"{name}: {reasons[name]!r} lacks {fragment!r}"
    assert "not a NIfTI file name" in reasons["readme"]
    for reason in reasons.values():
        assert "\n" not in reason and "Traceback" not in reason
    # the good volumes and the squeezable 4D one are still profiled
    assert [v.name for v in profile.volumes] == ["mv01", "mv02", "ok4d"]
    assert profile.n_volumes == 3
    assert any("quarantined" in w for w in profile.warnings)


def test_singleton_4th_axis_is_squeezed_and_says_so(bad_dataset: Path) -> None:
    loaded = load_checked(
        VolumePair(
            name="ok4d",
            image=str(bad_dataset / "raw" / "ok4d.nii.gz"),
            label=str(bad_dataset / "seg" / "ok4d_y.nii.gz"),
        )
    )
    assert loaded.image.shape == loaded.label.shape == (24, 20, 6)
    assert any("squeezed" in w for w in loaded.warnings)


def test_loaded_voxels_are_the_stored_ones(small_dataset: Path) -> None:
    pair = VolumePair(
        name="mv01",
        image=str(small_dataset / "raw" / "mv01.nii.gz"),
        label=str(small_dataset / "seg" / "mv01_y.nii.gz"),
    )
    loaded = load_checked(pair)
    assert np.array_equal(loaded.image, np.asanyarray(nib.load(pair.image).dataobj))
    assert np.array_equal(loaded.label, np.asanyarray(nib.load(pair.label).dataobj))


def test_scaled_images_are_read_like_nibabel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(10, 8, 4)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([0.7, 0.7, 2.0, 1.0]))  # the affine write_pair uses
    img.header.set_slope_inter(0.5, 10.0)
    path = write_pair(tmp_path, "scaled", data, np.zeros((10, 8, 4), np.uint8))
    img.to_filename(path)
    pair = VolumePair(name="scaled", image=str(path), label=str(tmp_path / "seg/scaled_y.nii.gz"))
    image = load_checked(pair).image
    assert np.allclose(image, np.asanyarray(nib.load(path).dataobj))


def test_validate_pair_ok_and_not_ok(bad_dataset: Path) -> None:
    good = VolumePair(
        name="mv01",
        image=str(bad_dataset / "raw" / "mv01.nii.gz"),
        label=str(bad_dataset / "seg" / "mv01_y.nii.gz"),
    )
    assert validate_pair(good) is None
    nan = good.model_copy(
        update={
            "image": str(bad_dataset / "raw" / "bad_nan.nii.gz"),
            "label": str(bad_dataset / "seg" / "bad_nan_y.nii.gz"),
        }
    )
    rejected = validate_pair(nan)
    assert rejected is not None and "NaN/Inf" in rejected.reason


def test_gate_returns_usable_pairs(bad_dataset: Path) -> None:
    usable, rejected = validate_dataset(bad_dataset, workers=1, progress=False)
    assert [p.name for p in usable] == ["mv01", "mv02", "ok4d"]
    assert all(Path(p.image).is_file() and Path(p.label).is_file() for p in usable)
    assert len(rejected) == len(BAD_CASES) + 1  # + readme.txt


def test_gate_refuses_a_dataset_with_no_usable_volume(tmp_path: Path) -> None:
    for name in ("bad_nan", "bad_labels"):
        BAD_CASES[name][0](tmp_path, name)
    with pytest.raises(DataError) as err:
        validate_dataset(tmp_path, workers=1, progress=False)
    message = str(err.value)
    assert "no usable volume" in message and "NaN/Inf" in message and "\n" not in message


def test_declared_classes_allow_multiclass_labels(small_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    shutil.copy(small_dataset / "raw" / "mv01.nii.gz", tmp_path / "imagesTr" / "c1_0000.nii.gz")
    lab = nib.load(small_dataset / "seg" / "mv01_y.nii.gz")
    three = np.asanyarray(lab.dataobj).copy()
    three[:5, :5, :] = 2
    nib.Nifti1Image(three, lab.affine, lab.header).to_filename(tmp_path / "labelsTr/c1.nii.gz")
    meta = {"labels": {"background": 0, "vessel": 1}}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"values \{2\} outside the classes \[0, 1\]"):
        validate_dataset(tmp_path, workers=1, progress=False)
    meta["labels"]["artery"] = 2
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    usable, rejected = validate_dataset(tmp_path, workers=1, progress=False)
    assert [p.name for p in usable] == ["c1"] and rejected == []


def test_float_labels_with_integer_values_are_accepted(tmp_path: Path) -> None:
    label = np.zeros((24, 20, 6), np.float32)
    label[2:6, 2:6, :] = 1.0
    write_pair(tmp_path, "f", np.ones((24, 20, 6), np.float32) * 3, label)
    usable, rejected = validate_dataset(tmp_path, workers=1, progress=False)
    assert [p.name for p in usable] == ["f"] and rejected == []


def test_reader_works_without_isal(bad_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """isal only speeds reading up: with it unimportable, zlib gives the same answers."""
    import sys

    monkeypatch.setitem(sys.modules, "isal", None)  # makes `from isal import ...` fail
    good = VolumePair(
        name="mv01",
        image=str(bad_dataset / "raw" / "mv01.nii.gz"),
        label=str(bad_dataset / "seg" / "mv01_y.nii.gz"),
    )
    assert np.array_equal(load_checked(good).image, np.asanyarray(nib.load(good.image).dataobj))
    for name in ("bad_gzip", "bad_trunc"):
        broken = VolumePair(
            name=name,
            image=str(bad_dataset / "raw" / f"{name}.nii.gz"),
            label=str(bad_dataset / "seg" / f"{name}_y.nii.gz"),
        )
        rejected = validate_pair(broken)
        assert rejected is not None and BAD_CASES[name][1] in rejected.reason


@pytest.mark.parametrize(
    ("values", "ok"), [((0, 1), True), ((-1, 0, 1), False), ((0, 1, 3), False)]
)
def test_signed_integer_labels(tmp_path: Path, values: tuple[int, ...], ok: bool) -> None:
    label = np.zeros((24, 20, 6), np.int16)
    for i, v in enumerate(values):
        label[i, 0, 0] = v
    write_pair(tmp_path, "s", np.ones((24, 20, 6), np.uint16), label)
    pair = VolumePair(
        name="s", image=str(tmp_path / "raw/s.nii.gz"), label=str(tmp_path / "seg/s_y.nii.gz")
    )
    rejected = validate_pair(pair)
    assert (rejected is None) == ok
    if not ok:
        assert "outside the classes [0, 1]" in rejected.reason


def test_broken_link_is_quarantined(tiny_dataset: Path) -> None:
    (tiny_dataset / "raw" / "mv09.nii.gz").symlink_to(tiny_dataset / "nowhere.nii.gz")
    (tiny_dataset / "seg" / "mv09_y.nii.gz").symlink_to(tiny_dataset / "seg" / "mv01_y.nii.gz")
    profile = profile_dataset(tiny_dataset, workers=1, progress=False)
    reasons = {Path(r.file).name: r.reason for r in profile.rejected}
    assert "mv09.nii.gz is not readable" in reasons["mv09.nii.gz"]
    assert [v.name for v in profile.volumes] == ["mv01", "mv02", "mv03"]


@pytest.mark.parametrize("bad", [0.5, 1.25, -0.5])
def test_non_integer_label_values_are_quarantined(tmp_path: Path, bad: float) -> None:
    label = np.zeros((24, 20, 6), np.float32)
    label[2:6, 2:6, :] = 1.0
    label[10, 10, 3] = bad  # one voxel is enough
    write_pair(tmp_path, "f", np.ones((24, 20, 6), np.float32) * 3, label)
    write_pair(tmp_path, "g", np.ones((24, 20, 6), np.float32) * 3, np.round(label))
    usable, rejected = validate_dataset(tmp_path, workers=1, progress=False)
    assert [p.name for p in usable] == ["g"]
    assert len(rejected) == 1 and Path(rejected[0].file).name.startswith("f")
    assert "non-integer values" in rejected[0].reason
