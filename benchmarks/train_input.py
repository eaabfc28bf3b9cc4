"""Training input pipeline benchmark; prints ONE JSON line.

CPU mode (default), on synthetic MiniVess-like data (default: 4 full-scale 512×512×Z volumes,
``--scale small`` for the 6-volume small experiment, ``--data DIR`` for your own):
  * figure: patches/s of the training pipeline (CacheDataset + ThreadDataLoader, the real
    :func:`minivess.training.data.train_loader`), after one warm-up epoch that fills the cache;
  * baseline: patches/s of plain ``monai.data.Dataset`` + ``torch.utils.data.DataLoader`` with the
    same transforms as MONAI runs them by default (decoding and normalising every volume, and
    RandCropByPosNegLabeld finding crop-centre candidates, on every draw), same run;
  * ratio = figure / baseline (target >= 3);
  * also: the CPU training-step time (forward + backward + AdamW) of the default small
    experiment's plan and model.

``--device cuda``: samples/s of the training step with AMP (figure) vs fp32 (baseline) at the
plan's patch and batch, GPU utilisation sampled with NVML, and the card's name.

Usage: ``python benchmarks/train_input.py [--device cpu|cuda] [--epochs 3] [--steps 20]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# benchmarks/profile.py would shadow the stdlib ``profile`` module that torch imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]


def _loader_rate(loader, epochs: int) -> float:
    """Patches per second over ``epochs`` full passes."""
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def _pipelines(data: Path, plan, epochs: int) -> dict[str, float]:
    from monai.data import DataLoader, Dataset

    from minivess.training.config import TrainConfig
    from minivess.training.data import datalist, train_loader, usable_pairs, volumes_per_batch
    from minivess.training.transforms import train_transforms

    cfg = TrainConfig()
    pairs = usable_pairs(data)
    items = datalist(pairs, [p.name for p in pairs])
    cached, _ = train_loader(items, plan, cfg)
    _loader_rate(cached, 1)  # warm-up: fills the runtime cache
    fast = _loader_rate(cached, epochs)
    plain = DataLoader(
        Dataset(items, transform=train_transforms(plan, cfg, cache_indices=False)),
        batch_size=volumes_per_batch(plan, cfg),
        shuffle=True,
        num_workers=plan.num_workers,
    )
    slow = _loader_rate(plain, epochs)
    return {"cached": fast, "plain": slow}


def _step_times(plan, device: str, amp: bool, steps: int) -> list[float]:
    import torch

    from minivess.models import build_model
    from minivess.training.losses import build_loss, deep_supervision_loss

    torch.manual_seed(0)
    model = build_model(plan, in_channels=1, out_channels=2).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = build_loss("dicece")
    x = torch.randn(plan.batch_size, 1, *plan.patch_size, device=device)
    y = (torch.rand(plan.batch_size, 1, *plan.patch_size, device=device) > 0.95).float()
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device_type="cuda", enabled=amp):
            loss = deep_supervision_loss(loss_fn, model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up steps (cudnn autotune, allocator)
            times.append(time.perf_counter() - t)
    return times


class _GpuSampler(threading.Thread):
    """Samples GPU utilisation (%) with NVML every 50 ms while running."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self.stop.is_set():
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            time.sleep(0.05)


def _cuda(plan, steps: int) -> dict:
    import torch

    sampler = _GpuSampler()
    sampler.start()
    amp_t = _step_times(plan, "cuda", True, steps)
    fp32_t = _step_times(plan, "cuda", False, steps)
    sampler.stop.set()
    sampler.join()
    amp_rate = plan.batch_size / statistics.median(amp_t)
    fp32_rate = plan.batch_size / statistics.median(fp32_t)
    busy = [s for s in sampler.samples if s > 0]
    return {
        "benchmark": "train_input",
        "device": torch.cuda.get_device_name(0),
        "figure": "amp_samples_per_s",
        "value": round(amp_rate, 2),
        "baseline": round(fp32_rate, 2),
        "baseline_name": "fp32_samples_per_s",
        "ratio": round(amp_rate / fp32_rate, 2),
        "gpu_util_pct_mean": round(statistics.mean(busy), 1) if busy else 0.0,
        "patch_size": list(plan.patch_size),
        "batch_size": plan.batch_size,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per pipeline")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: synthesise)")
    parser.add_argument(
        "--scale", choices=["small", "full"], default="full", help="synthetic scale (512² at full)"
    )
    parser.add_argument("--n-volumes", type=int, default=4, help="synthetic volumes")
    args = parser.parse_args()

    import logging

    logging.disable(logging.INFO)
    from minivess.data.synth import synthesize
    from minivess.planning import make_plan

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        if args.data is None:
            synthesize(data, scale=args.scale, n_volumes=args.n_volumes, progress=False)
        plan = make_plan(data, "dynunet")
        if args.device == "cuda":
            print(json.dumps(_cuda(plan, args.steps)))
            return
        rates = _pipelines(data, plan, args.epochs)
        steps = _step_times(plan, "cpu", False, max(3, args.steps // 4))
    print(
        json.dumps(
            {
                "benchmark": "train_input",
                "device": "cpu",
                "figure": "cached_thread_loader_patches_per_s",
                "value": round(rates["cached"], 1),
                "baseline": round(rates["plain"], 1),
                "baseline_name": "dataset_dataloader_patches_per_s",
                "ratio": round(rates["cached"] / rates["plain"], 2),
                "cpu_step_time_s": round(statistics.median(steps), 3),
                "patch_size": list(plan.patch_size),
                "batch_size": plan.batch_size,
                "num_workers": plan.num_workers,
                "data": str(args.data) if args.data else f"synth {args.scale} x{args.n_volumes}",
            }
        )
    )


if __name__ == "__main__":
    main()
