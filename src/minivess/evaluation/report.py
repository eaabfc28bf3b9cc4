"""``evaluate``: score trained members, their ensembles and soup on a labelled dataset.

Every model (member, mean-probability ensemble, majority vote, model soup) predicts every
usable volume of ``data_dir`` with a sliding window (each member's plan roi/overlap). The data
directory is treated as a held-out test set: pass volumes no member trained on.

Outputs under ``out_dir``: ``per_volume.csv``, ``comparison.csv`` / ``comparison.md`` (with the
loss × fold table), ``figures/*.png`` (box plots, per-volume scatter, reliability diagrams),
``soup.pt`` when the architectures match, and ``report.json`` (the :class:`EvaluationReport`).
"""

from __future__ import annotations

import csv
import logging
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from minivess.errors import ConfigError
from minivess.evaluation.calibration import ReliabilityBins
from minivess.evaluation.metrics import METRIC_NAMES, volume_metrics
from minivess.evaluation.stats import CI, bootstrap_ci, paired_difference_ci
from minivess.keys import Keys

log = logging.getLogger(__name__)

#: Threshold on the foreground probability that makes a mask.
THRESHOLD = 0.5


class Kind(StrEnum):
    """What produced a prediction."""

    MEMBER = "member"
    MEAN_PROBABILITY = "mean_probability"
    MAJORITY_VOTE = "majority_vote"
    SOUP = "soup"


class Member(BaseModel):
    """One trained checkpoint under evaluation."""

    name: str
    uri: str
    model: str
    loss: str
    fold: int
    plan_hash: str


class EnsembleComparison(BaseModel):
    """An ensemble's Dice against the best single member, paired by volume."""

    name: str
    kind: Kind
    dice: CI
    best_member: str
    best_member_dice: CI
    difference: CI = Field(description="ensemble minus best member, Dice")


class Champion(BaseModel):
    """The best model or ensemble by mean Dice, with what is needed to register it."""

    name: str
    kind: Kind
    dice: float
    checkpoint: str | None = Field(description="single checkpoint (member or soup), else None")
    checkpoints: list[str] = Field(description="all checkpoints it needs")


class EvaluationReport(BaseModel):
    """Paths, tables and the champion of one evaluation."""

    out_dir: str
    volumes: list[str]
    members: list[Member]
    summary: dict[str, dict[str, CI]]
    table: list[dict[str, Any]]
    table_markdown: str
    per_volume_csv: str
    table_csv: str
    table_md: str
    figures: dict[str, str]
    calibration: dict[str, float] = Field(description="ECE of the foreground probability")
    ensembles: list[EnsembleComparison]
    soup_checkpoint: str | None = None
    soup_skipped: str | None = None
    champion: Champion
    report_json: str


class _Model:
    def __init__(self, name: str, kind: Kind, net: Any, plan: Any, uris: list[str]) -> None:
        self.name, self.kind, self.net, self.plan, self.uris = name, kind, net, plan, uris


def _load_members(checkpoints: list[str]) -> tuple[list[Member], list[_Model], list[dict], Any]:
    from minivess.models import build_model
    from minivess.planning.plan import TrainingPlan
    from minivess.training import checkpoint as ckpt
    from minivess.training.config import TrainConfig

    if not checkpoints:
        raise ConfigError("evaluate: no checkpoints given; pass --checkpoints PATH_OR_S3 (repeat).")
    members, models, states, resampling = [], [], [], None
    seen: dict[str, int] = {}
    for uri in checkpoints:
        file = ckpt.resolve(uri)
        state = ckpt.load_state(file)
        plan = TrainingPlan.model_validate_json(state["plan"])
        cfg = TrainConfig.model_validate_json(state["config"])
        if resampling is None:
            resampling = cfg.resampling
        elif cfg.resampling != resampling:
            raise ConfigError(
                f"{file}: resampling {cfg.resampling} differs from the first checkpoint's "
                f"{resampling}; evaluate members trained on the same voxel grid together."
            )
        base = f"{plan.model}-{cfg.loss.value}-fold{cfg.fold}"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        net = build_model(plan, in_channels=1, out_channels=int(state.get("out_channels", 2)))
        net.load_state_dict(state["model"])
        net.eval()
        members.append(
            Member(
                name=name,
                uri=file,
                model=plan.model,
                loss=cfg.loss.value,
                fold=cfg.fold,
                plan_hash=plan.plan_hash,
            )
        )
        models.append(_Model(name, Kind.MEMBER, net, plan, [file]))
        states.append(state)
    return members, models, states, resampling


