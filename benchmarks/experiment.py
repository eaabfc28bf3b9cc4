"""Benchmark: the main job on its default (``minivess experiment``), wall time and held-out Dice.

Runs the real CLI once, as ``make experiment`` does, in a fresh temporary workspace (fresh
Prefect home, no inherited tracking URI), then reads the analysis report. The figure is the
champion's held-out Dice; the baseline measured in the same run is the ``baseline-threshold``
row (one intensity threshold learned on the training volumes); the ratio is champion / baseline
(must exceed 1). The wall time (target <= 600 s on an idle 2-core machine) and the load average
at start and end are reported with it, since a busy machine stretches the wall time.

Usage: ``python benchmarks/experiment.py [--config configs/experiments/default.yaml]``.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 600.0


def _load() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="experiment YAML (default: the default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "workspace"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MINIVESS_"))}
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect-home")
        cmd = [sys.executable, "-m", "minivess", "experiment", "--workspace", str(ws)]
        if args.config:
            cmd += ["--config", args.config]
        load_start = _load()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"minivess experiment failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        report = json.loads((ws / "analysis" / "report.json").read_text())
    champion = report["champion"]
    print(json.dumps({
        "benchmark": "experiment",
        "figure": "champion held-out Dice",
        "value": round(champion["dice"], 4),
        "baseline": "threshold learned on the training volumes",
        "baseline_value": round(champion["baseline_dice"], 4),
        "ratio": round(champion["dice"] / champion["baseline_dice"], 3),
        "champion": champion["name"],
        "beats_baseline": champion["beats_baseline"],
        "n_held_out": len(report["volumes"]),
        "wall_s": round(wall, 1),
        "target_wall_s": TARGET_S,
        "load_start": load_start,
        "load_end": _load(),
        "cpus": os.cpu_count(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
