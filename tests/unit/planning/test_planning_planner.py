"""The planner's rules on generated dataset statistics and the shipped example machines."""

from __future__ import annotations

import json

import pytest

from minivess.config import config_dir
from minivess.errors import ConfigError, PlanError
from minivess.keys import Source, Tier
from minivess.planning import make_plan
from minivess.planning.hardware import HardwareBudget
from minivess.planning.plan import TrainingPlan
from minivess.planning.planner import load_overrides, plan_training
from minivess.planning.profiles import list_model_profiles, load_model_profile
from minivess.planning.report import PLAN_JSON_KEYS, decisions_table
from minivess.planning.settings import load_planner_settings
from minivess.planning.topology import patch_is_valid

#: The five example machines of the acceptance criteria (configs/hardware/*.yaml).
HARDWARE_NAMES = ("cpu_16gb", "gpu_8gb", "gpu_24gb", "gpu_80gb", "gpu_4x80gb")
PROFILES = list_model_profiles()


def _fits_and_divides(plan: TrainingPlan, dataset) -> None:
    topo = load_model_profile(plan.model).topology
    for a in range(3):
        assert plan.patch_size[a] <= dataset.min_shape[a], (plan.model, plan.patch_size)
        assert plan.patch_size[a] % plan.divisors[a] == 0, (plan.model, plan.patch_size)
    assert patch_is_valid(plan.patch_size, topo, plan.spacing)
    assert plan.padded_volumes == []


@pytest.mark.parametrize("hw_name", HARDWARE_NAMES)
@pytest.mark.parametrize("model", PROFILES)
def test_every_profile_fits_full_scale_minivess(full_minivess, hardware, hw_name, model):
    """Acceptance: min Z=5; every profile × machine gives a fitting, per-axis divisible patch."""
    assert full_minivess.min_shape[2] == 5
    plan = plan_training(hardware[hw_name], full_minivess, load_model_profile(model))
    _fits_and_divides(plan, full_minivess)
    assert plan.patch_size[2] == 5  # the thin axis keeps stride 1 instead of "<=5 and %8"
    assert all(s[2] == 1 for s in plan.strides)
    budget = load_planner_settings()
    hw = hardware[hw_name]
    limit = (
        budget.vram_budget_fraction * hw.gpu_vram_mb
        if plan.device == "cuda"
        else budget.ram_budget_fraction * hw.ram_available_gb * 1024
    )
    assert plan.vram_estimate_mb <= limit


def test_tiers_follow_the_seed_table(full_minivess, hardware):
    dyn = load_model_profile("dynunet")
    tiers = {n: plan_training(hardware[n], full_minivess, dyn).tier for n in HARDWARE_NAMES}
    assert tiers == {
        "cpu_16gb": Tier.CPU,
        "gpu_8gb": Tier.GPU_LOW,
        "gpu_24gb": Tier.DGX_SPARK,
        "gpu_80gb": Tier.CLOUD_SINGLE,
        "gpu_4x80gb": Tier.CLOUD_MULTI,
    }
    small_gpu = hardware["gpu_8gb"].model_copy(update={"gpu_vram_mb": 4096})
    plan = plan_training(small_gpu, full_minivess, dyn)
    assert plan.tier is Tier.CPU and plan.device == "cpu"
    assert "WARNING" in plan.decision("tier").reason


