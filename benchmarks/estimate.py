"""Benchmark: the launcher's time estimate against a measured run on this machine.

In a fresh cache root: ``minivess calibrate`` (the step-time line and this device's TFLOPS),
then ``minivess launch --target spot --rehearse`` (uninterrupted, the rehearsal config unless
``--config``; the node links this venv). The figure is the estimate for this machine (its
steps x the calibrated step time); the baseline, measured in the same run, is the rehearsal's
uninterrupted wall time, which also holds what the estimate leaves out (the node's setup, the
imports, data caching, checkpoint writes); the ratio is measured / estimated.

Usage: ``python benchmarks/estimate.py [--config EXPERIMENT.yaml] [--model dynunet]``.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--model", default="dynunet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "MINIVESS_CACHE_DIR": str(root / "cache"),
               "MINIVESS_S3_BUCKET": "estimate-bench"}  # fmt: skip
        load_start = _load()
        cli = [sys.executable, "-m", "minivess"]
        subprocess.run([*cli, "calibrate", "--model", args.model], env=env, check=True,
                       capture_output=True)  # fmt: skip
        report = root / "r.json"
        cmd = [*cli, "launch", "--target", "spot", "--rehearse", "--json", str(report),
               "--reuse-venv", sys.prefix, "--model", args.model]  # fmt: skip
        if args.config:
            cmd += ["--config", args.config]
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=REPO)
        est = json.loads(report.read_text())["estimate"]
    print(
        json.dumps(
            {
                "benchmark": "launch_estimate_vs_rehearsal",
                "estimated_s": est["estimated_s"],
                "baseline": "the rehearsal's measured uninterrupted wall time",
                "baseline_s": est["measured_s"],
                "ratio": est["measured_over_estimated"],
                "steps": est["steps"],
                "source": est["source"],
                "cpus": os.cpu_count(),
                "load_avg_1m": [load_start, _load()],
            }
        )
    )


if __name__ == "__main__":
    main()
