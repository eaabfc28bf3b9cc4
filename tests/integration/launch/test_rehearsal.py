"""The rendered spot task, rehearsed as SkyPilot's node runs it, with injected preemptions.

Same harness as ``minivess launch --target spot --rehearse``: the YAML read back with
``sky.Task.from_yaml``, fresh HOMEs with ``~/sky_workdir``, ``SKYPILOT_*`` variables, a moto S3
bucket on 127.0.0.1, SIGTERM + grace + SIGKILL, recovery on a fresh node with the same task id.
The node venv is this checkout's (``reuse_venv``): a full node setup installs torch, minutes.
The grace window is generous because the trainer stops at its next step boundary (on a busy
2-core machine a step can take many seconds); the test asserts outcomes, never timings.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from minivess.launch.rehearse import RehearsalOptions, rehearse
from minivess.training.loop import PREEMPTED_EXIT_CODE

pytestmark = pytest.mark.slow

#: Seconds between SIGTERM and SIGKILL in these tests (the CLI default is 30).
GRACE_S = 240.0


def _options(tmp_path: Path, **changes: object) -> RehearsalOptions:
    system = shutil.which("python3.10")  # SkyPilot's default image Python, when installed
    fields: dict[str, object] = dict(
        target="spot",
        preempt=1,
        grace_s=GRACE_S,
        json_path=tmp_path / "r.json",
        reuse_venv=Path(sys.prefix),
        system_python=Path(system) if system else None,
        work_dir=tmp_path / "rehearsal",
        runtime_dir=tmp_path / "sky-runtime",
    )
    return RehearsalOptions(**(fields | changes))  # type: ignore[arg-type]


def test_two_node_torchrun_rehearsal_recovers_two_preemptions(tmp_path: Path) -> None:
    """Two loopback nodes under torchrun (gloo), preempted twice at different points: torchrun
    exits 1 for a worker's 75, the run script says 75, so SkyPilot's recover_on_exit_codes
    matches; the final metrics equal the uninterrupted run's. (The single-node SIGTERM -> 75 ->
    resume path is tests/integration/training/test_train_runs.py; the CLI's one-node
    ``--preempt 2`` run is recorded in docs/targets.md.)"""
    report = rehearse(_options(tmp_path, nodes=2, preempt=2))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["nodes"] == 2 and data["preemptions"] == 2, data["exit_codes"]
    codes = data["exit_codes"]
    assert codes[:2] == [[PREEMPTED_EXIT_CODE] * 2] * 2, codes
    assert codes[-1] == [0, 0], codes
    stops = [a["stopped_at"] for a in data["attempts"][:2]]
    assert stops[0] != stops[1], stops  # two different points of the training
    assert all(data["checkpoint_in_bucket_at_teardown"])
    assert data["recovered"] is True and data["lost_steps"] == 0
    assert data["final_metrics"] and data["metrics_equal"] is True
    assert data["final_metrics"] == data["uninterrupted_metrics"]
    assert report.passed


def _ssh_target(tmp_path: Path, sshd) -> Path:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host labnode\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {sshd.known_hosts}\n  StrictHostKeyChecking yes\n"
    )
    path = tmp_path / "lab.yaml"
    path.write_text(
        "kind: ssh\nname: lab-job\njob: train\n"
        f"pool:\n  name: lab\n  hosts: [labnode]\n  ssh_config: {cfg}\n"
        "secrets: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]\n"  # the lab S3 store's
    )
    return path


def test_ssh_target_rehearsal_runs_its_node_over_a_real_sshd(tmp_path: Path, sshd) -> None:
    """The ssh target's node is reached as SkyPilot reaches a pool host: through sshd (an
    ``~/.ssh/config`` alias), workdir sent over the connection, setup then run there; the
    checkpoints reach the (loopback) lab S3 store. No preemption: one run."""
    log = tmp_path / "sshd" / "sshd.log"
    before = log.read_text().count("Accepted publickey")
    # One epoch: no preemption to place, so the shortest run proves the path.
    from minivess.resources import config_dir

    exp = (config_dir() / "experiments" / "rehearsal.yaml").read_text()
    one_epoch = tmp_path / "one-epoch.yaml"
    one_epoch.write_text(exp.replace("  epochs: 2\n", "  epochs: 1\n"))
    assert one_epoch.read_text() != exp
    target = str(_ssh_target(tmp_path, sshd))
    report = rehearse(_options(tmp_path, target=target, preempt=0, config=str(one_epoch)))
    node_log = tmp_path / "rehearsal" / "uninterrupted" / "node0" / "node.log"
    assert report.exit_codes == [[0]], node_log.read_text()[-3000:]
    assert report.passed and report.final_metrics
    assert report.checkpoint_in_bucket_at_teardown == [True]
    # setup, run and the workdir copy each went through sshd
    assert log.read_text().count("Accepted publickey") - before >= 3
    rid = re.search(r"sky-rehearsal-([0-9a-f]{8})_", report.task_id)
    assert rid and not Path(f"/tmp/minivess-rehearsal-{rid.group(1)}").exists()  # cleaned up
