"""Discovery of image/label pairs in the MiniVess and nnU-Net/Decathlon layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from minivess.data.discovery import declared_classes, discover_pairs
from minivess.errors import DataError


def test_minivess_layout(small_dataset: Path) -> None:
    pairs, rejected = discover_pairs(small_dataset)
    assert rejected == []
    assert [p.name for p in pairs] == [f"mv0{i}" for i in range(1, 7)]
    assert pairs[0].label == str(small_dataset / "seg" / "mv01_y.nii.gz")


def test_image_without_label_and_non_nifti_are_rejected(tiny_dataset: Path) -> None:
    (tiny_dataset / "seg" / "mv02_y.nii.gz").unlink()
    (tiny_dataset / "raw" / "notes.txt").write_text("not an image")
    pairs, rejected = discover_pairs(tiny_dataset)
    assert [p.name for p in pairs] == ["mv01", "mv03"]
    reasons = {Path(r.file).name: r.reason for r in rejected}
    assert "no label" in reasons["mv02.nii.gz"]
    assert "not a NIfTI" in reasons["notes.txt"]


def _to_nnunet(src: Path, dst: Path, channel_suffix: bool) -> None:
    (dst / "imagesTr").mkdir(parents=True)
    (dst / "labelsTr").mkdir()
    for img in sorted((src / "raw").glob("*.nii.gz")):
        case = img.name.removesuffix(".nii.gz")
        name = f"{case}_0000.nii.gz" if channel_suffix else img.name
        shutil.copy(img, dst / "imagesTr" / name)
        shutil.copy(src / "seg" / f"{case}_y.nii.gz", dst / "labelsTr" / f"{case}.nii.gz")


def test_nnunet_layout(small_dataset: Path, tmp_path: Path) -> None:
    _to_nnunet(small_dataset, tmp_path, channel_suffix=True)
    (tmp_path / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "vessel": 1}, "file_ending": ".nii.gz"})
    )
    pairs, rejected = discover_pairs(tmp_path)
    assert rejected == []
    assert [p.name for p in pairs][:2] == ["mv01", "mv02"]
    assert pairs[0].label.endswith("labelsTr/mv01.nii.gz")
    assert declared_classes(tmp_path) == {0, 1}


def test_decathlon_training_list(small_dataset: Path, tmp_path: Path) -> None:
    _to_nnunet(small_dataset, tmp_path, channel_suffix=False)
    training = [
        {"image": "./imagesTr/mv01.nii.gz", "label": "./labelsTr/mv01.nii.gz"},
        {"image": "./imagesTr/mv02.nii.gz", "label": "./labelsTr/missing.nii.gz"},
    ]
    meta = {"labels": {"0": "background", "1": "vessel", "2": "tumour"}, "training": training}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    pairs, rejected = discover_pairs(tmp_path)
    assert [p.name for p in pairs] == ["mv01"]
    assert len(rejected) == 1 and "no label" in rejected[0].reason
    assert declared_classes(tmp_path) == {0, 1, 2}


def test_unknown_layout_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"raw/ \+ seg/.*imagesTr/"):
        discover_pairs(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        discover_pairs(tmp_path / "nope")
