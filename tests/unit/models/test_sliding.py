"""The one sliding-window helper computes what MONAI's ``sliding_window_inference`` computes
(Gaussian blending), without importing MONAI (a serving process never loads it:
tests/unit/serving/test_serve_inference.py)."""

from __future__ import annotations

import pytest
import torch

from minivess.keys import Tier
from minivess.models.sliding import gaussian_weights, sliding_window, window_starts
from minivess.planning.plan import TrainingPlan


def _plan(roi: tuple[int, int, int], overlap: float = 0.25, per_pass: int = 1) -> TrainingPlan:
    return TrainingPlan(
        model="dynunet", tier=Tier.CPU, patch_size=roi, batch_size=1, cache_rate=0.0,
        num_workers=0, amp=False, sw_roi=roi, sw_overlap=overlap, sw_batch_size=per_pass,
        strides=[(1, 1, 1)], kernel_sizes=[(3, 3, 3)],
    )  # fmt: skip


def _net(seed: int = 0) -> torch.nn.Module:
    """A seeded two-class 3D conv: its answer depends on where the window lies."""
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, 2, kernel_size=3, padding=1).eval()


# (image shape (B, C, x, y, z), window, overlap, windows per pass)
CASES = [
    ((1, 1, 64, 48, 10), (32, 32, 8), 0.25, 1),  # the serving tests' volume and window
    ((1, 1, 64, 48, 10), (32, 32, 8), 0.5, 3),  # a last pass with fewer windows
    ((2, 1, 40, 33, 7), (16, 16, 4), 0.25, 4),  # two images, passes across them
    ((1, 1, 20, 20, 3), (32, 16, 8), 0.25, 2),  # smaller than the window: padded, cropped
    ((1, 1, 32, 32, 8), (32, 32, 8), 0.25, 1),  # exactly one window
    ((1, 1, 50, 17, 9), (16, 16, 5), 0.0, 2),  # no overlap, uneven tiling
    ((1, 1, 37, 29, 11), (12, 10, 3), 0.9, 8),  # a step of 1 voxel on the short axis
]


@pytest.mark.parametrize(("shape", "roi", "overlap", "per_pass"), CASES)
def test_it_matches_monais_gaussian_sliding_window(shape, roi, overlap, per_pass) -> None:
    from monai.inferers import sliding_window_inference

    image = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    net = _net()
    with torch.no_grad():
        ours = sliding_window(image, _plan(roi, overlap, per_pass), net)
        theirs = sliding_window_inference(
            image, roi, per_pass, net, overlap=overlap, mode="gaussian"
        )
    assert ours.shape == (shape[0], 2, *shape[2:])
    torch.testing.assert_close(ours, theirs.as_subclass(torch.Tensor), rtol=0, atol=1e-6)


def test_the_call_overrides_the_plans_windows_per_pass_and_overlap() -> None:
    from monai.inferers import sliding_window_inference

    image = torch.randn(1, 1, 40, 40, 9, generator=torch.Generator().manual_seed(3))
    net = _net(1)
    with torch.no_grad():
        ours = sliding_window(image, _plan((16, 16, 4)), net, sw_batch_size=5, overlap=0.6)
        theirs = sliding_window_inference(image, (16, 16, 4), 5, net, overlap=0.6, mode="gaussian")
        default = sliding_window(image, _plan((16, 16, 4)), net)
    torch.testing.assert_close(ours, theirs.as_subclass(torch.Tensor), rtol=0, atol=1e-6)
    assert not torch.allclose(ours, default)  # the overlap changed the blend


def test_deep_supervision_heads_are_reduced_to_the_full_resolution_one() -> None:
    image = torch.randn(1, 1, 24, 24, 6, generator=torch.Generator().manual_seed(4))
    net = _net(2)
    plan = _plan((16, 16, 4))
    with torch.no_grad():
        plain = sliding_window(image, plan, net)
        as_list = sliding_window(image, plan, lambda x: [net(x), torch.zeros_like(net(x))])
        stacked = sliding_window(image, plan, lambda x: torch.stack([net(x), -net(x)], dim=1))
    assert torch.equal(plain, as_list) and torch.equal(plain, stacked)


def test_window_grid_and_weights() -> None:
    assert window_starts(64, 32, 0.25) == [0, 24, 32]  # step 24, the last flush with the end
    assert window_starts(32, 32, 0.25) == [0]
    assert window_starts(10, 8, 0.25) == [0, 2]
    assert window_starts(11, 3, 0.9) == list(range(9))  # step 1
    w = gaussian_weights((9, 7, 3))
    assert w.shape == (9, 7, 3) and w.max() == pytest.approx(1.0)
    assert w[4, 3, 1] == w.max() and w[0, 0, 0] == w.min() > 0  # peak centre, least at corners


@pytest.mark.parametrize(
    ("shape", "overlap", "per_pass", "message"),
    [
        ((1, 1, 8, 8, 4), 1.0, 1, r"overlap 1.0 must be in \[0, 1\)"),
        ((1, 1, 8, 8, 4), -0.1, 1, r"overlap -0.1 must be in \[0, 1\)"),
        ((1, 1, 8, 8, 4), 0.25, -1, "windows per forward pass -1 must be >= 1"),
        ((1, 8, 8, 4), 0.25, 1, r"image of shape \(1, 8, 8, 4\): want \(B >= 1, C, 3 axes\)"),
        ((0, 1, 8, 8, 4), 0.25, 1, r"image of shape \(0, 1, 8, 8, 4\)"),
    ],
    ids=["overlap-1", "overlap-negative", "no-windows-per-pass", "no-batch-axis", "empty-batch"],
)
def test_a_bad_image_overlap_or_pass_size_is_refused(shape, overlap, per_pass, message) -> None:
    with pytest.raises(ValueError, match=message):
        sliding_window(torch.zeros(*shape), _plan((8, 8, 4)), _net(), overlap=overlap,
                       sw_batch_size=per_pass)  # fmt: skip


def test_a_predictor_that_changes_the_window_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"returned \(1, 2, 4, 4, 2\) for windows \(8, 8, 4\)"):
        sliding_window(
            torch.zeros(1, 1, 8, 8, 4), _plan((8, 8, 4)), lambda x: x[:, [0, 0], ::2, ::2, ::2]
        )