def _make_soup(models: list[_Model], states: list[dict], out_dir: Path) -> tuple[Any, str | None]:
    """The soup model and its checkpoint path, or (None, reason)."""
    from minivess.evaluation.ensemble import model_soup, soup_compatible
    from minivess.models import build_model
    from minivess.training import checkpoint as ckpt

    why = soup_compatible([m.plan for m in models], [s["model"] for s in states])
    if why is not None:
        log.info("model soup skipped: %s", why)
        return None, why
    soup_state = model_soup([s["model"] for s in states])
    net = build_model(
        models[0].plan, in_channels=1, out_channels=int(states[0].get("out_channels", 2))
    )
    net.load_state_dict(soup_state)
    net.eval()
    path = out_dir / "soup.pt"
    keep = ("format", "plan", "config", "split", "identity", "out_channels")
    ckpt.save_state({k: states[0][k] for k in keep if k in states[0]} | {"model": soup_state}, path)
    uris = [u for m in models for u in m.uris]
    log.info("model soup of %d members written to %s", len(models), path)
    return _Model("soup", Kind.SOUP, net, models[0].plan, [str(path), *uris]), None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _foreground_prob(model: _Model, image: Any) -> np.ndarray:
    """Foreground probability (x, y, z) of one normalised image (1, x, y, z), fp32."""
    import torch
    from monai.inferers import sliding_window_inference

    from minivess.training.loop import _primary

    device = _device()
    model.net.to(device)
    with torch.no_grad():
        logits = sliding_window_inference(
            image.unsqueeze(0).to(device),
            roi_size=tuple(model.plan.sw_roi),
            sw_batch_size=max(1, model.plan.batch_size),
            predictor=lambda x: _primary(model.net(x)),
            overlap=model.plan.sw_overlap,
            mode="gaussian",
        )
    return torch.softmax(torch.as_tensor(logits).float(), dim=1)[0, 1].cpu().numpy()


def _spacing(path: str, resampling: Any) -> tuple[float, float, float]:
    if resampling.enabled:
        return tuple(resampling.target_spacing)
    import nibabel as nib

    image: Any = nib.load(path)
    x, y, z = (float(v) for v in image.header.get_zooms()[:3])
    return x, y, z


def _predict_all(
    pairs: list[Any], models: list[_Model], resampling: Any
) -> tuple[dict[str, dict[str, list[float]]], dict[str, ReliabilityBins]]:
    """Per-model, per-metric per-volume values, and calibration bins."""
    from minivess.training.data import datalist
    from minivess.training.transforms import eval_transforms

    transform = eval_transforms(resampling)
    names = [m.name for m in models]
    has_ensemble = sum(m.kind is Kind.MEMBER for m in models) >= 2
    if has_ensemble:
        names += [Kind.MEAN_PROBABILITY.value, Kind.MAJORITY_VOTE.value]
    values: dict[str, dict[str, list[float]]] = {n: {k: [] for k in METRIC_NAMES} for n in names}
    bins = {n: ReliabilityBins() for n in names}
    items = datalist(pairs, [p.name for p in pairs])
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("evaluating volumes", total=len(items))
        for item in items:
            data = transform(item)
            label = data[Keys.LABEL.value][0].numpy() > 0.5
            spacing = _spacing(item[Keys.IMAGE.value], resampling)
            probs = {m.name: _foreground_prob(m, data[Keys.IMAGE.value]) for m in models}
            if has_ensemble:
                from minivess.evaluation.ensemble import majority_vote, mean_probability

                member_probs = [probs[m.name] for m in models if m.kind is Kind.MEMBER]
                probs[Kind.MEAN_PROBABILITY.value] = mean_probability(member_probs)
                _, fraction = majority_vote([p > THRESHOLD for p in member_probs])
                probs[Kind.MAJORITY_VOTE.value] = fraction
            for name, prob in probs.items():
                for k, v in volume_metrics(prob > THRESHOLD, label, spacing).items():
                    values[name][k].append(v)
                bins[name].add(prob, label)
            bar.advance(task)
    return values, bins


