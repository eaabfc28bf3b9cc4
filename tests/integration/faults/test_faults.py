"""Fault injection: each fault ends in one line, within a bound, and the rest goes on.

Faults: a corrupted file with its mtime kept; one file per crash class (RGB, complex, negative
dims, unknown dtype, an inflate bomb) profiled under a memory cap; SIGTERM during training
setup. Time bounds here are generous harness limits (``timeout=``), not benchmarks.
"""

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

from tests.fixtures.broken import CRASH_CLASSES, corrupt_keep_mtime, write_pair

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
#: Address-space cap of the profiling subprocess: far below the 2 GiB the bomb inflates to.
MEMORY_CAP_BYTES = 1536 << 20


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINIVESS_CACHE_DIR": str(tmp / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | extra


def test_corruption_with_mtime_kept_is_quarantined_and_the_rest_trains(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_factory
) -> None:
    from minivess.data.profiler import profile_dataset
    from minivess.training import train
    from minivess.training.config import TrainConfig

    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = profile_dataset(data, progress=False, workers=1)
    assert before.n_volumes == 6 and not before.rejected
    corrupt_keep_mtime(data / "raw" / "mv01.nii.gz")
    after = profile_dataset(data, progress=False, workers=1)
    assert after.dataset_hash != before.dataset_hash
    assert after.n_scanned == 1 and after.n_cached == 5  # the changed file missed the cache
    [bad] = after.rejected
    assert bad.file.endswith("mv01.nii.gz")
    assert "corrupted" in bad.reason and "\n" not in bad.reason
    cfg = TrainConfig(epochs=1, n_folds=2, checkpoint_dir=str(tmp_path / "ck"))
    summary = train(data, plan_factory(), cfg, progress=False)
    trained = set(summary.split.train) | set(summary.split.val)
    assert trained == {"mv02", "mv03", "mv04", "mv05", "mv06"}
    assert summary.epochs_completed == 1


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
    tiny_data: Path, tmp_path: Path, when: str
) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
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