class TestDatasetPatchCompatibility:
    """The seed's §3 checks on generated data whose thinnest volume has 5 slices: the real
    profiler on the small synthetic dataset, and hand-made MiniVess-like shapes."""

    @pytest.fixture(params=["synthetic_small", "shapes"])
    def dataset_profile(self, request, make_profile):
        if request.param == "synthetic_small":
            return request.getfixturevalue("generated_small")
        return make_profile([(256, 256, 9), (512, 512, 5), (300, 280, 40), (512, 512, 110)])

    @pytest.fixture(params=PROFILES)
    def model_config(self, request):
        return load_model_profile(request.param)

    @pytest.fixture
    def hardware_budget(self, hardware):
        return hardware["gpu_8gb"]

    @pytest.fixture
    def data_config(self, dataset_profile, model_config, hardware_budget):
        return plan_training(hardware_budget, dataset_profile, model_config)

    def test_patch_fits_all_volumes(self, dataset_profile, data_config):
        assert dataset_profile.min_shape[2] == 5 and dataset_profile.volumes
        for dim in range(3):
            assert data_config.patch_size[dim] <= dataset_profile.min_shape[dim], (
                f"Patch dim {dim}={data_config.patch_size[dim]} exceeds smallest volume dim="
                f"{dataset_profile.min_shape[dim]}"
            )
        for vol in dataset_profile.volumes:
            assert all(p <= s for p, s in zip(data_config.patch_size, vol.shape, strict=True))

    def test_patch_divisible_by_model_factor(self, data_config, model_config):
        for dim, size in enumerate(data_config.patch_size):
            assert size % data_config.divisors[dim] == 0, (
                f"Patch dim {dim}={size} not divisible by {data_config.divisors[dim]} "
                f"(required by {model_config.name})"
            )

    def test_no_default_resampling(self):
        from minivess.config import read_yaml

        defaults = read_yaml(config_dir() / "data" / "defaults.yaml")
        assert defaults["resampling"]["enabled"] is False
        assert defaults["resampling"].get("target_spacing") is None

    def test_cache_rate_fits_ram(self, dataset_profile, hardware_budget, data_config):
        cached_size_gb = dataset_profile.total_size_gb * data_config.cache_rate
        assert cached_size_gb < hardware_budget.ram_available_gb * 0.7


def test_memory_shrinks_patch_on_most_room_axis_then_batch(make_profile, hardware):
    data = make_profile([(512, 512, 64)] * 3)
    swin = load_model_profile("swinunetr")
    roomy = plan_training(hardware["gpu_80gb"], data, swin)
    tight_hw = hardware["gpu_8gb"].model_copy(update={"gpu_vram_mb": 7000})
    tight = plan_training(tight_hw, data, swin, overrides={"tier": "cloud_single"})
    assert tight.vram_estimate_mb <= 0.8 * 7000
    assert tight.vram_estimate_mb < roomy.vram_estimate_mb
    # x and y had the most room (128/32 vs 64/32), so they shrank first; z stays >= 32
    assert tight.patch_size[0] < roomy.patch_size[0] and tight.patch_size[2] >= 32
    assert tight.batch_size <= roomy.batch_size
    assert tight.batch_size * tight.grad_accum_steps >= roomy.batch_size
    assert "shrunk" in tight.decision("patch_size").reason


def test_impossible_plan_says_why(make_profile, hardware):
    tiny_gpu = hardware["gpu_8gb"].model_copy(update={"gpu_vram_mb": 7000})
    swin = load_model_profile("swinunetr").model_copy(
        update={"vram": load_model_profile("swinunetr").vram.model_copy(update={"base_mb": 6000})}
    )
    with pytest.raises(PlanError, match="too small for this model at any patch"):
        plan_training(tiny_gpu, make_profile([(256, 256, 64)]), swin)


def test_cache_rate_is_bounded_by_free_ram(make_profile, hardware):
    data = make_profile([(512, 512, 100)] * 40)  # 4.2 GB float32 images, x2 with labels
    small_ram = hardware["cpu_16gb"].model_copy(update={"ram_available_gb": 4.0})
    plan = plan_training(small_ram, data, load_model_profile("dynunet"))
    assert 0 < plan.cache_rate < 1
    assert data.total_size_gb * 2 * plan.cache_rate <= 0.6 * 4.0
    roomy = plan_training(hardware["gpu_80gb"], data, load_model_profile("dynunet"))
    assert roomy.cache_rate == 1.0  # never more than the data needs


def test_overrides_are_honoured_and_marked(full_minivess, hardware):
    overrides = {
        "batch_size": 3,
        "num_workers": 1,
        "amp": False,
        "sw_overlap": 0.5,
        "cache_rate": 0.25,
        "accelerators": ["A100:1"],
    }
    plan = plan_training(
        hardware["gpu_24gb"], full_minivess, load_model_profile("dynunet"), overrides=overrides
    )
    assert (plan.batch_size, plan.num_workers, plan.amp, plan.sw_overlap, plan.cache_rate) == (
        3,
        1,
        False,
        0.5,
        0.25,
    )
    assert plan.accelerators == ["A100:1"]
    for name in ("batch_size", "num_workers", "amp", "sw_overlap", "cache_rate", "accelerators"):
        assert plan.decision(name).source is Source.OVERRIDE
    assert plan.decision("patch_size").source is Source.AUTO