def evaluate(data_dir: Path, checkpoints: list[str], out_dir: Path) -> EvaluationReport:
    """Evaluate ``checkpoints`` (files or run folders, local or s3://) on ``data_dir``.

    Raises:
        DataError: no usable labelled volume in ``data_dir``.
        ConfigError: no checkpoints, or members trained with different resampling.
    """
    from minivess.training.data import usable_pairs

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    pairs = usable_pairs(Path(data_dir))
    members, models, states, resampling = _load_members(list(checkpoints))
    soup, soup_skipped = _make_soup(models, states, out_dir)
    if soup is not None:
        models.append(soup)
    values, bins = _predict_all(pairs, models, resampling)
    return _write_report(out_dir, pairs, members, models, values, bins, soup, soup_skipped)


def _kind_of(name: str, models: list[_Model]) -> Kind:
    for m in models:
        if m.name == name:
            return m.kind
    return Kind(name)


def _table_rows(
    summary: dict[str, dict[str, CI]],
    calibration: dict[str, float],
    members: list[Member],
    models: list[_Model],
    n_volumes: int,
) -> list[dict[str, Any]]:
    """One flat row per model/ensemble: mean, lo, hi of each metric, and ECE."""
    by_member = {m.name: m for m in members}
    table = []
    for name, cis in summary.items():
        m = by_member.get(name)
        row: dict[str, Any] = {
            "name": name,
            "kind": _kind_of(name, models).value,
            "loss": m.loss if m else "",
            "fold": m.fold if m else "",
            "n_volumes": n_volumes,
        }
        for k, ci in cis.items():
            row |= {f"{k}_mean": ci.mean, f"{k}_lo": ci.lo, f"{k}_hi": ci.hi}
        row["ece"] = calibration[name]
        table.append(row)
    return table


def _compare_ensembles(
    values: dict[str, dict[str, list[float]]],
    summary: dict[str, dict[str, CI]],
    models: list[_Model],
    best: Member,
) -> list[EnsembleComparison]:
    """Each non-member model against the best member (paired bootstrap of Dice differences)."""
    out = []
    for name in values:
        kind = _kind_of(name, models)
        if kind is Kind.MEMBER:
            continue
        out.append(
            EnsembleComparison(
                name=name,
                kind=kind,
                dice=summary[name]["dice"],
                best_member=best.name,
                best_member_dice=summary[best.name]["dice"],
                difference=paired_difference_ci(values[name]["dice"], values[best.name]["dice"]),
            )
        )
    return out


def _pick_champion(
    summary: dict[str, dict[str, CI]],
    models: list[_Model],
    members: list[Member],
    soup: _Model | None,
) -> Champion:
    """The model or ensemble with the best mean Dice, with the checkpoints it needs."""
    name = max(summary, key=lambda n: _nan_low(summary[n]["dice"].mean))
    kind = _kind_of(name, models)
    dice = summary[name]["dice"].mean
    if kind is Kind.MEMBER:
        file = next(m.uri for m in members if m.name == name)
        return Champion(name=name, kind=kind, dice=dice, checkpoint=file, checkpoints=[file])
    if kind is Kind.SOUP and soup is not None:
        return Champion(
            name=name, kind=kind, dice=dice, checkpoint=soup.uris[0], checkpoints=soup.uris
        )
    return Champion(
        name=name, kind=kind, dice=dice, checkpoint=None, checkpoints=[m.uri for m in members]
    )


def _write_csvs(
    out_dir: Path,
    values: dict[str, dict[str, list[float]]],
    volumes: list[str],
    table: list[dict[str, Any]],
) -> tuple[Path, Path]:
    per_volume_csv = out_dir / "per_volume.csv"
    with per_volume_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "volume", *METRIC_NAMES])
        for name, v in values.items():
            for i, vol in enumerate(volumes):
                w.writerow([name, vol, *(v[k][i] for k in METRIC_NAMES)])
    table_csv = out_dir / "comparison.csv"
    with table_csv.open("w", newline="") as fh:
        dw = csv.DictWriter(fh, fieldnames=list(table[0]))
        dw.writeheader()
        dw.writerows(table)
    return per_volume_csv, table_csv


