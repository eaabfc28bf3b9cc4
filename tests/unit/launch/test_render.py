"""Rendering: the plan's candidates, recovery, checkpoints, data, run commands, service."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from minivess.errors import ConfigError, PlanError
from minivess.launch.render import RenderContext, dump_task, render_task
from minivess.launch.targets import TargetConfig
from minivess.planning.plan import TrainingPlan
from minivess.training.loop import PREEMPTED_EXIT_CODE


def test_spot_candidates_keep_the_planner_order_across_allowed_clouds(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig], changed
) -> None:
    spot = changed(shipped["spot"], infra=["aws", "gcp"], max_candidates=2)
    res = render_task(plan, spot, ctx).config["resources"]
    assert res["ordered"] == [
        {"accelerators": "T4:1", "infra": "aws"},
        {"accelerators": "T4:1", "infra": "gcp"},
        {"accelerators": "L4:1", "infra": "aws"},
        {"accelerators": "L4:1", "infra": "gcp"},
    ]
    assert res["use_spot"] is True
    anyof = changed(spot, candidates="any_of", infra=[])
    assert render_task(plan, anyof, ctx).config["resources"]["any_of"] == [
        {"accelerators": "T4:1"},
        {"accelerators": "L4:1"},
    ]


def test_accelerators_allowed_filters_the_candidates(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig], changed
) -> None:
    spot = changed(shipped["spot"], accelerators_allowed=["a10g"], infra=["aws"])
    res = render_task(plan, spot, ctx).config["resources"]
    assert res["accelerators"] == "A10G:1" and res["infra"] == "aws"


def test_plan_that_fits_no_configured_gpu_is_a_plan_error(
    ctx: RenderContext, shipped: dict[str, TargetConfig], changed, plan_with
) -> None:
    with pytest.raises(PlanError, match=r"fits no GPU in configs/gpus.yaml.*Fix"):
        render_task(plan_with(accelerators=[]), shipped["spot"], ctx)
    only_h100 = changed(shipped["spot"], accelerators_allowed=["H100"])
    with pytest.raises(PlanError, match=r"accelerators_allowed \['H100'\] contains none"):
        render_task(plan_with(), only_h100, ctx, origin="configs/targets/spot.yaml")


def test_a_gpu_is_never_paired_with_a_cloud_that_does_not_offer_it(
    ctx: RenderContext, shipped: dict[str, TargetConfig], changed, plan_with
) -> None:
    """configs/gpus.yaml says A10G is AWS-only and RTX4090 a RunPod card: on [aws, gcp] the
    A10G is rendered for aws alone, the RTX4090 not at all, and each skip is a decision."""
    plan = plan_with(accelerators=["T4:1", "RTX4090:1", "A10G:1", "V100:1"])
    spot = changed(shipped["spot"], infra=["aws", "gcp"], max_candidates=3)
    rendered = render_task(plan, spot, ctx)
    pairs = [(i["accelerators"], i["infra"]) for i in rendered.config["resources"]["ordered"]]
    assert pairs == [
        ("T4:1", "aws"), ("T4:1", "gcp"), ("A10G:1", "aws"), ("V100:1", "aws"), ("V100:1", "gcp")
    ]  # fmt: skip
    assert rendered.accelerators == ["T4:1", "A10G:1", "V100:1"]  # 3 offered, not 2
    [skip] = [d for d in rendered.decisions if d.name == "resources.skipped"]
    assert skip.value == ["A10G:1 on gcp (offered on aws)"]
    # On a cloud that offers it, and on the lab's own pool, the card is a candidate.
    runpod = changed(shipped["spot"], infra=["runpod"])
    assert "RTX4090:1" in render_task(plan, runpod, ctx).accelerators
    ssh = changed(shipped["ssh"], accelerators_allowed=["RTX4090"])
    assert render_task(plan, ssh, ctx).accelerators == ["RTX4090:1"]
    # Nothing offered on the target's clouds: the error names each GPU's clouds.
    only_4090 = changed(shipped["spot"], accelerators_allowed=["RTX4090"], infra=["aws", "gcp"])
    with pytest.raises(PlanError, match=r"RTX4090: runpod.*add one of those clouds"):
        render_task(plan, only_4090, ctx, origin="configs/targets/spot.yaml")


def test_an_allowed_gpu_missing_from_the_table_names_the_table_not_the_plan(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig], changed
) -> None:
    ssh = changed(shipped["ssh"], accelerators_allowed=["RTX4091"])
    with pytest.raises(ConfigError, match=r"'RTX4091', which is not in configs/gpus.yaml\. "
                       r"Did you mean 'RTX4090'\? Fix: add a row there") as err:  # fmt: skip
        render_task(plan, ssh, ctx, origin="configs/targets/ssh.yaml")
    assert "shrink" not in str(err.value)


def test_spot_recovers_on_the_trainers_exit_code_and_resumes_per_task(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    cfg = render_task(plan, shipped["spot"], ctx).config
    recovery = cfg["resources"]["job_recovery"]
    assert PREEMPTED_EXIT_CODE in recovery["recover_on_exit_codes"]
    assert recovery["strategy"] == "EAGER_NEXT_REGION"
    # The trainer writes the bucket itself (synchronously): no MOUNT_CACHED mount to lose it.
    assert "/checkpoints" not in cfg["file_mounts"]
    assert (
        '--checkpoint-dir s3://lab-bucket/checkpoints/default/"${SKYPILOT_TASK_ID}"/dicece-fold0'
        in cfg["run"]
    )
    assert cfg["file_mounts"]["/data"] == str(ctx.data_dir)
    assert (
        f'minivess train --plan "$HOME/.minivess/launch"/plan-{plan.plan_hash}.json '
        "--data /data --model dynunet --loss dicece --fold 0 --epochs 1" in cfg["run"]
    )
    assert '/bin/dvc" pull' in cfg["setup"]


def test_a_mounted_checkpoint_bucket_warns_about_mount_cached(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig], changed
) -> None:
    mounted = changed(shipped["spot"], checkpoints={"direct": False, "mode": "MOUNT_CACHED"})
    rendered = render_task(plan, mounted, ctx)
    assert rendered.config["file_mounts"]["/checkpoints"] == {
        "source": "s3://lab-bucket/checkpoints",
        "mode": "MOUNT_CACHED",
    }
    warning = next(d for d in rendered.decisions if d.name == "file_mounts.checkpoints")
    assert "may never reach the bucket" in warning.reason
    assert '--checkpoint-dir /checkpoints/default/"${SKYPILOT_TASK_ID}"' in rendered.config["run"]


def test_spot_without_any_bucket_is_a_clear_error(
    plan: TrainingPlan, project: Path, shipped: dict[str, TargetConfig]
) -> None:
    ctx = RenderContext(model="dynunet", workdir=project, data_dir=project / "data", dry_run=False)
    with pytest.raises(ConfigError, match=r"needs a checkpoint bucket.*MINIVESS_S3_BUCKET"):
        render_task(plan, shipped["spot"], ctx)
    # A dry run renders, with a placeholder and a warning that names the fix.
    dry = render_task(plan, shipped["spot"], RenderContext(**{**ctx.__dict__, "dry_run": True}))
    assert "s3://set-MINIVESS_S3_BUCKET/checkpoints" in dry.config["run"]
    warning = next(d for d in dry.decisions if d.name == "checkpoints.placeholder")
    assert warning.reason.startswith("DRY RUN ONLY") and "MINIVESS_S3_BUCKET" in warning.reason


def test_secrets_render_as_names_with_null_values(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    cfg = render_task(plan, shipped["spot"], ctx).config
    assert cfg["secrets"] and all(v is None for v in cfg["secrets"].values())
    assert "AWS_SECRET_ACCESS_KEY" in cfg["secrets"]


def test_no_data_dir_synthesises_on_the_node(
    plan: TrainingPlan, project: Path, shipped: dict[str, TargetConfig]
) -> None:
    ctx = RenderContext(model="dynunet", workdir=project, checkpoint_uri="s3://b/c")
    cfg = render_task(plan, shipped["spot"], ctx).config
    assert "/data" not in cfg.get("file_mounts", {})
    lines = cfg["run"].splitlines()
    synth = next(i for i, ln in enumerate(lines) if ln.startswith("minivess data synth"))
    assert lines[synth].startswith(
        'minivess data synth "$HOME"/minivess-workspace/data --scale small'
    )
    train = next(i for i, ln in enumerate(lines) if ln.startswith("minivess train"))
    assert train > synth and '--data "$HOME"/minivess-workspace/data' in lines[train]


def test_multi_node_run_is_torchrun_fed_by_skypilot_variables(
    plan: TrainingPlan,
    ctx: RenderContext,
    shipped: dict[str, TargetConfig],
    tmp_path: Path,
    changed,
) -> None:
    """Runs the rendered script with bash. ``torchrun`` is a shim that prints its argv,
    because real multi-node DDP needs several GPU machines."""
    spot = changed(shipped["spot"], num_nodes=2)
    cfg = render_task(plan, spot, ctx).config
    assert cfg["num_nodes"] == 2
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "torchrun"
    shim.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "SKYPILOT_NODE_IPS": "10.0.0.7\n10.0.0.8",
        "SKYPILOT_NODE_RANK": "1",
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NUM_GPUS_PER_NODE": "4",
        "SKYPILOT_TASK_ID": "sky-managed-1_minivess-train_1-0",
        "HOME": str(tmp_path),
    }
    out = subprocess.run(
        ["bash", "-c", cfg["run"]], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "--nnodes=2" in out and "--nproc_per_node=4" in out and "--node_rank=1" in out
    assert "--master_addr=10.0.0.7" in out
    i = out.index("-m")
    assert out[i + 1 : i + 4] == ["minivess", "train", "--plan"]
    assert (
        "s3://lab-bucket/checkpoints/default/sky-managed-1_minivess-train_1-0/dicece-fold0" in out
    )


def test_local_uses_local_gpus_and_runs_the_same_cli_call(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    cfg = render_task(plan, shipped["local"], ctx).config
    assert "accelerators" not in cfg["resources"]
    assert "setup" not in cfg and "file_mounts" not in cfg
    assert f"--data {ctx.data_dir}" in cfg["run"]
    assert f"{ctx.local_checkpoint_dir}/default/{plan.plan_hash}" in cfg["run"]
    gpu_ctx = RenderContext(**{**ctx.__dict__, "local_accelerators": ("A100:2",)})
    gpu = render_task(plan, shipped["local"], gpu_ctx).config
    assert gpu["resources"]["accelerators"] == "A100:2"
    assert "torchrun" in gpu["run"], "2 local GPUs -> DDP"


def test_serve_section_and_command(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    cfg = render_task(plan, shipped["serve"], ctx).config
    svc = cfg["service"]
    assert svc["readiness_probe"]["path"] == "/readyz"
    assert svc["readiness_probe"]["initial_delay_seconds"] > 0
    policy = svc["replica_policy"]
    assert {
        "min_replicas",
        "max_replicas",
        "target_qps_per_replica",
        "upscale_delay_seconds",
        "downscale_delay_seconds",
        "dynamic_ondemand_fallback",
    } <= set(policy)
    assert "base_ondemand_fallback_replicas" not in policy  # spot at the minimum
    assert "accelerators" not in cfg["resources"], "no capacity plan: a CPU replica"
    assert cfg["resources"]["cpus"].endswith("+") and cfg["resources"]["memory"].endswith("+")
    assert svc["ports"] == cfg["resources"]["ports"] == 3000
    assert (
        "minivess serve --model-uri models:/minivess-segmenter/latest --host 0.0.0.0 --port 3000"
        " --auth-token-env MINIVESS_API_TOKEN" in cfg["run"]
    )  # replicas listen on every interface; the token travels as a secret, by name
    assert "MINIVESS_API_TOKEN" in cfg["secrets"]
    assert "job_recovery" not in cfg["resources"]


def test_template_extras_survive_and_scripts_dump_as_blocks(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    template = {
        "resources": {"labels": {"team": "vessels"}, "accelerators": "K80:1"},
        "envs": {"EXTRA": "1"},
        "run": "echo template",
    }
    cfg = render_task(plan, shipped["spot"], ctx, template).config
    assert cfg["resources"]["labels"] == {"team": "vessels"}
    assert "accelerators" not in cfg["resources"], "the template's GPUs give way to the plan's"
    assert cfg["envs"]["EXTRA"] == "1" and cfg["envs"]["MINIVESS_TARGET"] == "spot"
    text = dump_task(cfg)
    assert "run: |\n  set -e\n" in text


def test_ssh_pool_keys_checkpoints_by_plan_so_a_rerun_resumes(
    plan: TrainingPlan, ctx: RenderContext, shipped: dict[str, TargetConfig]
) -> None:
    cfg = render_task(plan, shipped["ssh"], ctx).config
    assert f"--checkpoint-dir s3://lab-bucket/checkpoints/default/{plan.plan_hash}" in cfg["run"]
    assert cfg["resources"]["ordered"][0] == {"accelerators": "T4:1", "infra": "ssh/lab"}
    assert "use_spot" not in cfg["resources"]


def test_job_experiment_runs_the_main_job_with_the_bucket_in_envs(
    plan: TrainingPlan, project: Path, shipped: dict[str, TargetConfig], changed
) -> None:
    ctx = RenderContext(
        model="dynunet",
        workdir=project,
        experiment_config="configs/experiments/default.yaml",
        s3_envs={"MINIVESS_S3_BUCKET": "lab-bucket"},
    )
    spot = changed(shipped["spot"], job="experiment")
    cfg = render_task(plan, spot, ctx).config
    assert cfg["run"].splitlines()[-1] == (
        "minivess experiment --config configs/experiments/default.yaml "
        '--workspace "$HOME"/minivess-workspace'
    )
    assert cfg["envs"]["MINIVESS_S3_BUCKET"] == "lab-bucket"
    assert "/checkpoints" not in cfg.get("file_mounts", {}), "the flow writes to S3 itself"
    with pytest.raises(ConfigError, match="set `job: train`"):
        render_task(plan, changed(spot, num_nodes=2), ctx)


def test_local_job_experiment_uses_the_local_workspace(
    plan: TrainingPlan, project: Path, shipped: dict[str, TargetConfig], changed
) -> None:
    ctx = RenderContext(model="dynunet", workdir=project, local_workspace=project / "ws")
    cfg = render_task(plan, changed(shipped["local"], job="experiment"), ctx).config
    assert cfg["run"].splitlines()[-1].endswith(f"--workspace {project / 'ws'}")


@pytest.mark.parametrize("sigterm", [True, False])
def test_torchrun_exit_maps_to_75_only_when_the_node_was_preempted(
    plan: TrainingPlan,
    ctx: RenderContext,
    shipped: dict[str, TargetConfig],
    tmp_path: Path,
    changed,
    sigterm: bool,
) -> None:
    """torchrun exits 1 when it was SIGTERMed, even if its worker finished its last step and
    wrote no marker: the rendered script must still exit 75 then (a preemption), and keep a
    plain torchrun failure (no SIGTERM, no marker) as the error it is. ``torchrun`` is a shim
    that behaves so (real multi-node DDP is tests/integration/launch/test_rehearsal.py)."""
    cfg = render_task(plan, changed(shipped["spot"], num_nodes=2), ctx).config
    bindir = tmp_path / "bin"
    bindir.mkdir()
    started = tmp_path / "started"
    shim = bindir / "torchrun"
    shim.write_text(
        f"#!/bin/bash\ntrap 'exit 1' TERM\ntouch {started}\n"
        + ("sleep 120 & wait $!\n" if sigterm else "exit 1\n")
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "SKYPILOT_NODE_IPS": "127.0.0.1",
        "SKYPILOT_NODE_RANK": "0",
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_TASK_ID": "sky-managed-1_minivess-train_1-0",
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(["bash", "-c", cfg["run"]], env=env, start_new_session=True)
    if sigterm:
        for _ in range(600):  # the shim is up (a poll, not a timing assertion)
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code == (PREEMPTED_EXIT_CODE if sigterm else 1)
