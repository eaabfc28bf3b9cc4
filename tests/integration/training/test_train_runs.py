"""End-to-end training runs through the real CLI: SIGTERM and resume from S3 checkpoints on a
moto server, torchrun DDP with two gloo processes and one MLflow run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from minivess.config import config_dir
from minivess.training.loop import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}
    for name in ("MLFLOW_TRACKING_URI", "MINIVESS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    env.update({k: v for k, v in extra.items()})
    return env


def _train_cmd(data: Path, ckpt_dir: str, summary: Path, epochs: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "minivess", "train", "--data", str(data), "--model", "dynunet",
        "--epochs", str(epochs), "--checkpoint-dir", ckpt_dir, "--summary-json", str(summary),
        *extra,
    ]  # fmt: skip


def test_sigterm_then_rerun_on_s3_matches_the_uninterrupted_run(
    tiny_data: Path, tmp_path: Path, moto_endpoint: str, s3_bucket: str, plan_factory
) -> None:
    """``minivess train`` with an ``s3://`` checkpoint dir, SIGTERM in epoch 2: exit 75 with the
    resume hint and no summary; the same command again resumes from S3 and ends with the metrics
    of an uninterrupted run. The first run finds the endpoint in ``configs/storage.yaml`` alone
    (no endpoint variable: it must not talk to AWS), the rerun in ``MINIVESS_S3_ENDPOINT_URL``."""
    from minivess.training.checkpoint import exists, load_model

    plan_file = plan_factory(batch_size=1).save(tmp_path / "plan.json")
    ref_summary = tmp_path / "ref.json"
    ref = subprocess.run(
        _train_cmd(tiny_data, str(tmp_path / "ref"), ref_summary, 3, "--plan", str(plan_file)),
        env=_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]

    uri = f"s3://{s3_bucket}/run"
    summary = tmp_path / "killed.json"
    cmd = _train_cmd(tiny_data, uri, summary, 3, "--plan", str(plan_file))
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "storage.yaml").write_text(yaml.safe_dump({"s3": {"endpoint_url": moto_endpoint}}))
    proc = subprocess.Popen(cmd, env=_env(MINIVESS_CONFIG_DIR=str(configs)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 180
    while not exists(f"{uri}/last.pt", moto_endpoint):  # epoch 1 saved: SIGTERM lands in 2
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    assert "rerun the same command to resume" in " ".join((out + err).split())
    assert not summary.exists()

    rerun = subprocess.run(
        cmd, env=_env(MINIVESS_S3_ENDPOINT_URL=moto_endpoint), capture_output=True, text=True,
        timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got, want = json.loads(summary.read_text()), json.loads(ref_summary.read_text())
    assert got["resumed_from_epoch"] is not None and got["resumed_from_epoch"] >= 1
    assert got["epochs_completed"] == want["epochs_completed"] == 3
    assert got["checkpoint"] == f"{uri}/best.pt"
    for key, value in want["final_metrics"].items():
        assert got["final_metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert got["best_metric"] == pytest.approx(want["best_metric"], rel=1e-5, abs=1e-6)
    for name in ("best.pt", "last.pt", "split.json", "plan.json"):
        assert exists(f"{uri}/{name}", moto_endpoint), name
    model, plan = load_model(uri, endpoint_url=moto_endpoint)
    assert plan.model == "dynunet"
    assert sum(p.numel() for p in model.parameters()) > 0


def test_torchrun_two_cpu_processes(
    tiny_data: Path, tmp_path: Path, plan_factory, mlflow_db
) -> None:
    import mlflow

    from minivess.tracking.contract import EXPERIMENTS, Flow

    plan_file = plan_factory(batch_size=1).save(tmp_path / "plan.json")
    tracking = mlflow_db(tmp_path / "mlflow.db")
    summary = tmp_path / "summary.json"
    ck = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "minivess", "train", "--data", str(tiny_data), "--plan", str(plan_file),
        "--epochs", "2", "--checkpoint-dir", str(ck), "--summary-json", str(summary),
    ]  # fmt: skip
    env = _env(MLFLOW_TRACKING_URI=tracking, MINIVESS_WORKSPACE=str(tmp_path / "ws"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(summary.read_text())
    assert out["world_size"] == 2
    assert out["epochs_completed"] == 2
    assert sorted(p.name for p in ck.iterdir()) == ["best.pt", "last.pt", "plan.json", "split.json"]

    client = mlflow.MlflowClient(tracking)
    exp = client.get_experiment_by_name(EXPERIMENTS[Flow.TRAIN])
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "val_dice")
    assert [m.step for m in history] == [1, 2]
    assert runs[0].data.params["world_size"] == "2"
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "train")}
    assert {"train/summary.json", "train/curves.png", "train/split.json"} <= logged
