"""Benchmark: the planner's memory model vs measured peak memory, and planning time.

Prints ONE JSON line:
    * ``value``: the largest |predicted - measured| / measured over 3 patch sizes per model, in %
      (CPU: peak RSS delta of a forked process; CUDA: ``torch.cuda.max_memory_allocated``);
      predicted by the model profile's static figures (``ram`` on CPU, ``vram`` on CUDA).
    * ``baseline``: the same error of the seed's naive estimate (400 MiB + 24 B/voxel).
    * ``ratio``: value / baseline.
    * ``plan_ms_1000``: planning time for a 1,000-volume profile (auto and with a padded patch
      override, the slower of the two), ``plan_baseline_ms``: validating that profile from JSON.

Usage:
    .venv/bin/python benchmarks/vram_model.py                      # CPU, dynunet + segresnet
    .venv/bin/python benchmarks/vram_model.py --device cuda --models dynunet,segresnet,swinunetr
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
# benchmarks/profile.py would shadow the stdlib module 'profile' (torch imports it): drop the
# script's folder from the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

SEED_BASE_MB, SEED_BYTES_PER_VOXEL = 400.0, 24.0  # the seed's dynunet.yaml (§2 Phase C)

PATCHES = {
    "cpu": {
        "per_axis": [(64, 64, 16), (128, 128, 16), (128, 128, 32)],
        "fixed": [(32, 32, 32), (64, 64, 32), (96, 96, 32)],
    },
    "cuda": {
        "per_axis": [(128, 128, 16), (128, 128, 64), (192, 192, 64)],
        "fixed": [(64, 64, 32), (128, 128, 64), (128, 128, 128)],
    },
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def memory_points(models: list[str], device: str, batch: int) -> list[dict]:
    from minivess.planning.harness import measure
    from minivess.planning.memory import training_mb
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.topology import network_shape

    points = []
    for name in models:
        profile = load_model_profile(name)
        amp = device == "cuda" and profile.supports_amp
        mem = profile.memory(device == "cuda")
        for patch in PATCHES[device][profile.topology.rule]:
            shape = network_shape(patch, profile.topology)
            voxels = shape[0] * shape[1] * shape[2]
            measured = measure(profile, patch, batch=batch, device=device, amp=amp)[0]
            predicted = training_mb(mem, voxels, batch, amp)
            seed = SEED_BASE_MB + batch * voxels * SEED_BYTES_PER_VOXEL / 2**20
            points.append(
                {
                    "model": name,
                    "patch": list(patch),
                    "batch": batch,
                    "amp": amp,
                    "measured_mb": round(measured, 1),
                    "predicted_mb": round(predicted, 1),
                    "error_pct": round(100 * (predicted - measured) / measured, 1),
                    "seed_error_pct": round(100 * (seed - measured) / measured, 1),
                }
            )
            _log(json.dumps(points[-1]))
    return points


#: --fit: patches whose measurements fit (base_mb, bytes_per_feature_voxel), and held-out
#: patches (other shapes: thin, deep, non-square) on which the fitted model is checked.
FIT_PATCHES = {
    "per_axis": ([(64, 64, 16), (96, 96, 16), (64, 64, 32)], [(128, 128, 5), (96, 64, 24)]),
    "fixed": ([(32, 32, 32), (64, 64, 32), (96, 96, 32)], [(64, 64, 64), (96, 64, 5)]),
}


def fit_feature_model(models: list[str], device: str, batch: int) -> list[dict]:
    """Measure peak memory, fit ``base + batch * F(patch) * c`` on the fit patches (least
    squares), and report its error on the held-out patches, next to the per-voxel model's."""
    import numpy as np

    from minivess.planning.harness import measure
    from minivess.planning.memory import feature_voxels, training_mb
    from minivess.planning.planner import network_plan
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.topology import network_shape

    out = []
    for name in models:
        profile = load_model_profile(name)
        mem = profile.memory(device == "cuda")
        amp = device == "cuda" and profile.supports_amp
        fit, held = FIT_PATCHES[profile.topology.rule]
        rows = []
        for patch in [*fit, *held]:
            plan = network_plan(profile, patch)
            shape = network_shape(patch, profile.topology)
            feats = feature_voxels(shape, plan.strides, profile.topology, mem)
            measured = measure(profile, patch, batch=batch, device=device, amp=amp)[0]
            rows.append((patch, shape, feats, measured))
            _log(json.dumps({"model": name, "patch": patch, "features": feats, "mb": measured}))
        a = np.array([[1.0, batch * r[2] / 2**20] for r in rows[: len(fit)]])
        y = np.array([r[3] for r in rows[: len(fit)]])
        (base, per_feature), *_ = np.linalg.lstsq(a, y, rcond=None)
        for patch, shape, feats, measured in rows[len(fit) :]:
            voxels = shape[0] * shape[1] * shape[2]
            pred = base + batch * feats * per_feature / 2**20
            static = training_mb(mem, voxels, batch, amp)
            out.append(
                _held_out_row(
                    name, patch, measured, pred, static,
                    fit_base_mb=round(float(base), 1),
                    fit_bytes_per_feature_voxel=round(float(per_feature), 2),
                )
            )  # fmt: skip
    return out