def test_overrides_from_yaml_file_and_set(tmp_path, full_minivess, hardware):
    exp = tmp_path / "experiment.yaml"
    exp.write_text("model: dynunet\nplan:\n  patch_size: [64, 64, 4]\n  batch_size: 2\n")
    merged = load_overrides(exp, ["batch_size=1"])
    assert merged == {"patch_size": [64, 64, 4], "batch_size": 1}
    plan = plan_training(
        hardware["cpu_16gb"], full_minivess, load_model_profile("dynunet"), overrides=merged
    )
    assert plan.patch_size == (64, 64, 4) and plan.batch_size == 1
    assert plan.decision("patch_size").source is Source.OVERRIDE
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 2\n")
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        load_overrides(bad)
    with pytest.raises(ConfigError, match="Did you mean 'patch_size'"):
        load_overrides(None, ["patchsize=[8,8,8]"])


@pytest.mark.parametrize(
    ("item", "where"),
    [("batch_size=yes", "field 'batch_size'"), ("cache_rate=on", "field 'cache_rate'"),
     ("patch_size=[64,true,4]", "field 'patch_size': item 1")],
)  # fmt: skip
def test_a_yes_no_set_on_a_number_is_refused_and_a_yes_no_field_takes_it(item, where):
    """`--set batch_size=yes` was read as batch size 1 (YAML's yes is a boolean)."""
    with pytest.raises(ConfigError, match=rf"--set: {where}.*a yes/no value where a number goes"):
        load_overrides(None, [item])
    assert load_overrides(None, ["amp=yes"]) == {"amp": True}
    with pytest.raises(ConfigError) as err:  # a yes/no for a name: pydantic's own message
        load_overrides(None, ["accelerators=[yes]"])
    assert "number" not in str(err.value) and "accelerators" in str(err.value)


def test_override_patch_must_suit_the_topology(full_minivess, hardware):
    with pytest.raises(ConfigError, match=r"axis x=100 .*use 96"):
        plan_training(
            hardware["cpu_16gb"],
            full_minivess,
            load_model_profile("dynunet"),
            overrides={"patch_size": [100, 64, 5]},
        )


def test_larger_patch_pads_only_the_small_volumes(make_profile, hardware):
    data = make_profile([(128, 128, 5), (128, 128, 7), (128, 128, 20)], names=["a", "b", "c"])
    plan = plan_training(
        hardware["cpu_16gb"],
        data,
        load_model_profile("dynunet"),
        overrides={"patch_size": [64, 64, 8]},
    )
    assert plan.padded_volumes == ["a", "b"]
    pad_a = plan.decision("padding:a")
    assert pad_a.value == {
        "shape": [128, 128, 5],
        "padded_to": [128, 128, 8],
        "pad_voxels": [0, 0, 3],
    }
    assert pad_a.source is Source.OVERRIDE
    with pytest.raises(PlanError, match=r"larger than volume a, b .*allow_padding"):
        plan_training(
            hardware["cpu_16gb"],
            data,
            load_model_profile("dynunet"),
            overrides={"patch_size": [64, 64, 8], "allow_padding": False},
        )


def test_swinunetr_pads_thin_axes_inside_the_network(full_minivess, hardware):
    plan = plan_training(hardware["gpu_24gb"], full_minivess, load_model_profile("swinunetr"))
    assert plan.patch_size[2] == 5 and plan.divisors[:2] == (32, 32)
    assert plan.decision("network_padding").value[2] == 32
    assert plan.padded_volumes == []


