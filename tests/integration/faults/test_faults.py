"""Fault injection: each fault ends in one line, within a bound, and the rest goes on.

Faults: a corrupted file with its mtime kept; one file per crash class (RGB, complex, negative
dims, unknown dtype, an inflate bomb) profiled under a memory cap; an 8x8x2 volume among normal
ones; SIGTERM during training setup; MLflow killed mid-run; S3 stalled (SIGSTOP on moto).
Time bounds here are generous harness limits (``timeout=``), not benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.broken import CRASH_CLASSES, corrupt_keep_mtime, write_pair

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
#: Address-space cap of the profiling subprocess: far below the 2 GiB the bomb inflates to.
MEMORY_CAP_BYTES = 1536 << 20


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINIVESS_CACHE_DIR": str(tmp / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | extra


def test_corruption_with_mtime_kept_and_each_crash_class_are_quarantined_the_rest_trains(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db
) -> None:
    """mv01 zeroed in place (size and mtime kept) after a cached profile, plus one file of each
    crash class: the profile misses the cache for mv01 only, ``train`` quarantines each with
    one line, trains the other five, and its MLflow run ends FINISHED."""
    import mlflow

    from minivess.data.profiler import profile_dataset
    from tests.fixtures.tiny import tiny_plan

    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = profile_dataset(data, progress=False, workers=1)
    assert before.n_volumes == 6 and not before.rejected
    corrupt_keep_mtime(data / "raw" / "mv01.nii.gz")
    for name, (maker, _) in CRASH_CLASSES.items():
        write_pair(data, name, maker())
    after = profile_dataset(data, progress=False, workers=1)
    assert after.dataset_hash != before.dataset_hash
    assert after.n_cached == 5  # the five intact volumes; mv01 (same mtime) missed the cache
    reasons = {Path(r.file).name.removesuffix(".nii.gz"): r.reason for r in after.rejected}
    assert set(reasons) == {"mv01", *CRASH_CLASSES}
    assert "corrupted" in reasons["mv01"] and "\n" not in reasons["mv01"]

    uri = mlflow_db(tmp_path / "mlflow.db")
    ws = str(tmp_path / "ws")
    env = _env(tmp_path, MLFLOW_TRACKING_URI=uri, MINIVESS_WORKSPACE=ws, COLUMNS="400")  # 1 line
    summary = tmp_path / "summary.json"
    plan = tiny_plan().save(tmp_path / "plan.json")
    cmd = _train_cli(data, tmp_path, "--plan", str(plan), "--summary-json", str(summary))
    cmd[cmd.index("--epochs") + 1] = "1"
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )  # timeout: a generous harness bound, not a benchmark
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    for name in reasons:
        assert [ln for ln in out.splitlines() if "quarantined " in ln and name in ln], name
    split = json.loads(summary.read_text())["split"]
    assert set(split["train"]) | set(split["val"]) == {"mv02", "mv03", "mv04", "mv05", "mv06"}
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]


PROFILE_UNDER_CAP = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from minivess.data.profiler import profile_dataset
p = profile_dataset(sys.argv[1], progress=False, workers=2)
print(json.dumps({"n": p.n_volumes, "rejected": [r.model_dump() for r in p.rejected]}))
"""


