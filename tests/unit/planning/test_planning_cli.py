"""``minivess plan`` and ``minivess calibrate``: exit codes, messages, the JSON they write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from minivess.config import config_dir
from minivess.planning.report import PLAN_JSON_KEYS

HW = config_dir() / "hardware"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from minivess.cli import main

    monkeypatch.setattr(sys, "argv", ["minivess", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def profile_json(tmp_path: Path, full_minivess) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(full_minivess.model_dump_json())
    return path


def test_plan_prints_decisions_and_writes_json(tmp_path, profile_json, monkeypatch, capsys):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("num_workers: 1\nsw_overlap: 0.5\n")
    out_json = tmp_path / "out" / "plan.json"
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(profile_json),
        "--model",
        "segresnet",
        "--hardware",
        str(HW / "gpu_8gb.yaml"),
        "--set",
        "batch_size=3",
        "--overrides",
        str(overrides),
        "--json",
        str(out_json),
    )
    assert code == 0, out
    assert "patch_size" in out and "override" in out and "reason" in out
    data = json.loads(out_json.read_text())
    assert set(PLAN_JSON_KEYS) <= set(data)
    assert data["tier"] == "gpu_low" and data["batch_size"] == 3 and data["num_workers"] == 1
    sources = {d["name"]: d["source"] for d in data["decisions"]}
    assert sources["batch_size"] == sources["num_workers"] == sources["sw_overlap"] == "override"
    assert sources["patch_size"] == "auto"
    assert data["patch_size"][2] == 5 and data["padded_volumes"] == []


def test_unknown_override_key_exits_2_with_hint(profile_json, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(profile_json),
        "--hardware",
        str(HW / "cpu_16gb.yaml"),
        "--set",
        "batchsize=2",
    )
    assert code == 2
    assert "Did you mean 'batch_size'" in err


def test_impossible_plan_exits_nonzero_with_reason(profile_json, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(profile_json),
        "--model",
        "swinunetr",
        "--gpu",
        "T4:1",
        "--set",
        "patch_size=[192,192,96]",
        "--set",
        "batch_size=4",
    )
    assert code == 2
    assert "swinunetr" in err and "MiB" in err and "budget" in err


def test_hardware_and_gpu_are_exclusive(profile_json, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(profile_json),
        "--gpu",
        "L4:1",
        "--hardware",
        str(HW / "cpu_16gb.yaml"),
    )
    assert code == 2 and "only one" in err


def test_plan_on_a_data_folder(tmp_path, monkeypatch, capsys):
    from minivess.data.synth import synthesize

    data = tmp_path / "data"
    synthesize(data, scale="small", n_volumes=3, seed=3, progress=False)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(data),
        "--hardware",
        str(HW / "cpu_16gb.yaml"),
        "--json",
        str(tmp_path / "plan.json"),
    )
    assert code == 0, err
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["patch_size"][2] <= 5  # the synthetic set has a 5-slice volume


@pytest.mark.slow
def test_calibrate_then_plan_uses_the_calibration(
    profile_json, monkeypatch, capsys, _cache_in_tmp: Path
):
    """The real measurement on this CPU: two tiny patches, stored under MINIVESS_CACHE_DIR."""
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "calibrate",
        "--model",
        "segresnet",
        "--patch",
        "32,32,8",
        "--patch",
        "48,48,8",
    )
    assert code == 0, err
    stored = _cache_in_tmp / "calibration" / "segresnet__cpu.json"
    cal = json.loads(stored.read_text())
    assert len(cal["points"]) == 2 and all(p["peak_mb"] > 0 for p in cal["points"])
    assert cal["points"][1]["peak_mb"] > cal["points"][0]["peak_mb"] * 0.9
    assert cal["train_bytes_per_voxel"] > 0 and cal["base_mb"] >= 0
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "plan",
        "--data",
        str(profile_json),
        "--model",
        "segresnet",
        "--hardware",
        str(HW / "cpu_16gb.yaml"),
    )
    assert code == 0 and "segresnet__cpu.json" in out


def test_calibrate_rejects_bad_patches_before_measuring(monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "calibrate",
        "--model",
        "dynunet",
        "--patch",
        "33,32,8",
        "--patch",
        "64,64,8",
    )
    assert code == 2 and "axis x=33" in err and "use 32 or 40" in err
    code, _, err = run_cli(monkeypatch, capsys, "calibrate", "--patch", "32,32")
    assert code == 2 and "three integers" in err


def test_broken_profile_json_names_the_file(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "profile.json"
    bad.write_text("{not json")
    code, _, err = run_cli(monkeypatch, capsys, "plan", "--data", str(bad))
    assert code == 2 and "profile.json: not valid JSON" in err
    bad.write_text('{"n_volumes": 3}')
    code, _, err = run_cli(monkeypatch, capsys, "plan", "--data", str(bad))
    assert code == 2 and "field 'min_shape': Field required" in err


def test_plan_prints_what_each_patch_policy_gives(tmp_path, monkeypatch, capsys):
    """Full-scale MiniVess shapes plus one 8×8×2 pair: both policies planned, the tiny one
    quarantined by min_volume and padded by median_pad; the thin mv03 caps min_volume."""
    from planning_profiles import profile_from_shapes

    from minivess.data.synth import volume_specs

    specs = volume_specs("full", seed=0)
    data = profile_from_shapes(
        [*(s.shape for s in specs), (8, 8, 2)],
        [*(s.spacing for s in specs), (1.0, 1.0, 1.0)],
        [*(s.name for s in specs), "tiny"],
    )
    path = tmp_path / "profile.json"
    path.write_text(data.model_dump_json())
    code, out, _ = run_cli(
        monkeypatch, capsys, "plan", "--data", str(path), "--hardware", str(HW / "gpu_80gb.yaml")
    )
    assert code == 0, out
    assert "Patch policies on this data" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "256x256x5" in rows["min_volume"] and "0 volume(s)" in rows["min_volume"]
    assert "x20" in rows["median_pad"] and "mv03 +(0, 0, 15)" in rows["median_pad"]
    assert rows["min_volume"].split("│")[-2].strip() == "tiny"  # quarantined
    assert "30 volume(s)" in rows["median_pad"]  # median_pad pads it (small_volumes: pad)
    assert "quarantine:tiny" in out and "capped_by" in out
