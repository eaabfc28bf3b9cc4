"""Benchmark: `minivess launch --target spot --dry-run` (plan, render, SkyPilot validation).

Two cases, interleaved with the baseline in each round:

- ``cold``: SkyPilot validates the task (its validation cache emptied first), so the dry run
  pays ``import sky`` in its validation child;
- ``repeat``: the same dry run again: SkyPilot accepted these exact task bytes before, so the
  answer comes from the validation cache and ``sky`` is never imported.

Baseline, measured in the same rounds: `python -c "import sky"`, the floor for anything that
asks SkyPilot's own code to validate a task. All run as fresh processes, with a cache root of
their own; each is warmed up once (bytecode, the synthetic dataset, the profile cache), then
timed REPEATS times; medians are reported. Prints one JSON line. Target: under 3 s wall on a
2-core machine.
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
    import shutil

    from minivess.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "data", n_volumes=6, seed=0, progress=False)
        env = {
            **os.environ,
            "MINIVESS_S3_BUCKET": "bench-bucket",
            "MINIVESS_CACHE_DIR": str(root / "cache"),
            "OMP_NUM_THREADS": "2",
        }
        verdicts = root / "cache" / "sky-offline" / "validated"
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
        cold, repeat, base = [], [], []
        for _ in range(REPEATS):
            shutil.rmtree(verdicts, ignore_errors=True)
            cold.append(_time(launch, env, root))
            assert any(verdicts.glob("*.json")), "the dry run left no validation verdict"
            repeat.append(_time(launch, env, root))
            base.append(_time(baseline, env, root))

    def med(runs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in runs)

    wall, cold_wall, floor = med(repeat, 0), med(cold, 0), med(base, 0)
    print(
        json.dumps(
            {
                "benchmark": "launch_spot_dry_run",
                "wall_s": round(wall, 3),
                "case": "repeat (SkyPilot accepted these task bytes before)",
                "cold_wall_s": round(cold_wall, 3),
                "baseline": "python -c 'import sky'",
                "baseline_s": round(floor, 3),
                "ratio": round(wall / floor, 2),
                "cold_ratio": round(cold_wall / floor, 2),
                "cpu_s": round(med(repeat, 1), 3),
                "cold_cpu_s": round(med(cold, 1), 3),
                "baseline_cpu_s": round(med(base, 1), 3),
                "target_s": TARGET_S,
                "meets_target": wall < TARGET_S,
                "cold_meets_target": cold_wall < TARGET_S,
                "repeats": REPEATS,
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
