"""The plan drives the network: every shipped profile builds from a real plan and runs a patch."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from minivess.errors import ConfigError
from minivess.models import build_model
from minivess.models.builders import PadToMultiple
from minivess.planning.planner import network_plan, plan_training
from minivess.planning.profiles import list_model_profiles, load_model_profile

#: Shipped profiles whose CPU forward pass at the planned patch takes well under a second.
LIGHT = ("dynunet", "segresnet")


def _forward(plan, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    net = build_model(plan, in_channels=1, out_channels=2).eval()
    with torch.no_grad():
        return net(torch.randn(batch, 1, *plan.patch_size))


@pytest.mark.parametrize("name", LIGHT)
def test_light_profiles_forward_on_planned_patch(name, minivess_shapes_profile, laptop):
    plan = plan_training(laptop, minivess_shapes_profile, load_model_profile(name))
    assert plan.patch_size[2] <= 5  # the thinnest MiniVess volume bounds the patch
    out = _forward(plan)
    assert out.shape == (1, 2, *plan.patch_size)
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(list_model_profiles()) - set(LIGHT)))
def test_heavy_profiles_forward_on_planned_patch(name, minivess_shapes_profile, laptop):
    plan = plan_training(laptop, minivess_shapes_profile, load_model_profile(name))
    out = _forward(plan)
    assert out.shape == (1, 2, *plan.patch_size)
    assert torch.isfinite(out).all()


def test_every_shipped_profile_is_covered():
    assert {"dynunet", "segresnet", "swinunetr"} <= set(list_model_profiles())


def test_dynunet_uses_the_plans_anisotropic_strides():
    profile = load_model_profile("dynunet")
    plan = network_plan(profile, (64, 48, 16))
    net = build_model(plan)
    assert [tuple(s) for s in net.strides] == [tuple(s) for s in plan.strides]
    # a shape divisible by the plan's divisors passes; the network really downsamples z twice
    assert plan.divisors == (16, 8, 4)
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 1, 32, 24, 12)).shape == (1, 2, 32, 24, 12)


def test_segresnet_scales_reproduce_plan_strides():
    profile = load_model_profile("segresnet")
    for patch in [(64, 64, 5), (32, 32, 16), (64, 32, 8), (32, 32, 32)]:
        plan = network_plan(profile, patch)
        net = build_model(plan)
        assert [tuple(int(v) for v in s) for s in net.anisotropic_scales[:-1]] == [
            tuple(s) for s in plan.strides[1:]
        ]
        assert tuple(int(v) for v in net.shape_factor()) == plan.divisors


def test_pad_to_multiple_crops_back_and_keeps_content():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["shape"] = tuple(x.shape[2:])
            return x * 2

    x = torch.randn(1, 1, 32, 40, 5)
    out = PadToMultiple(Probe(), 32)(x)
    assert seen["shape"] == (32, 64, 32)
    assert out.shape == x.shape
    assert torch.equal(out, x * 2)


def test_entry_point_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "not_a_net.py").write_text(
        "def build(plan, in_channels, out_channels):\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = load_model_profile("dynunet").model_dump()
    for entry, message in [
        ("no_such_module_x:build", "cannot import"),
        ("not_a_net:missing", "no callable"),
        ("not_a_net:build", "not a torch.nn.Module"),
    ]:
        data = {**base, "network": {"entry_point": entry, "params": {}}}
        profile = type(load_model_profile("dynunet")).model_validate(data)
        with pytest.raises(ConfigError, match=message):
            build_model(network_plan(profile, (32, 32, 8)), profile=profile)
    sys.modules.pop("not_a_net", None)


def test_custom_entry_point_network_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "tiny_nets.py").write_text(
        textwrap.dedent("""
        import torch
        def build(plan, in_channels, out_channels, width=4):
            return torch.nn.Sequential(
                torch.nn.Conv3d(in_channels, width, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv3d(width, out_channels, 1))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = load_model_profile("dynunet").model_dump()
    data.update(name="tiny", network={"entry_point": "tiny_nets:build", "params": {"width": 3}})
    profile = type(load_model_profile("dynunet")).model_validate(data)
    net = build_model(network_plan(profile, (16, 16, 5)), profile=profile)
    assert net[0].out_channels == 3
    assert net(torch.zeros(2, 1, 16, 16, 5)).shape == (2, 2, 16, 16, 5)
    sys.modules.pop("tiny_nets", None)
