"""Benchmark: windows per forward pass in sliding-window inference (the plan's ``sw_batch_size``).

On a synthetic MiniVess-like volume, with the DynUNet and the roi the planner picks for
``--hardware`` (random weights: speed does not depend on them), it times the one sliding-window
call (:func:`minivess.models.sliding.sliding_window`) with 1, 2, 4, ... windows per forward,
eager PyTorch and ONNX Runtime, INTERLEAVED (1, 2, 4, ..., 1, 2, 4, ...), best of ``--rounds``.

Prints one JSON line: ``figure`` = best seconds at the plan's ``sw_batch_size``, ``baseline`` =
best seconds at 1 window per forward (what evaluation and serving ran before the plan decided
it), ``ratio`` = baseline/figure, and every measured point.

Usage: ``python benchmarks/sw_batch.py [--shape 96 96 13] [--hardware configs/hardware/X.yaml]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def planned_model(root: Path, shape: tuple[int, int, int], hardware: str | None = None) -> Any:
    """Two synthetic MiniVess-like volumes of ``shape`` under ``root/data``, the plan for them
    (``hardware``, else this host), its DynUNet (random weights, eval mode) and an exported
    serving bundle: ``(plan, model, bundle)``."""
    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume
    from minivess.models import build_model
    from minivess.planning import make_plan
    from minivess.serving.export import export_bundle

    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (root / "data" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(2):
        spec = VolumeSpec(name=f"mv0{i + 1}", shape=shape, spacing=(0.7, 0.7, 5.0), seed=i)
        write_volume(root / "data", spec, seed=i)
    plan = make_plan(root / "data", "dynunet", hardware=hardware, use_calibration=False)
    model = build_model(plan).eval()
    return plan, model, export_bundle(model, plan, root / "bundle").bundle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 13], help="volume x y z")
    p.add_argument("--hardware", default=None, help="hardware YAML to plan for (default: here)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    import torch

    from minivess.models.sliding import sliding_window
    from minivess.serving.inference import onnx_predictor, onnx_session

    shape = (args.shape[0], args.shape[1], args.shape[2])
    with tempfile.TemporaryDirectory() as tmp:
        plan, model, bundle = planned_model(Path(tmp), shape, args.hardware)
        _log(f"plan: roi {plan.sw_roi}, overlap {plan.sw_overlap}, sw_batch {plan.sw_batch_size}")
        predictors = {"eager": model, "onnx": onnx_predictor(onnx_session(bundle / "model.onnx"))}
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, *shape)).astype("f4"))
        batches = sorted({*args.batches, plan.sw_batch_size})
        best: dict[str, dict[int, float]] = {k: {} for k in predictors}
        with torch.inference_mode():
            for pred in predictors.values():  # warm-up
                sliding_window(x, plan, pred, sw_batch_size=1)
            for r in range(args.rounds):
                for name, pred in predictors.items():
                    for b in batches:
                        t0 = time.perf_counter()
                        sliding_window(x, plan, pred, sw_batch_size=b)
                        s = time.perf_counter() - t0
                        best[name][b] = min(best[name].get(b, s), s)
                _log(f"round {r + 1}/{args.rounds}: {best}")
    figure, baseline = best["eager"][plan.sw_batch_size], best["eager"][1]
    print(json.dumps({
        "benchmark": "sw_batch", "shape": list(shape), "hardware": args.hardware or "this host",
        "sw_roi": list(plan.sw_roi), "sw_overlap": plan.sw_overlap,
        "planned_sw_batch_size": plan.sw_batch_size, "threads": torch.get_num_threads(),
        "figure": round(figure, 3), "baseline": round(baseline, 3),
        "ratio": round(baseline / figure, 2),
        "best_s": {k: {str(b): round(s, 3) for b, s in v.items()} for k, v in best.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
