"""Benchmark: every serving backend, interleaved, the deploy's pick, and a load run over HTTP.

On a synthetic MiniVess-like XY×XY×Z volume (default 512×512×16), with the DynUNet and the
sliding-window roi the planner picks for a CPU laptop (``configs/hardware/cpu_16gb.yaml``;
random weights: speed does not depend on them), it

1. exports a serving bundle and times every backend this host can run -- eager PyTorch,
   TorchScript, ONNX Runtime on the CPU (plus CUDA variants on a GPU host) -- INTERLEAVED
   (A, B, C, A, B, C, ...) and keeps the best of each: the same code the deploy runs
   (:mod:`minivess.serving.capacity`), so the pick printed here is the deploy's pick;
2. starts a real ``bentoml serve`` with the picked backend and sends ``--requests`` uploads
   of a ``--load-xy``×``--load-xy``×``--load-z`` volume with ``--concurrency`` clients:
   errors, p50/p95 latency and throughput.

Prints one JSON line: ``figure`` = best seconds of the picked backend, ``baseline`` = eager
torch (best), ``ratio`` = baseline/figure (>= 1 when the pick is right), the per-backend
figures, the capacity decisions and the load run.

Usage: ``python benchmarks/serving.py [--z 16] [--rounds 3] [--threads 2] [--requests 50]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write(data: Path, name: str, shape: tuple[int, int, int], seed: int) -> Path:
    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume

    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (data / sub).mkdir(parents=True, exist_ok=True)
    spec = VolumeSpec(name=name, shape=shape, spacing=(0.7, 0.7, 5.0), seed=seed)
    return Path(write_volume(data, spec, seed=seed).image)


def _load_run(url: str, payload: bytes, requests: int, concurrency: int) -> dict:
    import httpx

    def one(_: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        resp = httpx.post(f"{url}/segment", files={"volume": ("v.nii.gz", payload)}, timeout=900)
        return resp.status_code, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    lat = sorted(t for _, t in results)
    statuses = [s for s, _ in results]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": sum(1 for s in statuses if s != 200),
        "statuses": sorted(set(statuses)),
        "p50_s": round(statistics.median(lat), 3),
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3),
        "throughput_rps": round(requests / wall, 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=int, default=16, help="slices of the XY×XY×Z volume")
    parser.add_argument("--xy", type=int, default=512, help="x and y size (512 for MiniVess)")
    parser.add_argument(
        "--hardware",
        default=str(Path(__file__).resolve().parents[1] / "configs/hardware/cpu_16gb.yaml"),
        help="hardware profile the planner plans for (default: a CPU laptop)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per backend")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    parser.add_argument("--requests", type=int, default=50, help="load run: requests (0 skips)")
    parser.add_argument("--concurrency", type=int, default=8, help="load run: clients")
    parser.add_argument("--load-xy", type=int, default=128, help="load run volume x/y size")
    parser.add_argument("--load-z", type=int, default=8, help="load run volume slices")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from minivess.models import build_model
    from minivess.planning import make_plan
    from minivess.planning.settings import load_gpu_table
    from minivess.serving.capacity import (
        bundle_candidates,
        measure_backends,
        peak_rss_gb,
        plan_capacity,
    )
    from minivess.serving.export import export_bundle
    from minivess.serving.nifti import load_volume
    from minivess.serving.server import running_server
    from minivess.serving.settings import Backend, Device, ServeSettings

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        image = _write(root / "data", "mv01", (args.xy, args.xy, args.z), 3)
        plan = make_plan(root / "data", "dynunet", hardware=args.hardware, use_calibration=False)
        _log(f"plan: roi {plan.sw_roi}, overlap {plan.sw_overlap}, strides {plan.strides}")
        model = build_model(plan).eval()
        bundle = export_bundle(model, plan, root / "bundle").bundle
        volume = load_volume(image, max_voxels=10**9).array
        candidates = bundle_candidates(bundle, args.threads)
        _log(f"timing {[c.name for c in candidates]} interleaved, {args.rounds} rounds ...")
        figures = measure_backends(candidates, volume, args.rounds)
        cap = plan_capacity(
            figures, tuple(volume.shape), args.threads, load_gpu_table(), peak_rss_gb()
        )
        for line in cap.lines():
            _log(line)
        load = None
        if args.requests > 0:
            load_image = _write(root / "load", "load", (args.load_xy, args.load_xy, args.load_z), 5)
            settings = ServeSettings(
                model_path=bundle,
                num_threads=args.threads,
                backend=Backend(cap.backend),
                device=Device(cap.device),
            )
            with running_server(settings, root / "serve") as server:
                _log(f"load run: {args.requests} requests, {args.concurrency} concurrent ...")
                load = _load_run(
                    server.url, load_image.read_bytes(), args.requests, args.concurrency
                )
            load["volume_xyz"] = [args.load_xy, args.load_xy, args.load_z]
            load["backend"] = cap.picked
            _log(f"load run: {load}")
        eager = cap.figure("eager-cpu").best_s
        picked = cap.figure(cap.picked).best_s
        print(
            json.dumps(
                {
                    "benchmark": "serving",
                    "volume_xyz": list(volume.shape),
                    "sw_roi": list(plan.sw_roi),
                    "sw_overlap": plan.sw_overlap,
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "backends": {
                        f.name: {"best_s": round(f.best_s, 3), "median_s": round(f.median_s, 3)}
                        for f in figures
                    },
                    "picked": cap.picked,
                    "picked_is_fastest": picked == min(f.best_s for f in figures),
                    "figure": round(picked, 3),
                    "baseline": round(eager, 3),
                    "ratio": round(eager / picked, 3),
                    "target_qps_per_replica": cap.target_qps_per_replica,
                    "upscale_delay_seconds": cap.upscale_delay_seconds,
                    "downscale_delay_seconds": cap.downscale_delay_seconds,
                    "resources": cap.resources,
                    "load": load,
                }
            )
        )


if __name__ == "__main__":
    main()
