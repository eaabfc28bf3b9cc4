"""Benchmark: `minivess launch --target spot --dry-run` (plan, render, SkyPilot validation).

Baseline, measured in the same run: `python -c "import sky"`, the floor for anything that asks
SkyPilot's own code to validate a task. Both run as fresh processes; each is warmed up once
(bytecode, the synthetic dataset, the profile cache), then timed REPEATS times; medians are
reported. Prints one JSON line. Target: under 3 s wall on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 3
TARGET_S = 3.0


def _time(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): CPU time is less sensitive to a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    from minivess.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "data", n_volumes=6, seed=0, progress=False)
        env = {**os.environ, "MINIVESS_S3_BUCKET": "bench-bucket", "OMP_NUM_THREADS": "2"}
        launch = [
            sys.executable,
            "-m",
            "minivess",
            "launch",
            "--target",
            "spot",
            "--dry-run",
            "--data",
            str(root / "data"),
            "--out",
            str(root / "out"),
            "--workspace",
            str(root / "ws"),
        ]
        baseline = [sys.executable, "-c", "import sky"]
        for cmd in (launch, baseline):  # warm-up
            _time(cmd, env, root)
        ours = [_time(launch, env, root) for _ in range(REPEATS)]
        base = [_time(baseline, env, root) for _ in range(REPEATS)]
    wall, floor = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in base)
    cpu, cpu_floor = statistics.median(c for _, c in ours), statistics.median(c for _, c in base)
    print(
        json.dumps(
            {
                "benchmark": "launch_spot_dry_run",
                "wall_s": round(wall, 3),
                "baseline": "python -c 'import sky'",
                "baseline_s": round(floor, 3),
                "ratio": round(wall / floor, 2),
                "cpu_s": round(cpu, 3),
                "baseline_cpu_s": round(cpu_floor, 3),
                "target_s": TARGET_S,
                "meets_target": wall < TARGET_S,
                "repeats": REPEATS,
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
