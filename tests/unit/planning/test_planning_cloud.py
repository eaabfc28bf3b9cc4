"""Cloud tier: the planner inverted, cheapest adequate GPU first, ready for SkyPilot."""

from __future__ import annotations

import pytest

from minivess.errors import ConfigError
from minivess.keys import Environment, Tier
from minivess.planning.cloud import (
    candidates_for_plan,
    gpu_candidates,
    hardware_for_accelerator,
    parse_accelerator,
    skypilot_resources,
)
from minivess.planning.memory import training_mb
from minivess.planning.planner import plan_training
from minivess.planning.profiles import load_model_profile
from minivess.planning.settings import load_gpu_table, load_planner_settings

SETTINGS = load_planner_settings()
TABLE = load_gpu_table()


def test_candidates_fit_and_are_cheapest_first():
    swin = load_model_profile("swinunetr")
    need = training_mb(swin.vram, 128 * 128 * 128, 4, True)
    cands = gpu_candidates(swin, (128, 128, 128), 4, SETTINGS)
    assert cands, "an 80 GB card holds this"
    for c in cands:
        assert need <= SETTINGS.vram_budget_fraction * c.vram_gb * 1024
        assert c.accelerator == f"{c.name}:1"
    assert [c.cost_class for c in cands] == sorted(c.cost_class for c in cands)
    # every GPU left out is too small
    left_out = set(TABLE.gpus) - {c.name for c in cands}
    assert not [n for n in left_out if need <= 0.8 * TABLE.gpus[n].vram_gb * 1024]
    small = gpu_candidates(swin, (64, 64, 32), 1, SETTINGS)
    assert small[0].name == "T4"  # the cheapest card wins when everything fits
    assert {c.name for c in cands} < set(TABLE.gpus)


def test_bigger_patch_never_adds_candidates():
    dyn = load_model_profile("dynunet")
    sizes = [(64, 64, 16), (128, 128, 64), (256, 256, 128)]
    sets = [{c.name for c in gpu_candidates(dyn, s, 8, SETTINGS, amp=False)} for s in sizes]
    assert sets[0] >= sets[1] >= sets[2]


def test_accelerator_strings_and_hardware():
    assert parse_accelerator("A100-80GB:4") == ("A100-80GB", 4)
    with pytest.raises(ConfigError, match="Did you mean 'A100-80GB'"):
        parse_accelerator("A100-80G:1")
    with pytest.raises(ConfigError, match="count must be"):
        parse_accelerator("L4:x")
    hw = hardware_for_accelerator("A100:4")
    assert hw.gpu_count == 4 and hw.gpu_vram_mb == 40 * 1024
    assert hw.environment is Environment.CLOUD


def test_planning_for_a_cloud_gpu(full_minivess):
    dyn = load_model_profile("dynunet")
    plan = plan_training(hardware_for_accelerator("L4:1"), full_minivess, dyn)
    assert plan.tier is Tier.DGX_SPARK and plan.device == "cuda" and plan.amp
    expected = gpu_candidates(dyn, plan.patch_size, plan.batch_size, SETTINGS)
    assert plan.accelerators == [c.accelerator for c in expected]
    assert [c.accelerator for c in candidates_for_plan(plan)] == plan.accelerators
    multi = plan_training(hardware_for_accelerator("H100:8"), full_minivess, dyn)
    assert multi.tier is Tier.CLOUD_MULTI and multi.devices == 8
    assert all(a.endswith(":8") for a in multi.accelerators)
    assert [c.accelerator for c in candidates_for_plan(multi)] == multi.accelerators


def test_resources_fragment_modes():
    assert skypilot_resources(["T4:1", "L4:1"]) == {
        "ordered": [{"accelerators": "T4:1"}, {"accelerators": "L4:1"}]
    }
    assert "any_of" in skypilot_resources(["T4:1"], mode="any_of")
    with pytest.raises(ConfigError):
        skypilot_resources(["T4:1"], mode="cheapest")


@pytest.mark.slow
def test_skypilot_parses_the_candidates(full_minivess, tmp_path, monkeypatch):
    """SkyPilot's own parser accepts the plan's accelerators as ``ordered`` and ``any_of``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    import sky

    plan = plan_training(
        hardware_for_accelerator("L4:1"), full_minivess, load_model_profile("dynunet")
    )
    for mode in ("ordered", "any_of"):
        task = sky.Task.from_yaml_config(
            {"run": "minivess train", "resources": skypilot_resources(plan.accelerators, mode)}
        )
        names = [next(iter(r.accelerators)) for r in task.resources]
        assert sorted(names) == sorted(a.split(":")[0] for a in plan.accelerators)