def test_each_crash_class_is_quarantined_under_a_memory_cap(
    tiny_data: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for name, (maker, _) in CRASH_CLASSES.items():
        write_pair(data, name, maker())
    proc = subprocess.run(
        [sys.executable, "-c", PROFILE_UNDER_CAP, str(data), str(MEMORY_CAP_BYTES)],
        env=_env(tmp_path), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == 6  # every good volume profiled
    reasons = {Path(r["file"]).name.removesuffix(".nii.gz"): r["reason"] for r in out["rejected"]}
    assert set(reasons) == set(CRASH_CLASSES)
    for name, (_, word) in CRASH_CLASSES.items():
        assert word in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert "Traceback" not in proc.stderr


def _train_cli(data: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "minivess", "train", "--data", str(data), "--model", "dynunet",
        "--epochs", "2", "--n-folds", "2", "--checkpoint-dir", str(tmp / "ck"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "line"),
    [
        (None, "planner: quarantined mv07: shape (8, 8, 2) is below the minimum patch"),
        ("pad", "zero-padded up to the patch"),
    ],
)
def test_a_tiny_volume_among_normal_ones_is_the_researchers_call_and_the_rest_trains(
    tiny_data: Path, tmp_path: Path, policy: str | None, line: str, mlflow_db
) -> None:
    """An 8x8x2 pair next to six normal ones: ``train`` plans for this machine and trains the
    rest, saying in one line what it did with the tiny one (quarantined by default, padded with
    ``small_volumes=pad``); the MLflow run ends FINISHED."""
    import mlflow

    from minivess.data.synth import VolumeSpec, write_volume

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    write_volume(data, VolumeSpec("mv07", (8, 8, 2), (1.0, 1.0, 2.0), seed=7), seed=0)
    uri = mlflow_db(tmp_path / "mlflow.db")
    ws = str(tmp_path / "ws")
    env = _env(tmp_path, MLFLOW_TRACKING_URI=uri, MINIVESS_WORKSPACE=ws, COLUMNS="400")  # 1 line
    extra = ["--set", f"small_volumes={policy}"] if policy else []
    summary = tmp_path / "summary.json"
    cmd = _train_cli(data, tmp_path, "--summary-json", str(summary), *extra)
    cmd[cmd.index("--epochs") + 1] = "1"
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )  # timeout: a generous harness bound, not a benchmark
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert [ln for ln in out.splitlines() if line in ln], out[-3000:]
    split = json.loads(summary.read_text())["split"]
    trained = set(split["train"]) | set(split["val"])
    normal = {"mv01", "mv02", "mv03", "mv04", "mv05", "mv06"}
    assert trained == (normal | {"mv07"} if policy == "pad" else normal)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float) -> list[str]:
    """Read output lines until one contains ``needle``; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never logged:\n{''.join(lines)[-3000:]}")


@pytest.mark.parametrize("when", ["profile:", "data gate:"])
def test_sigterm_during_setup_exits_75_and_leaves_the_run_killed(
    tiny_data: Path, tmp_path: Path, when: str, mlflow_db
) -> None:
    import mlflow

    uri = mlflow_db(tmp_path / "mlflow.db")
    plan = tmp_path / "plan.json"
    from tests.fixtures.tiny import tiny_plan

    tiny_plan().save(plan)
    env = _env(tmp_path, MLFLOW_TRACKING_URI=uri, MINIVESS_WORKSPACE=str(tmp_path / "ws"))
    proc = subprocess.Popen(
        _train_cli(tiny_data, tmp_path, "--plan", str(plan)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_line(proc, when, timeout=240)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        code = proc.wait(timeout=60)  # generous harness bound; the grace target is <= 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 75, rest[-3000:]
    assert "preempted (SIGTERM)" in rest and "Traceback" not in rest
    assert not (tmp_path / "ck" / "last.pt").exists()  # nothing half-written
    assert not list(tmp_path.glob("ck/.*.tmp"))
    runs = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()]
    )
    assert [r.info.status for r in runs] == ["KILLED"]


def test_orphan_tmp_checkpoints_are_cleaned_on_the_next_start(
    tiny_data: Path, tmp_path: Path, plan_factory
) -> None:
    from minivess.training import train
    from minivess.training.config import TrainConfig

    ck = tmp_path / "ck"
    ck.mkdir()
    orphan = ck / ".last.pt.abc123.tmp"  # what a SIGKILL between write and rename leaves
    orphan.write_bytes(b"half a checkpoint")
    cfg = TrainConfig(epochs=1, n_folds=2, checkpoint_dir=str(ck))
    train(tiny_data, plan_factory(), cfg, progress=False)
    assert not orphan.exists()
    assert (ck / "last.pt").is_file()


# --------------------------------------------------------------------------- storage faults


@pytest.fixture
def moto_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A moto S3 server in its own process (so SIGSTOP can stall it), with fake credentials."""
    from minivess.serving.server import free_port
    from tests.integration.conftest import FAKE_AWS, wait_http

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "moto.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for k, v in FAKE_AWS.items():
        monkeypatch.setenv(k, v)
    try:
        wait_http(url + "/moto-api/", timeout=60)
        yield proc, url
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=20)


def _small_dataset(root: Path) -> Path:
    data = root / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "mv01.nii.gz").write_bytes(b"x" * 1000)
    return data


def test_data_version_to_a_missing_bucket_shows_dvcs_reason_and_rolls_back(
    tmp_path: Path, moto_process
) -> None:
    from minivess.settings import load_settings
    from minivess.versioning.dvc import DvcError, version_data

    _, url = moto_process
    ws = tmp_path / "ws"
    data = _small_dataset(ws)
    env = {"MINIVESS_S3_BUCKET": "no-such-bucket", "MINIVESS_S3_ENDPOINT_URL": url}
    with pytest.raises(DvcError) as err:
        version_data(data, load_settings(ws, environ=env), timeout=120)
    message = str(err.value)
    assert "NoSuchBucket" in message or "does not exist" in message, message
    assert "dvc.org/support" not in message and "\n" not in message
    assert not (ws / "data.dvc").exists()  # nothing half-versioned


