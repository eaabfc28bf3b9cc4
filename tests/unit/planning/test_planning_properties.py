"""Property tests: over random datasets and machines the rules always hold, or the planner
refuses with a clear one-line reason."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning_profiles import profile_from_shapes

from minivess.errors import ConfigError, PlanError
from minivess.planning.hardware import HardwareBudget
from minivess.planning.planner import plan_training
from minivess.planning.profiles import list_model_profiles, load_model_profile
from minivess.planning.settings import load_planner_settings
from minivess.planning.topology import network_shape, patch_is_valid

PROFILES = {n: load_model_profile(n) for n in list_model_profiles()}
SETTINGS = load_planner_settings()

shapes = st.lists(
    st.tuples(st.integers(8, 600), st.integers(8, 600), st.integers(1, 150)),
    min_size=1,
    max_size=12,
)
machines = st.builds(
    lambda cores, ram, free, gpu_gb, count: HardwareBudget(
        cpu_cores=cores,
        ram_total_gb=ram,
        ram_available_gb=ram * free,
        gpu_name="GPU" if gpu_gb else None,
        gpu_vram_mb=gpu_gb * 1024,
        gpu_count=count if gpu_gb else 0,
    ),
    st.integers(1, 64),
    st.floats(1, 512),
    st.floats(0.1, 1.0),
    st.sampled_from([0, 0, 4, 8, 12, 16, 24, 40, 48, 80]),
    st.integers(1, 8),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_refusal(err: Exception) -> None:
    text = str(err)
    assert text and "\n" not in text


@FAST
@given(shapes=shapes, hw=machines, model=st.sampled_from(sorted(PROFILES)))
def test_rules_hold_or_planner_refuses(shapes, hw, model):
    data = profile_from_shapes(shapes)
    profile = PROFILES[model]
    try:
        plan = plan_training(hw, data, profile, settings=SETTINGS)
    except PlanError as err:
        _check_refusal(err)
        return
    # fit: every trained volume, every axis; no padding by default; quarantine only the small
    kept = [v for v in data.volumes if v.name not in plan.quarantined_volumes]
    assert kept, "one small volume never blocks the plan for all"
    for v in kept:
        assert all(p <= s for p, s in zip(plan.patch_size, v.shape, strict=True))
    assert plan.padded_volumes == []
    # divisibility per axis, from this model's topology
    for a in range(3):
        assert plan.patch_size[a] % plan.divisors[a] == 0
    assert patch_is_valid(plan.patch_size, profile.topology, plan.spacing)
    assert profile.topology.min_levels <= len(plan.strides) <= profile.topology.max_levels
    # memory within budget
    trained_gb = sum(v.bytes for v in kept) / 1e9  # the cache holds the trained volumes only
    cache_gb = trained_gb * SETTINGS.cache_bytes_factor * plan.cache_rate
    if plan.device == "cuda":
        budget = SETTINGS.vram_budget_fraction * hw.gpu_vram_mb
    else:
        budget = SETTINGS.ram_budget_fraction * (hw.ram_available_gb - cache_gb) * 1024
    assert plan.vram_estimate_mb <= budget + 0.05  # the plan stores the estimate to 0.1 MiB
    # cache: at most 60% of free RAM, never more than needed
    assert 0.0 <= plan.cache_rate <= 1.0
    assert cache_gb <= SETTINGS.cache_ram_fraction * hw.ram_available_gb + 1e-9
    assert plan.sw_roi == plan.patch_size
    assert all(d.reason for d in plan.decisions)


@FAST
@given(
    shapes=shapes,
    patch=st.tuples(st.integers(1, 160), st.integers(1, 160), st.integers(1, 40)),
    allow=st.booleans(),
    model=st.sampled_from(sorted(PROFILES)),
)
def test_patch_override_pads_exactly_the_small_volumes(shapes, patch, allow, model):
    data = profile_from_shapes(shapes)
    hw = HardwareBudget(cpu_cores=8, ram_total_gb=512, ram_available_gb=500)
    overrides = {"patch_size": list(patch), "allow_padding": allow}
    try:
        plan = plan_training(hw, data, PROFILES[model], overrides=overrides, settings=SETTINGS)
    except (ConfigError, PlanError) as err:
        _check_refusal(err)
        if isinstance(err, PlanError) and "allow_padding" in str(err):
            assert not allow
        return
    assert plan.patch_size == patch
    small = [
        v.name
        for v in data.volumes
        if v.name not in plan.quarantined_volumes
        and any(s < p for s, p in zip(v.shape, patch, strict=True))
    ]
    assert plan.padded_volumes == small
    assert allow or not small
    net = network_shape(plan.patch_size, PROFILES[model].topology)
    assert all(n % d == 0 for n, d in zip(plan.patch_size, plan.divisors, strict=True))
    assert all(n >= p for n, p in zip(net, plan.patch_size, strict=True))