def _draw_figures(
    fig_dir: Path,
    values: dict[str, dict[str, list[float]]],
    bins: dict[str, ReliabilityBins],
    volumes: list[str],
    best: Member,
    champion: Champion,
    ensembles: list[EnsembleComparison],
) -> dict[str, str]:
    """Box plots (Dice, clDice), best member vs champion scatter, reliability diagrams."""
    from minivess.evaluation.figures import box_plot, scatter

    figures = {
        f"box_{k}": str(box_plot({n: v[k] for n, v in values.items()}, k, fig_dir / f"box_{k}.png"))
        for k in ("dice", "cldice")
    }
    other = champion.name if champion.name != best.name else None
    if other is None and ensembles:
        other = ensembles[0].name
    if other is not None:
        figures["scatter_dice"] = str(
            scatter(
                values[best.name]["dice"],
                values[other]["dice"],
                volumes,
                best.name,
                other,
                fig_dir / "scatter_dice.png",
            )
        )
    for name in dict.fromkeys((champion.name, best.name)):
        figures[f"reliability_{name}"] = str(
            bins[name].plot(fig_dir / f"reliability_{name}.png", f"reliability: {name}")
        )
    return figures


def _write_report(
    out_dir: Path,
    pairs: list[Any],
    members: list[Member],
    models: list[_Model],
    values: dict[str, dict[str, list[float]]],
    bins: dict[str, ReliabilityBins],
    soup: _Model | None,
    soup_skipped: str | None,
) -> EvaluationReport:
    volumes = [p.name for p in pairs]
    summary = {n: {k: bootstrap_ci(v[k]) for k in METRIC_NAMES} for n, v in values.items()}
    calibration = {n: b.ece() for n, b in bins.items()}
    table = _table_rows(summary, calibration, members, models, len(volumes))
    best = max(members, key=lambda m: _nan_low(summary[m.name]["dice"].mean))
    ensembles = _compare_ensembles(values, summary, models, best)
    champion = _pick_champion(summary, models, members, soup)
    log.info("champion: %s (%s), mean Dice %.4f", champion.name, champion.kind, champion.dice)

    per_volume_csv, table_csv = _write_csvs(out_dir, values, volumes, table)
    markdown = _markdown(summary, calibration, members, ensembles, models)
    table_md = out_dir / "comparison.md"
    table_md.write_text(markdown)
    figures = _draw_figures(out_dir / "figures", values, bins, volumes, best, champion, ensembles)

    report_json = out_dir / "report.json"
    report = EvaluationReport(
        out_dir=str(out_dir),
        volumes=volumes,
        members=members,
        summary=summary,
        table=table,
        table_markdown=markdown,
        per_volume_csv=str(per_volume_csv),
        table_csv=str(table_csv),
        table_md=str(table_md),
        figures=figures,
        calibration=calibration,
        ensembles=ensembles,
        soup_checkpoint=soup.uris[0] if soup is not None else None,
        soup_skipped=soup_skipped,
        champion=champion,
        report_json=str(report_json),
    )
    report_json.write_text(report.model_dump_json(indent=2))
    return report


def _nan_low(x: float) -> float:
    return x if np.isfinite(x) else float("-inf")


def _markdown(
    summary: dict[str, dict[str, CI]],
    calibration: dict[str, float],
    members: list[Member],
    ensembles: list[EnsembleComparison],
    models: list[_Model],
) -> str:
    lines = [
        "## Models and ensembles (mean [95% bootstrap CI] over volumes)",
        "",
        "| model | kind | Dice | clDice | HD95 | surface Dice | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, cis in summary.items():
        lines.append(
            f"| {name} | {_kind_of(name, models).value} | {cis['dice'].fmt()} | "
            f"{cis['cldice'].fmt()} | {cis['hd95'].fmt(2)} | {cis['surface_dice'].fmt()} | "
            f"{calibration[name]:.4f} |"
        )
    folds = sorted({m.fold for m in members})
    losses = sorted({m.loss for m in members})
    lines += [
        "",
        "## Loss × fold (Dice)",
        "",
        "| loss | " + " | ".join(f"fold {f}" for f in folds) + " |",
        "| --- |" + " --- |" * len(folds),
    ]
    for loss in losses:
        cells = []
        for f in folds:
            hit = [m for m in members if m.loss == loss and m.fold == f]
            cells.append(summary[hit[0].name]["dice"].fmt() if hit else "")
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    if ensembles:
        lines += [
            "",
            "## Ensembles vs best single member (Dice difference, paired bootstrap)",
            "",
            "| ensemble | Dice | best member | member Dice | difference |",
            "| --- | --- | --- | --- | --- |",
        ]
        for e in ensembles:
            lines.append(
                f"| {e.name} | {e.dice.fmt()} | {e.best_member} | {e.best_member_dice.fmt()} | "
                f"{e.difference.fmt()} |"
            )
    return "\n".join(lines) + "\n"
