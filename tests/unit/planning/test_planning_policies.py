"""Patch policies (seed D2 min_volume, nnU-Net median_pad), small volumes, and each planner step.

Datasets are profiles built from shapes (no voxels); machines are the shipped examples.
"""

from __future__ import annotations

import math

import pytest

from minivess.errors import ConfigError, PlanError
from minivess.keys import PatchPolicy, SmallVolumes, Source
from minivess.planning.planner import (
    PlanOverrides,
    StepBudget,
    batch_cap,
    capping_volumes,
    determine_amp,
    determine_patch_bound,
    determine_small_volumes,
    determine_spacing,
    determine_target,
    grow_batch,
    network_floor,
    plan_training,
    resampled_profile,
    restrict,
    validate_patch_override,
)
from minivess.planning.profiles import load_model_profile
from minivess.planning.settings import load_planner_settings
from minivess.planning.topology import patch_is_valid

DYN = load_model_profile("dynunet")
NORMAL = [(128, 128, 20), (112, 112, 24), (128, 96, 16), (96, 96, 12)]


@pytest.fixture
def with_tiny(make_profile):
    """Four normal volumes and one 8×8×2 pair that passes validation (issue 13, item 3)."""
    return make_profile([*NORMAL, (8, 8, 2)], names=["a", "b", "c", "d", "tiny"])


@pytest.mark.parametrize("model", ["dynunet", "segresnet", "swinunetr"])
def test_one_small_volume_is_quarantined_and_the_rest_goes_on(with_tiny, hardware, model):
    plan = plan_training(hardware["cpu_16gb"], with_tiny, load_model_profile(model))
    assert plan.quarantined_volumes == ["tiny"]
    assert plan.padded_volumes == []
    q = plan.decision("quarantine:tiny")
    assert "(8, 8, 2)" in q.reason and "small_volumes=pad" in q.reason
    normal = [s for s in NORMAL]
    assert all(plan.patch_size[a] <= min(s[a] for s in normal) for a in range(3))
    assert plan.patch_size[2] > 2  # the tiny volume does not cap the others


def test_small_volume_padded_when_the_researcher_chooses(with_tiny, hardware):
    plan = plan_training(hardware["cpu_16gb"], with_tiny, DYN, overrides={"small_volumes": "pad"})
    assert plan.quarantined_volumes == []
    assert "tiny" in plan.padded_volumes
    pad = plan.decision("padding:tiny").value
    assert pad["shape"] == [8, 8, 2]
    assert pad["pad_voxels"] == [plan.patch_size[a] - (8, 8, 2)[a] for a in range(3)]
    assert plan.decision("small_volume:tiny").value == "pad"
    assert plan.decision("small_volume:tiny").source == "override"  # the researcher's call
    auto = plan_training(hardware["cpu_16gb"], with_tiny, DYN)
    assert auto.decision("quarantine:tiny").source == "auto"


def test_only_small_volumes_is_refused_in_one_line(make_profile, hardware):
    with pytest.raises(PlanError, match=r"all 2 volume\(s\) are below the minimum patch") as e:
        plan_training(hardware["cpu_16gb"], make_profile([(8, 8, 2), (6, 6, 2)]), DYN)
    assert "\n" not in str(e.value)


def test_plan_says_which_volumes_cap_the_patch(make_profile, hardware):
    data = make_profile([(512, 512, 40), (512, 512, 5), (512, 512, 30)], names=["a", "thin", "c"])
    plan = plan_training(hardware["gpu_80gb"], data, DYN)
    assert plan.patch_size[2] == 5
    assert plan.decision("capped_by").value == {"z": ["thin"]}
    assert "median_pad" in plan.decision("capped_by").reason


def test_median_pad_follows_nnunet_median_pools_z_and_pads(full_minivess, hardware):
    """On full-scale MiniVess (min Z 5, median Z 22) median_pad plans ~256×256×20, pools z at
    the deep levels and lists every thinner volume with its padding."""
    plan = plan_training(
        hardware["gpu_80gb"], full_minivess, DYN, overrides={"patch_policy": "median_pad"}
    )
    assert plan.patch_policy is PatchPolicy.MEDIAN_PAD
    assert plan.patch_size[2] == 20 and plan.patch_size[0] >= 192
    zs = [s[2] for s in plan.strides]
    assert zs[1] == 1 and 2 in zs[2:]  # z joins the pooling once x, y reach its spacing
    thin = sorted(v.name for v in full_minivess.volumes if v.shape[2] < 20)
    assert sorted(plan.padded_volumes) == thin
    assert all(plan.decision(f"padding:{n}").source is Source.AUTO for n in thin)
    default = plan_training(hardware["gpu_80gb"], full_minivess, DYN)
    assert default.patch_size[2] == 5 and default.padded_volumes == []