def test_stalled_s3_ends_dvc_checkpoints_and_mlflow_artifacts_in_one_line_within_a_bound(
    tmp_path: Path, moto_process, monkeypatch: pytest.MonkeyPatch, mlflow_db
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    import mlflow

    from minivess.settings import load_settings
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking import storage
    from minivess.tracking.contract import Flow
    from minivess.tracking.storage import StorageUnavailableError
    from minivess.training.checkpoint import CheckpointError, write_bytes
    from minivess.versioning.dvc import DvcError, version_data

    proc, url = moto_process
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="stalled")
    ws = tmp_path / "ws"
    data = _small_dataset(ws)
    (ws / "data.dvc").parent.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        ws, environ={"MINIVESS_S3_BUCKET": "stalled", "MINIVESS_S3_ENDPOINT_URL": url}
    ).ensure()
    mlflow_db(settings)
    client = mfa.connect(settings)  # the bucket answers now: MLflow artifacts go to S3
    # A user's AWS setup may ask for many retries; MLflow's own S3 client would honour them
    # (10 x botocore's 60 s read timeout): the bounded client config must win.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")
    # A 3 s read bound in place of 15 s: what is proven is that both clients get our bound
    # (a client without it would wait 10 min), and the slow tier does not wait 45 s for it.
    monkeypatch.setattr(storage, "S3_READ_TIMEOUT_S", 3)
    default_session = boto3.DEFAULT_SESSION
    proc.send_signal(signal.SIGSTOP)  # the endpoint accepts connections, then never answers
    t0 = time.monotonic()
    with pytest.raises(DvcError) as err:
        version_data(data, settings, timeout=20)
    assert time.monotonic() - t0 < 120  # generous harness bound (the timeout is 20 s)
    assert "did not finish" in str(err.value) or "timed out" in str(err.value).lower()
    assert not (ws / "data.dvc").exists()

    def checkpoint() -> None:
        write_bytes("s3://stalled/run/last.pt", b"state", endpoint_url=url)

    t0 = time.monotonic()
    with ThreadPoolExecutor(1) as pool:  # the checkpoint and the MLflow artifact, side by side
        saved = pool.submit(checkpoint)
        with (
            pytest.raises(StorageUnavailableError) as art_err,
            mfa.flow_run(client, settings, Flow.DATA) as run,
        ):
            mfa.log_text("profile", "profile.json")
        with pytest.raises(CheckpointError) as ck_err:
            saved.result()
    # harness bound: both clients' budget is 3 x 3 s plus backoff (botocore's: 10 x 60 s)
    assert time.monotonic() - t0 < 90
    assert "s3://stalled/run/last.pt" in str(ck_err.value)
    message = str(art_err.value)
    assert "MLflow could not store an artifact on S3" in message and "\n" not in message
    ended = mlflow.MlflowClient(settings.tracking_uri).get_run(run.info.run_id)
    assert ended.info.status == "FAILED"  # never left RUNNING
    assert boto3.DEFAULT_SESSION is default_session  # the bounded default was scoped


def _mlflow_server(root: Path, port: int) -> subprocess.Popen:
    from minivess.tracking.stack import ENV_JOB_EXECUTION

    # No job-execution workers (seven huey consumers): as `minivess stack up` starts its server.
    env = {**os.environ, ENV_JOB_EXECUTION: "false"}
    return subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("a"),
        start_new_session=True,  # its uvicorn worker is a child: kill the whole group
    )  # fmt: skip


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def test_mlflow_killed_mid_run_fails_in_one_line_and_the_run_ends_failed(
    tiny_data: Path, tmp_path: Path, mlflow_db
) -> None:
    from minivess.serving.server import free_port
    from minivess.settings import load_settings
    from minivess.tracking.mlflow_adapter import connect
    from tests.fixtures.tiny import tiny_plan
    from tests.integration.conftest import wait_http

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_db(tmp_path / "mlflow.db")  # the server's store (migrated once per session)
    server = _mlflow_server(tmp_path, port)
    plan = tiny_plan().save(tmp_path / "plan.json")
    ws = tmp_path / "ws"
    env = _env(
        tmp_path,
        MLFLOW_TRACKING_URI=url,
        MINIVESS_WORKSPACE=str(ws),
        MINIVESS_MLFLOW_RETRY_BUDGET_S="15",
    )
    cmd = _train_cli(tiny_data, tmp_path, "--plan", str(plan))
    cmd[cmd.index("--epochs") + 1] = "30"
    train = None
    try:
        wait_http(url + "/health", timeout=240)
        train = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while not (tmp_path / "ck" / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # epoch 1 written: the run is live on the server
        _kill_group(server)
        out, _ = train.communicate(timeout=150)  # generous harness bound (budget 15 s)
        assert train.returncode not in (0, 75), out[-3000:]
        assert f"MLflow tracking server {url} stopped answering" in out, out[-3000:]
        assert "Traceback" not in out
        server = _mlflow_server(tmp_path, port)  # back up: the next connection ends the run
        wait_http(url + "/health", timeout=240)
        client = connect(load_settings(ws, environ={"MLFLOW_TRACKING_URI": url}))
        exps = [e.experiment_id for e in client.search_experiments()]
        assert [r.info.status for r in client.search_runs(exps)] == ["FAILED"]
    finally:
        if train is not None and train.poll() is None:
            train.kill()
        _kill_group(server)
