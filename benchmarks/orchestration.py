"""Benchmark: the overhead of Prefect + MLflow around the main job (the seed's open question 3).

Two runs of the same work on the same synthetic data, in this process, each with a fresh
workspace and a fresh profile cache:

* ``plain``: the library calls the flows make (profile, QC report, plan, validate, train with a
  no-op tracker, evaluate, export + parity + bento build + HTTP smoke test), as plain calls;
* ``flows``: ``experiment_flow`` (Prefect flows and tasks, MLflow runs, artifacts, registry).

The figure is ``flows - plain`` as a fraction of the flows' wall time (target <= 10 %). Prefect's
one-off temporary-server start is reported separately and excluded: a team server or a second
run in the same process does not pay it. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

# benchmarks/profile.py would shadow the stdlib module 'profile' (torch imports it).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

EPOCHS = 1
TARGET = 0.10


def _experiment(root: Path) -> Path:
    from minivess.config import config_dir

    raw = yaml.safe_load((config_dir() / "experiments" / "default.yaml").read_text())
    raw["training"]["epochs"] = EPOCHS
    raw["name"] = "bench"
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def plain(root: Path, data_dir: Path, config: Path) -> float:
    """The same library calls as the flows, without Prefect or MLflow; returns seconds."""
    from minivess.data.gate import validate_dataset
    from minivess.data.profiler import profile_dataset
    from minivess.data.report import write_qc_report
    from minivess.evaluation import evaluate
    from minivess.experiment import load_experiment
    from minivess.planning import make_plan
    from minivess.serving.deploy import deploy_model
    from minivess.serving.settings import ServeSettings
    from minivess.training import train
    from minivess.training.config import expand_grid

    os.environ["MINIVESS_CACHE_DIR"] = str(root / "cache-plain")
    exp = load_experiment(config)
    start = time.perf_counter()
    prof = profile_dataset(data_dir, progress=False)
    write_qc_report(prof, root / "plain" / "qc.html")
    plan = make_plan(prof, exp.model, hardware=exp.hardware, overrides=exp.plan or None)
    validate_dataset(data_dir)
    raw = {"checkpoint_dir": str(root / "plain" / "ckpt"), **exp.training}
    summaries = [train(data_dir, plan, cfg, progress=False) for cfg in expand_grid(raw)]
    evaluate(data_dir, [s.checkpoint for s in summaries], root / "plain" / "eval")
    deploy_model(summaries[0].checkpoint, root / "plain" / "deploy",
                 settings=ServeSettings(backend=exp.deploy.backend),
                 smoke_volume=sorted((data_dir / "raw").glob("*.nii.gz"))[0])  # fmt: skip
    return time.perf_counter() - start


def flows(root: Path, data_dir: Path, config: Path) -> tuple[float, float]:
    """``experiment_flow`` on the same data; returns (seconds, Prefect server start seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    from minivess.orchestration.experiment_flow import experiment_flow

    os.environ["MINIVESS_CACHE_DIR"] = str(root / "cache-flows")
    ws = root / "ws"
    ws.mkdir()
    (ws / "data").symlink_to(data_dir)
    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=180):
        server_start = time.perf_counter() - t0
        start = time.perf_counter()
        experiment_flow(experiment=str(config), workspace=str(ws))
        return time.perf_counter() - start, server_start


def main() -> None:
    from minivess.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        synthesize(data_dir, progress=False)
        config = _experiment(root)
        t_plain = plain(root, data_dir, config)
        t_flows, t_server = flows(root, data_dir, config)
    overhead = (t_flows - t_plain) / t_flows
    print(json.dumps({
        "benchmark": "orchestration_overhead",
        "flows_s": round(t_flows, 2),
        "baseline_plain_calls_s": round(t_plain, 2),
        "ratio_flows_over_plain": round(t_flows / t_plain, 3),
        "overhead_fraction": round(overhead, 3),
        "prefect_temporary_server_start_s": round(t_server, 2),
        "target_fraction": TARGET,
        "meets_target": overhead <= TARGET,
        "epochs": EPOCHS,
    }))  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
