"""Training reads labels as a binary vessel mask: any declared foreground class becomes 1."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from minivess.keys import Keys
from minivess.training.config import ResamplingConfig
from minivess.training.transforms import load_transforms


def test_labels_are_binarised_and_images_normalised(tmp_path: Path) -> None:
    from monai.transforms import Compose

    label = np.zeros((16, 12, 4), np.uint8)
    label[2:5, 2:5, :] = 1
    label[8:10, 6:9, 1:3] = 2  # a second declared class (e.g. artery) is still vessel
    image = np.random.default_rng(0).normal(5.0, 2.0, label.shape).astype(np.float32)
    nib.Nifti1Image(image, np.eye(4)).to_filename(tmp_path / "im.nii.gz")
    nib.Nifti1Image(label, np.eye(4)).to_filename(tmp_path / "lab.nii.gz")

    out = Compose(load_transforms(ResamplingConfig()))(
        {
            Keys.IMAGE.value: str(tmp_path / "im.nii.gz"),
            Keys.LABEL.value: str(tmp_path / "lab.nii.gz"),
        }
    )
    got = np.asarray(out[Keys.LABEL.value])[0]
    assert set(np.unique(got).tolist()) == {0.0, 1.0}
    assert np.array_equal(got, (label > 0).astype(np.float32))
    img = np.asarray(out[Keys.IMAGE.value])[0]
    assert abs(float(img.mean())) < 1e-4 and abs(float(img.std()) - 1.0) < 1e-3
