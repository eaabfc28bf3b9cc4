"""The shared intensity steps: MONAI's per-channel normalisation, computed without MONAI."""

from __future__ import annotations

import pytest
import torch

from minivess.data.intensity import INTENSITY_STEPS, normalize_intensity


@pytest.mark.parametrize(
    "image",
    [
        torch.rand(1, 17, 9, 5, generator=torch.Generator().manual_seed(0)) * 900 + 40,
        torch.randn(3, 8, 8, 4, generator=torch.Generator().manual_seed(1)) * 7 - 2,
        torch.full((1, 6, 5, 3), 12.5),  # constant: minus its mean, divided by 1
        torch.randint(0, 4000, (2, 7, 6, 3), generator=torch.Generator().manual_seed(2)),
        torch.rand(1, 5, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3)),
    ],
    ids=["float32", "three-channels", "constant", "int", "float64"],
)
def test_it_is_monais_channel_wise_normalisation_exactly(image: torch.Tensor) -> None:
    from monai.transforms import NormalizeIntensity

    want = NormalizeIntensity(channel_wise=True)(image.clone())
    got = normalize_intensity(image.clone())
    assert got.dtype == torch.float32 and got.shape == image.shape
    assert torch.equal(got, want.as_subclass(torch.Tensor))


def test_each_channel_ends_at_zero_mean_and_unit_std() -> None:
    image = torch.stack([torch.arange(60.0).reshape(5, 4, 3), torch.ones(5, 4, 3) * 3])
    out = normalize_intensity(image)
    assert out[0].mean().abs() < 1e-6 and out[0].std(unbiased=False) == pytest.approx(1.0)
    assert torch.equal(out[1], torch.zeros(5, 4, 3))
    assert (normalize_intensity,) == INTENSITY_STEPS