def test_median_pad_refused_without_padding(full_minivess, hardware):
    with pytest.raises(PlanError, match="allow_padding is false"):
        plan_training(
            hardware["gpu_8gb"],
            full_minivess,
            DYN,
            overrides={"patch_policy": "median_pad", "allow_padding": False},
        )


def test_policy_comes_from_planner_yaml(full_minivess, hardware):
    nn = load_planner_settings().model_copy(update={"patch_policy": PatchPolicy.MEDIAN_PAD})
    plan = plan_training(hardware["gpu_8gb"], full_minivess, DYN, settings=nn)
    assert plan.patch_policy is PatchPolicy.MEDIAN_PAD and plan.padded_volumes


def test_batch_grows_into_the_vram_budget_up_to_the_stated_cap(full_minivess, hardware):
    plan = plan_training(hardware["gpu_80gb"], full_minivess, DYN)
    cap = plan.decision("batch_cap").value
    assert plan.batch_size == cap > 8  # tier batch 8, grown
    assert "grown to" in plan.decision("batch_size").reason
    cpu = plan_training(hardware["cpu_16gb"], full_minivess, DYN)
    assert cpu.batch_size == 1  # CPU time, not memory, bounds the CPU batch


def test_override_above_the_model_maximum_is_refused(full_minivess, hardware):
    with pytest.raises(ConfigError, match=r"x=512 is above the maximum 256 of 'dynunet'"):
        plan_training(
            hardware["gpu_80gb"], full_minivess, DYN, overrides={"patch_size": [512, 64, 4]}
        )


def test_sw_roi_override_must_divide(full_minivess, hardware):
    with pytest.raises(ConfigError, match=r"sw_roi .*not a multiple of 16"):
        plan_training(hardware["gpu_8gb"], full_minivess, DYN, overrides={"sw_roi": [100, 96, 5]})


def test_amp_on_cpu_is_a_logged_decision(full_minivess, hardware, caplog):
    plan = plan_training(hardware["cpu_16gb"], full_minivess, DYN, overrides={"amp": True})
    assert plan.amp is False
    d = plan.decision("amp")
    assert d.source is Source.OVERRIDE and "CPU" in d.reason
    assert any("amp=true" in r.getMessage() for r in caplog.records)


def test_plan_on_resampled_shapes(make_profile, hardware):
    data = make_profile([(64, 64, 10), (64, 64, 12)], spacings=[(1.0, 1.0, 2.0)] * 2)
    plan = plan_training(hardware["cpu_16gb"], data, DYN, target_spacing=(2.0, 2.0, 2.0))
    assert plan.patch_size[0] <= 32 and plan.padded_volumes == []
    assert plan.decision("resampling").value == [2.0, 2.0, 2.0]
    assert plan.spacing == (2.0, 2.0, 2.0)


# ---- each step on its own ------------------------------------------------------------------


def test_determine_spacing_is_the_per_axis_median(make_profile):
    data = make_profile([(8, 8, 8)] * 3, spacings=[(1, 1, 3), (0.5, 2, 2), (9, 1, 1)])
    assert determine_spacing(data)[0] == (1.0, 1.0, 2.0)


def test_network_floor_clips_to_the_median_and_ignores_padded_topologies(make_profile):
    data = make_profile([(512, 512, 5), (512, 512, 3), (512, 20, 5)])
    assert network_floor(DYN, data) == (32, 32, 4)
    assert network_floor(load_model_profile("swinunetr"), data) == (1, 1, 1)
    thin = make_profile([(512, 512, 2)] * 3)
    assert network_floor(DYN, thin) == (32, 32, 2)


def test_determine_small_volumes_names_the_reason(with_tiny):
    small = determine_small_volumes(with_tiny, DYN, (1.0, 1.0, 1.0))
    assert list(small) == ["tiny"] and "x=8 < 32" in small["tiny"]


def test_restrict_recomputes_the_statistics(with_tiny):
    kept = restrict(with_tiny, {"tiny"})
    assert kept.n_volumes == 4 and kept.min_shape == (96, 96, 12)
    assert kept.max_shape == (128, 128, 24)