def test_calibration_is_preferred_and_named(full_minivess, hardware):
    from minivess.planning.calibration import Calibration, CalibrationPoint

    hw = hardware["cpu_16gb"]
    cal = Calibration(
        model="dynunet",
        device=hw.device_key,
        amp=False,
        base_mb=1000.0,
        train_bytes_per_voxel=5000.0,
        created="2026-11-26T00:00:00Z",
        points=[CalibrationPoint(patch=(32, 32, 8), voxels=8192, batch=1, peak_mb=1039.0)],
    )
    dyn = load_model_profile("dynunet")
    static = plan_training(hw, full_minivess, dyn)
    measured = plan_training(hw, full_minivess, dyn, calibration=cal)
    assert "dynunet__cpu.json" in measured.decision("memory").reason
    assert "static estimate" in static.decision("memory").reason
    assert measured.vram_estimate_mb > static.vram_estimate_mb
    other = cal.model_copy(update={"device": "cuda-some-gpu"})
    ignored = plan_training(hw, full_minivess, dyn, calibration=other)
    assert "ignored" in ignored.decision("calibration").reason
    assert ignored.vram_estimate_mb == static.vram_estimate_mb


def test_make_plan_json_round_trip_and_table(tmp_path, full_minivess, hardware):
    plan = make_plan(full_minivess, "segresnet", hardware=hardware["gpu_8gb"])
    path = plan.save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    assert set(PLAN_JSON_KEYS) <= set(data)
    assert all({"name", "value", "reason", "source"} <= set(d) for d in data["decisions"])
    assert TrainingPlan.load(path) == plan
    assert plan.accelerators and plan.accelerators[0].endswith(":1")
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(decisions_table(plan))
    text = console.export_text()
    assert "patch_size" in text and "reason" in text and "source" in text


def test_make_plan_reads_hardware_yaml_and_cloud_gpu(full_minivess):
    hw_yaml = config_dir() / "hardware" / "gpu_4x80gb.yaml"
    plan = make_plan(full_minivess, "dynunet", hardware=hw_yaml)
    assert plan.tier is Tier.CLOUD_MULTI and plan.devices == 4
    assert all(a.endswith(":4") for a in plan.accelerators)
    cloud = make_plan(full_minivess, "dynunet", hardware="gpu:L4:1")
    assert cloud.tier is Tier.DGX_SPARK and cloud.device == "cuda"


def test_empty_dataset_is_refused(make_profile, hardware):
    data = make_profile([(64, 64, 5)]).model_copy(update={"n_volumes": 0, "volumes": []})
    with pytest.raises(PlanError, match="no usable volume"):
        plan_training(hardware["cpu_16gb"], data, load_model_profile("dynunet"))


def test_unknown_hardware_key_is_rejected(tmp_path):
    from minivess.planning.hardware import load_hardware

    bad = tmp_path / "hw.yaml"
    bad.write_text("cpu_cores: 4\nram_total_gb: 8\nram_available_gb: 6\ngpu_vram: 8000\n")
    with pytest.raises(ConfigError, match="Did you mean 'gpu_vram_mb'"):
        load_hardware(bad)
    assert HardwareBudget(cpu_cores=1, ram_total_gb=1, ram_available_gb=1).device_key == "cpu"


def test_capped_axis_frees_voxels_for_the_others(full_minivess, hardware):
    """Z=5 caps the tier's 96×96×24; x and y grow to keep its voxels (or not, if switched off)."""
    dyn = load_model_profile("dynunet")
    plan = plan_training(hardware["gpu_8gb"], full_minivess, dyn)
    assert plan.patch_size == (208, 208, 5)
    assert 0.9 * 96 * 96 * 24 <= 208 * 208 * 5 <= 96 * 96 * 24
    assert "grown to keep the target's voxels" in plan.decision("patch_size").reason
    literal = load_planner_settings().model_copy(update={"keep_target_voxels": False})
    seed_rule = plan_training(hardware["gpu_8gb"], full_minivess, dyn, settings=literal)
    assert seed_rule.patch_size == (96, 96, 5)


def test_cpu_memory_is_what_the_cache_leaves(make_profile, hardware):
    """On the CPU tier the working set shares free RAM with the cache; too little is refused."""
    data = make_profile([(512, 512, 40)] * 10)
    box = hardware["cpu_16gb"].model_copy(update={"ram_available_gb": 0.5})
    with pytest.raises(PlanError, match="lower cache_rate"):
        plan_training(box, data, load_model_profile("swinunetr"))
    plan = plan_training(box, data, load_model_profile("dynunet"), overrides={"cache_rate": 0})
    assert plan.vram_estimate_mb <= 0.8 * 0.5 * 1024
