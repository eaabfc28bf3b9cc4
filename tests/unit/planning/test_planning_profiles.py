"""Model profiles: shipped ones load, bad ones fail with the fix, and a researcher's YAML
dropped into configs/model_profiles/ (with its own network entry point) is planned and built."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from minivess.config import CONFIG_DIR_ENV, config_dir
from minivess.errors import ConfigError
from minivess.planning import make_plan
from minivess.planning.profiles import list_model_profiles, load_model_profile

CUSTOM_YAML = """\
name: tiny_unet
description: A researcher's own two-level network.
network:
  entry_point: lab_nets:build_tiny
  params: {width: 4}
topology:
  rule: per_axis
  max_levels: 3
  min_levels: 2
  min_feature_size: 4
vram: {base_mb: 50, train_bytes_per_voxel: 300, infer_bytes_per_voxel: 50, amp_factor: 0.6}
supports_amp: false
limits: {min_patch: [16, 16, 4], max_patch: [64, 64, 32], max_batch: 4}
"""

CUSTOM_NET = """\
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self, plan, in_channels, out_channels, width):
        super().__init__()
        stride = tuple(plan.strides[1])
        self.down = nn.Conv3d(in_channels, width, 3, stride=stride, padding=1)
        self.up = nn.ConvTranspose3d(width, width, stride, stride=stride)
        self.head = nn.Conv3d(width, out_channels, 1)

    def forward(self, x):
        return self.head(torch.relu(self.up(torch.relu(self.down(x)))))

def build_tiny(plan, in_channels, out_channels, width=4):
    return Tiny(plan, in_channels, out_channels, width)
"""


def test_shipped_profiles_load():
    names = list_model_profiles()
    assert {"dynunet", "segresnet", "swinunetr"} <= set(names)
    for name in names:
        profile = load_model_profile(name)
        assert profile.name == name
        assert profile.vram.train_bytes_per_voxel > profile.vram.infer_bytes_per_voxel
    assert load_model_profile(config_dir() / "model_profiles" / "dynunet.yaml").name == "dynunet"


def test_unknown_model_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"Did you mean 'dynunet'\?.*Known: dynunet"):
        load_model_profile("dynunett")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"network": {"builder": "dynunett"}}, "Did you mean 'dynunet'"),
        ({"network": {"builder": "dynunet", "entry_point": "a:b"}}, "exactly one"),
        ({"network": {"entry_point": "no_colon"}}, "package.module:fn"),
        ({"topology": {"rule": "fixed", "max_levels": 6, "fixed_divisor": 24}}, "power of two"),
        ({"vram_per_voxel": 3}, "unknown field 'vram_per_voxel'"),
        ({"name": "other"}, "differs from the file name"),
    ],
)
def test_bad_profiles_fail_with_the_fix(tmp_path: Path, edit, message):
    import yaml

    data = yaml.safe_load((config_dir() / "model_profiles" / "dynunet.yaml").read_text())
    data.update(edit)
    path = tmp_path / "dynunet.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_model_profile(path)


def test_dropped_in_profile_is_planned_and_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_minivess, hardware
):
    """The researcher's workflow of docs/planner.md: copy configs, drop a YAML + a module."""
    import torch

    from minivess.models import build_model

    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "model_profiles" / "tiny_unet.yaml").write_text(CUSTOM_YAML)
    (tmp_path / "lab_nets.py").write_text(CUSTOM_NET)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(configs))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "tiny_unet" in list_model_profiles()
        plan = make_plan(full_minivess, "tiny_unet", hardware=hardware["gpu_8gb"])
        assert plan.model == "tiny_unet" and plan.amp is False  # the profile has no AMP
        assert plan.patch_size == (64, 64, 5) and len(plan.strides) == 3
        net = build_model(plan)  # found by name through the same profile
        out = net(torch.zeros(1, 1, *plan.patch_size))
        assert out.shape == (1, 2, *plan.patch_size)
    finally:
        sys.modules.pop("lab_nets", None)