def _held_out_row(
    name: str, patch: tuple, measured: float, pred: float, static: float, **extra: float
) -> dict:
    """One held-out patch: measured MiB vs the feature-map model and the per-voxel model."""
    row = {
        "model": name,
        "held_out_patch": list(patch),
        "measured_mb": round(measured, 1),
        "feature_model_mb": round(pred, 1),
        "feature_error_pct": round(100 * (pred - measured) / measured, 1),
        "per_voxel_error_pct": round(100 * (static - measured) / measured, 1),
        **extra,
    }
    _log(json.dumps(row))
    return row


def check_held_out(models: list[str], device: str, batch: int) -> list[dict]:
    """The profile's feature-map model (fitted on other patches) on the held-out patches."""
    from minivess.planning.harness import measure
    from minivess.planning.memory import feature_voxels, training_mb
    from minivess.planning.planner import network_plan
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.topology import network_shape

    out = []
    for name in models:
        profile = load_model_profile(name)
        mem = profile.memory(device == "cuda")
        amp = device == "cuda" and profile.supports_amp
        for patch in FIT_PATCHES[profile.topology.rule][1]:
            plan = network_plan(profile, patch)
            shape = network_shape(patch, profile.topology)
            voxels = shape[0] * shape[1] * shape[2]
            feats = feature_voxels(shape, plan.strides, profile.topology, mem)
            measured = measure(profile, patch, batch=batch, device=device, amp=amp)[0]
            pred = training_mb(mem, voxels, batch, amp, feats)
            static = training_mb(mem, voxels, batch, amp)
            out.append(_held_out_row(name, patch, measured, pred, static))
    return out


def planning_time(n_volumes: int = 1000, repeats: int = 20) -> tuple[float, float]:
    """(ms to plan, ms to validate the profile) for ``n_volumes`` MiniVess-like volumes."""
    from minivess.config import config_dir
    from minivess.data.schema import DatasetProfile, VolumeStats
    from minivess.planning.hardware import load_hardware
    from minivess.planning.planner import plan_training
    from minivess.planning.profiles import load_model_profile
    from minivess.planning.settings import load_planner_settings

    vols = [
        VolumeStats(
            name=f"v{i:04d}",
            file=f"v{i:04d}.nii.gz",
            label_file=None,
            shape=(512, 512, 5 + i % 106),
            spacing=(1.0, 1.0, 2.0),
            dtype="uint16",
            intensity_min=0,
            intensity_max=1,
            intensity_mean=0.5,
            intensity_std=0.1,
            intensity_p1=0,
            intensity_p99=1,
            foreground_ratio=0.05,
            bytes=4 * 512 * 512 * (5 + i % 106),
        )
        for i in range(n_volumes)
    ]
    profile = DatasetProfile(
        data_dir="bench",
        n_volumes=n_volumes,
        min_shape=(512, 512, 5),
        max_shape=(512, 512, 110),
        median_shape=(512, 512, 57),
        spacing_range=((1.0, 1.0, 2.0), (1.0, 1.0, 2.0)),
        is_anisotropic=False,
        total_size_gb=sum(v.bytes for v in vols) / 1e9,
        dataset_hash="0" * 16,
        volumes=vols,
    )
    blob = profile.model_dump_json()
    hw = load_hardware(config_dir() / "hardware" / "gpu_24gb.yaml")
    model = load_model_profile("dynunet")
    settings = load_planner_settings()
    plan_training(hw, profile, model, settings=settings)  # warm caches

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * min(times)

    auto = best(lambda: plan_training(hw, profile, model, settings=settings))
    padded = best(
        lambda: plan_training(
            hw, profile, model, overrides={"patch_size": [128, 128, 16]}, settings=settings
        )
    )
    read = best(lambda: DatasetProfile.model_validate_json(blob))
    return max(auto, padded), read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", default="dynunet,segresnet")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--fit", action="store_true", help="fit the feature-map model, check it on held-out"
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="check the profiles' feature-map figures on the held-out patches only",
    )
    args = parser.parse_args()
    if args.fit or args.held_out:
        run = check_held_out if args.held_out else fit_feature_model
        held = run(args.models.split(","), args.device, args.batch)
        err = max(abs(p["feature_error_pct"]) for p in held)
        base = max(abs(p["per_voxel_error_pct"]) for p in held)
        print(
            json.dumps(
                {
                    "benchmark": "vram_model_fit",
                    "device": args.device,
                    "figure": "max |feature model - measured| / measured on held-out patches, %",
                    "value": err,
                    "baseline": base,
                    "baseline_is": "the profile's per-voxel model on the same patches",
                    "ratio": round(err / base, 3) if base else None,
                    "within_15pct": err <= 15,
                    "points": held,
                }
            )
        )
        return
    card = "cpu"
    if args.device == "cuda":
        import torch

        card = torch.cuda.get_device_name(0)
    points = memory_points(args.models.split(","), args.device, args.batch)
    err = max(abs(p["error_pct"]) for p in points)
    seed_err = max(abs(p["seed_error_pct"]) for p in points)
    plan_ms, read_ms = planning_time()
    print(
        json.dumps(
            {
                "benchmark": "vram_model",
                "device": args.device,
                "card": card,
                "figure": "max |predicted - measured| / measured peak memory, %",
                "value": err,
                "baseline": seed_err,
                "ratio": round(err / seed_err, 3),
                "tolerance_pct": 15 if args.device == "cuda" else 25,
                "within_tolerance": err <= (15 if args.device == "cuda" else 25),
                "plan_ms_1000": round(plan_ms, 2),
                "plan_baseline_ms": round(read_ms, 2),
                "plan_ratio": round(plan_ms / read_ms, 2),
                "points": points,
            }
        )
    )


if __name__ == "__main__":
    main()