def test_determine_patch_bound_by_policy(with_tiny):
    kept = restrict(with_tiny, {"tiny"})
    assert determine_patch_bound(kept, PatchPolicy.MIN_VOLUME)[0] == kept.min_shape
    assert determine_patch_bound(kept, PatchPolicy.MEDIAN_PAD)[0] == kept.median_shape


def test_determine_target_is_nnunets_initial_patch_for_median_pad_on_gpu():
    spec = load_planner_settings().tier(next(iter(load_planner_settings().tiers)))
    assert determine_target(spec, PatchPolicy.MIN_VOLUME, True, (1, 1, 1), (999,) * 3)[0] == (
        spec.patch
    )
    # isotropic spacing: 256³, clipped to the median shape
    t, _ = determine_target(spec, PatchPolicy.MEDIAN_PAD, True, (1.0, 1.0, 1.0), (512, 300, 22))
    assert t == (256, 256, 22)
    t, _ = determine_target(spec, PatchPolicy.MEDIAN_PAD, True, (1.0, 1.0, 4.0), (999,) * 3)
    assert t[0] == t[1] and round(t[0] / t[2]) == 4
    assert determine_target(spec, PatchPolicy.MEDIAN_PAD, False, (1, 1, 1), (9,) * 3)[0] == (
        spec.patch
    )


def test_capping_volumes_lists_the_bounding_volumes(make_profile):
    data = make_profile([(64, 64, 5), (64, 64, 9)], names=["thin", "b"])
    assert capping_volumes(data, (64, 64, 5), (64, 64, 16)) == {"z": ["thin"]}
    assert capping_volumes(data, (64, 64, 5), (64, 64, 5)) == {}


def test_grow_batch_and_cap(make_profile):
    mem = DYN.vram
    batch, est = grow_batch((64, 64, 16), 2, StepBudget(DYN, mem, False, budget_mb=1e9), cap=7)
    assert batch == 7 and est > 0
    batch, _ = grow_batch((64, 64, 16), 2, StepBudget(DYN, mem, False, budget_mb=0), cap=7)
    assert batch == 2
    data = make_profile([(64, 64, 16)] * 10)
    cap, reason = batch_cap(DYN, data, (64, 64, 16), load_planner_settings())
    assert cap == 1 and "5%" in reason  # 10 volumes: a batch of 1 already covers 10%


def test_determine_amp():
    ov = PlanOverrides()
    assert determine_amp(ov, DYN, gpu=True)[0] is True
    assert determine_amp(ov, DYN, gpu=False)[0] is False
    assert determine_amp(PlanOverrides(amp=True), DYN, gpu=False)[0] is False


def test_resampled_profile_scales_shapes(make_profile):
    data = make_profile([(100, 100, 10)], spacings=[(0.5, 0.5, 2.0)])
    out = resampled_profile(data, (1.0, 1.0, 1.0))
    assert out.volumes[0].shape == (50, 50, 20) and out.min_shape == (50, 50, 20)


def test_validate_patch_override_with_spacing_pooling():
    validate_patch_override((128, 128, 20), DYN, (0.5, 0.5, 2.0))
    with pytest.raises(ConfigError, match="z=21 does not suit"):
        validate_patch_override((128, 128, 21), DYN, (0.5, 0.5, 2.0))
    assert patch_is_valid((128, 128, 20), DYN.topology, (0.5, 0.5, 2.0))
    assert SmallVolumes("pad") is SmallVolumes.PAD


def test_feature_map_memory_depends_on_the_patch_shape():
    """Same voxels, different shapes: the feature-map term differs; the per-voxel one cannot."""
    from minivess.planning.memory import feature_voxels
    from minivess.planning.topology import patch_strides

    mem = DYN.ram
    assert mem is not None and mem.bytes_per_feature_voxel is not None
    topo = DYN.topology
    thin, cube = (256, 256, 4), (64, 64, 64)
    f_thin = feature_voxels(thin, patch_strides(thin, topo, (1.0, 1.0, 1.0)), topo, mem)
    f_cube = feature_voxels(cube, patch_strides(cube, topo, (1.0, 1.0, 1.0)), topo, mem)
    assert math.prod(thin) == math.prod(cube)
    assert f_thin > 1.1 * f_cube  # the never-pooled z keeps the deep maps large
