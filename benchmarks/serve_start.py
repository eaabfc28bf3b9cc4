"""Benchmark: what a serving replica spends before its first answer, without and with MONAI.

A replica loads the bundle and segments one window of zeros before ``/readyz`` turns green
(:class:`minivess.serving.service.MinivessSegmenter`). The sliding window and the intensity
steps are plain torch (:mod:`minivess.models.sliding`, :mod:`minivess.data.intensity`), so the
process never imports MONAI. The baseline is the same start with ``import monai`` added: what the
replica paid when it called MONAI's ``sliding_window_inference`` and ``NormalizeIntensityd``
(``import monai`` loads every MONAI subpackage, and with them mlflow, pandas, scipy and
scikit-image). Each point is a fresh process, the two kinds INTERLEAVED; a second part times one
sliding-window call of ours against MONAI's on the same volume, in one process, interleaved.

Prints one JSON line: ``figure`` = median CPU seconds of a start (load + warm-up + one volume),
``baseline`` = the same with MONAI imported, ``ratio`` = baseline/figure, and the per-call
seconds of both sliding windows.

Usage: ``python benchmarks/serve_start.py [--shape 96 96 13] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = """
import sys, time
t0 = time.perf_counter()
if sys.argv[3] == "monai":
    import monai  # noqa: F401
import numpy as np
from minivess.serving.inference import load_segmenter
from minivess.serving.settings import ServeSettings
seg = load_segmenter(ServeSettings(model_path=sys.argv[1], backend=sys.argv[2]))
seg.segment(np.zeros(seg.plan.sw_roi, dtype=np.float32))  # the replica's warm-up
seg.segment(np.load(sys.argv[4]))
print(time.perf_counter() - t0)
"""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _start(bundle: Path, backend: str, kind: str, volume: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds to the first mask) of one fresh serving process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", START, str(bundle), backend, kind, str(volume)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, float(out.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 13], help="volume x y z")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    args = p.parse_args()

    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from sw_batch import planned_model  # benchmarks/ is this script's sys.path[0]

    from minivess.models.sliding import sliding_window

    shape = (args.shape[0], args.shape[1], args.shape[2])
    with tempfile.TemporaryDirectory() as tmp:
        plan, model, bundle = planned_model(Path(tmp), shape)
        volume = Path(tmp) / "volume.npy"
        np.save(volume, np.random.default_rng(0).random(shape, dtype=np.float32))
        starts: dict[str, list[tuple[float, float]]] = {"plain": [], "monai": []}
        for r in range(args.rounds):
            for kind in starts:
                starts[kind].append(_start(bundle, args.backend, kind, volume))
            _log(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{k} {v[-1][0]:.2f} CPU-s" for k, v in starts.items()))  # fmt: skip

        x = torch.from_numpy(np.random.default_rng(1).random((1, 1, *shape), dtype=np.float32))
        calls: dict[str, list[float]] = {"ours": [], "monai": []}
        with torch.inference_mode():
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                ours = sliding_window(x, plan, model)
                calls["ours"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                theirs = sliding_window_inference(
                    x, plan.sw_roi, plan.sw_batch_size, model, overlap=plan.sw_overlap,
                    mode="gaussian",
                )  # fmt: skip
                calls["monai"].append(time.perf_counter() - t0)
        same = bool(torch.allclose(ours, theirs.as_subclass(torch.Tensor), rtol=0, atol=1e-5))

    med = {k: statistics.median(c for c, _ in v) for k, v in starts.items()}
    print(json.dumps({
        "benchmark": "serve_start", "backend": args.backend, "shape": list(shape),
        "figure": round(med["plain"], 2), "baseline": round(med["monai"], 2),
        "ratio": round(med["monai"] / med["plain"], 2), "unit": "CPU-s to the first mask",
        "wall_s": {k: round(statistics.median(w for _, w in v), 2) for k, v in starts.items()},
        "sliding_window_s": {k: round(min(v), 3) for k, v in calls.items()},
        "sliding_windows_agree": same,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
