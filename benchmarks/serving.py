"""Benchmark: segmenting one 512×512×Z volume in-process (PyTorch, ONNX Runtime) and over HTTP.

On the same synthetic MiniVess-like 512×512×Z volume (default Z=16), with the DynUNet and the
sliding-window roi that the planner picks for a CPU laptop (``configs/hardware/cpu_16gb.yaml``;
random weights: speed does not depend on them), it times

* ``torch``: in-process sliding-window inference with the eager PyTorch module (the baseline);
* ``onnx``: the same with ONNX Runtime on the exported graph (the service's default backend);
* ``http``: the round trip ``POST /segment`` through a real ``bentoml serve`` (ONNX backend) on
  loopback: upload, safe decode, inference, mask encoding, download.

Every way uses the same preprocessing, sw_batch_size=1, overlap and thread count. Each is
warmed up once and timed REPEATS times; medians are reported. Prints one JSON line:
``figure`` = ONNX seconds, ``baseline`` = torch seconds, ``ratio`` = torch/onnx (target >= 1.3),
and ``http_overhead`` = http/onnx - 1 (target <= 0.15).

Usage: ``python benchmarks/serving.py [--z 16] [--repeats 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=int, default=16, help="slices of the 512×512×Z volume")
    parser.add_argument("--xy", type=int, default=512, help="x and y size (512 for MiniVess)")
    parser.add_argument(
        "--hardware",
        default=str(Path(__file__).resolve().parents[1] / "configs/hardware/cpu_16gb.yaml"),
        help="hardware profile the planner plans for (default: a CPU laptop, so the roi does "
        "not depend on the machine running the benchmark)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume
    from minivess.models import build_model
    from minivess.planning import make_plan
    from minivess.serving.client import segment_file
    from minivess.serving.export import export_bundle
    from minivess.serving.inference import Segmenter, onnx_predictor, onnx_session, torch_predictor
    from minivess.serving.nifti import load_volume
    from minivess.serving.server import running_server
    from minivess.serving.settings import Backend, ServeSettings

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
            (data / sub).mkdir(parents=True)
        shape = (args.xy, args.xy, args.z)
        spec = VolumeSpec(name="mv01", shape=shape, spacing=(0.7, 0.7, 5.0), seed=3)
        image = Path(write_volume(data, spec, seed=0).image)
        plan = make_plan(data, "dynunet", hardware=args.hardware, use_calibration=False)
        _log(f"plan: roi {plan.sw_roi}, overlap {plan.sw_overlap}, strides {plan.strides}")
        model = build_model(plan).eval()
        bundle = export_bundle(model, plan, root / "bundle").bundle
        volume = load_volume(image, max_voxels=10**9).array

        torch_seg = Segmenter(torch_predictor(model), plan, Backend.TORCH)
        session = onnx_session(bundle / "model.onnx", num_threads=args.threads)
        onnx_seg = Segmenter(onnx_predictor(session), plan, Backend.ONNX)
        _log("timing in-process torch ...")
        t_torch = _median_time(lambda: torch_seg.segment(volume), args.repeats)
        _log(f"torch {t_torch:.2f} s; timing in-process ONNX Runtime ...")
        t_onnx = _median_time(lambda: onnx_seg.segment(volume), args.repeats)
        _log(f"onnx {t_onnx:.2f} s; starting bentoml serve ...")
        settings = ServeSettings(model_path=bundle, num_threads=args.threads)
        with running_server(settings, root / "serve") as server:
            out = root / "mask.nii.gz"
            t_http = _median_time(lambda: segment_file(server.url, image, out), args.repeats)
        _log(f"http {t_http:.2f} s")
        print(
            json.dumps(
                {
                    "benchmark": "serving",
                    "volume_xyz": list(spec.shape),
                    "sw_roi": list(plan.sw_roi),
                    "sw_overlap": plan.sw_overlap,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "torch_s": round(t_torch, 3),
                    "onnx_s": round(t_onnx, 3),
                    "http_s": round(t_http, 3),
                    "figure": round(t_onnx, 3),
                    "baseline": round(t_torch, 3),
                    "ratio": round(t_torch / t_onnx, 3),
                    "target_ratio": 1.3,
                    "http_overhead": round(t_http / t_onnx - 1.0, 3),
                    "target_http_overhead": 0.15,
                }
            )
        )


if __name__ == "__main__":
    main()
