"""Benchmark: CPU time of sliding-window inference on 1 intra-op thread against all cores.

Why the test suite runs each process on one thread (``OMP_NUM_THREADS=1``, tests/conftest.py):
its workers run side by side on the 2 cores, and a second OpenMP thread on a busy machine spins
while it waits for the core the other process holds. This measures that. On a synthetic
MiniVess-like volume, with the DynUNet and roi the planner picks here (random weights), it runs
the one sliding-window call (:func:`minivess.models.sliding.sliding_window`) with eager PyTorch
and ONNX Runtime, at 1 thread and at every core, first on an idle machine and then beside
``--busy`` spinning processes (one per core by default: the load the suite's workers make).
Thread counts are INTERLEAVED (1, all, 1, all, ...); each point is the median of ``--rounds``.

Prints one JSON line: ``figure`` = CPU seconds per call on 1 thread beside the load,
``baseline`` = the same on every core, ``ratio`` = baseline/figure (how much CPU the extra
threads burn), and every measured point (CPU and wall seconds).

Usage: ``python benchmarks/threads.py [--shape 96 96 13] [--rounds 5] [--busy 2]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _spin(stop: Any) -> None:
    while not stop.is_set():
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 13], help="volume x y z")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes")
    args = p.parse_args()

    import numpy as np
    import torch
    from sw_batch import planned_model  # benchmarks/ is this script's sys.path[0]

    from minivess.models.sliding import sliding_window
    from minivess.serving.inference import onnx_predictor, onnx_session

    all_threads = torch.get_num_threads()
    counts = sorted({1, all_threads})
    shape = (args.shape[0], args.shape[1], args.shape[2])
    with tempfile.TemporaryDirectory() as tmp:
        plan, model, bundle = planned_model(Path(tmp), shape)
        sessions = {n: onnx_predictor(onnx_session(bundle / "model.onnx", n)) for n in counts}
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, *shape)).astype("f4"))

        def run(engine: str, threads: int) -> tuple[float, float]:
            torch.set_num_threads(threads)
            pred = model if engine == "eager" else sessions[threads]
            c0, t0 = time.process_time(), time.perf_counter()
            sliding_window(x, plan, pred)
            return time.process_time() - c0, time.perf_counter() - t0

        points: dict[str, dict[str, list[tuple[float, float]]]] = {}
        with torch.inference_mode():
            for engine in ("eager", "onnx"):
                run(engine, all_threads)  # warm-up
            for load in ("idle", "busy"):
                stop = mp.Event()
                spinners = [mp.Process(target=_spin, args=(stop,)) for _ in range(args.busy)]
                if load == "busy":
                    for s in spinners:
                        s.start()
                try:
                    for r in range(args.rounds):
                        for engine in ("eager", "onnx"):
                            for n in counts:
                                key = f"{engine}-{n}"
                                points.setdefault(load, {}).setdefault(key, []).append(
                                    run(engine, n)
                                )
                        _log(f"{load} round {r + 1}/{args.rounds}")
                finally:
                    stop.set()
                    for s in spinners:
                        if s.is_alive():
                            s.join()
    med = {
        load: {
            key: {
                "cpu_s": round(statistics.median(c for c, _ in v), 3),
                "wall_s": round(statistics.median(w for _, w in v), 3),
            }
            for key, v in by_key.items()
        }
        for load, by_key in points.items()
    }
    figure = med["busy"]["eager-1"]["cpu_s"]
    baseline = med["busy"][f"eager-{all_threads}"]["cpu_s"]
    print(json.dumps({
        "benchmark": "threads", "shape": list(shape), "sw_roi": list(plan.sw_roi),
        "cores": os.cpu_count(), "all_threads": all_threads, "busy_processes": args.busy,
        "figure": figure, "baseline": baseline, "ratio": round(baseline / figure, 2),
        "median": med,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
