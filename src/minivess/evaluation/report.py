"""``evaluate``: score trained members, their ensembles and soup on a labelled dataset.

Every model (member, mean-probability ensemble, majority vote, model soup) predicts every
usable volume of ``data_dir`` with a sliding window (each member's plan roi/overlap). The data
directory is treated as a held-out test set: pass volumes no member trained on.

Given the training data (``train_data_dir``), the table also carries a **baseline** row: one
intensity threshold learned on the members' training volumes
(:mod:`minivess.evaluation.baseline`). The report says whether the champion beats it
(``champion_beats_baseline``); the baseline itself never becomes the champion.

Each mean comes with the ``n`` behind it (``0.81 [0.77, 0.85] n=10``); empty masks follow the
conventions of :mod:`minivess.evaluation.metrics`, and ECE is per volume on the
foreground-relevant voxels (:mod:`minivess.evaluation.calibration`).

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
from minivess.evaluation.baseline import BASELINE_NAME, ThresholdBaseline, learn_threshold
from minivess.evaluation.calibration import ReliabilityBins, relevant_voxels, volume_ece
from minivess.evaluation.metrics import METRIC_NAMES, METRIC_RANGES, volume_metrics
from minivess.evaluation.stats import CI, bootstrap_ci, paired_difference_ci
from minivess.keys import Keys

log = logging.getLogger(__name__)

#: Threshold on the foreground probability that makes a mask.
THRESHOLD = 0.5
#: Per-volume values of each model: the segmentation metrics and the calibration error.
VALUE_NAMES = (*METRIC_NAMES, "ece")
#: The values each column can take: a table's CI is cut to them (ECE: a probability gap).
VALUE_RANGES = {**METRIC_RANGES, "ece": (0.0, 1.0)}


class Kind(StrEnum):
    """What produced a prediction."""

    MEMBER = "member"
    MEAN_PROBABILITY = "mean_probability"
    MAJORITY_VOTE = "majority_vote"
    SOUP = "soup"
    BASELINE = "baseline"


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
    baseline_dice: float | None = Field(default=None, description="the baseline row's mean Dice")
    beats_baseline: bool | None = Field(
        default=None, description="mean Dice above the baseline's; None without a baseline"
    )


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
    calibration: dict[str, float] = Field(
        description="mean per-volume ECE on the foreground-relevant voxels"
    )
    ensembles: list[EnsembleComparison]
    soup_checkpoint: str | None = None
    soup_skipped: str | None = None
    champion: Champion
    baseline: ThresholdBaseline | None = None
    report_json: str


class _Model:
    def __init__(self, name: str, kind: Kind, net: Any, plan: Any, uris: list[str]) -> None:
        self.name, self.kind, self.net, self.plan, self.uris = name, kind, net, plan, uris


def _load_members(checkpoints: list[str]) -> tuple[list[Member], list[_Model], list[dict], Any]:
    from minivess.training import checkpoint as ckpt
    from minivess.training.config import TrainConfig, cell_name

    if not checkpoints:
        raise ConfigError("evaluate: no checkpoints given; pass --checkpoints PATH_OR_S3 (repeat).")
    members, models, states, resampling = [], [], [], None
    seen: dict[str, int] = {}
    for uri in checkpoints:
        file = ckpt.resolve(uri)
        state = ckpt.load_state(file)
        net, plan = ckpt.model_from_state(state, file)
        cfg = TrainConfig.model_validate_json(state["config"])
        if resampling is None:
            resampling = cfg.resampling
        elif cfg.resampling != resampling:
            raise ConfigError(
                f"{file}: resampling {cfg.resampling} differs from the first checkpoint's "
                f"{resampling}; evaluate members trained on the same voxel grid together."
            )
        base = f"{plan.model}-{cell_name(cfg.loss, cfg.fold)}"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
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
    keep = ("format", "plan", "config", "split", "identity", "out_channels", "target_spacing")
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

    from minivess.models.sliding import sliding_window

    device = _device()
    model.net.to(device)
    with torch.no_grad():
        logits = sliding_window(image.unsqueeze(0).to(device), model.plan, model.net)
    return torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()


def _spacing(path: str) -> tuple[float, float, float]:
    """The volume's own voxel size (header units): metrics are computed on its native grid."""
    import nibabel as nib

    image: Any = nib.load(path)
    x, y, z = (float(v) for v in image.header.get_zooms()[:3])
    return x, y, z


def _predict_all(
    pairs: list[Any], models: list[_Model], resampling: Any, baseline: ThresholdBaseline | None
) -> tuple[dict[str, dict[str, list[float]]], dict[str, ReliabilityBins]]:
    """Per-model, per-metric per-volume values (and ECE), and pooled calibration bins.

    With training-time resampling the models predict on the resampled grid; each probability
    map is mapped back to the volume's own grid and scored against the original label there,
    with the original spacing.
    """
    from minivess.data.grid import to_shape
    from minivess.training.config import ResamplingConfig
    from minivess.training.data import datalist
    from minivess.training.transforms import eval_transforms

    transform = eval_transforms(resampling)
    native = eval_transforms(ResamplingConfig()) if resampling.enabled else None
    names = [m.name for m in models]
    has_ensemble = sum(m.kind is Kind.MEMBER for m in models) >= 2
    if has_ensemble:
        names += [Kind.MEAN_PROBABILITY.value, Kind.MAJORITY_VOTE.value]
    if baseline is not None:
        names.append(BASELINE_NAME)
    values: dict[str, dict[str, list[float]]] = {n: {k: [] for k in VALUE_NAMES} for n in names}
    bins = {n: ReliabilityBins() for n in names}
    items = datalist(pairs, [p.name for p in pairs])
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("evaluating volumes", total=len(items))
        for item in items:
            data = transform(item)
            ground_truth = native(item) if native is not None else data
            label = ground_truth[Keys.LABEL.value][0].numpy() > 0.5
            spacing = _spacing(item[Keys.IMAGE.value])
            probs = {
                m.name: to_shape(_foreground_prob(m, data[Keys.IMAGE.value]), label.shape)
                for m in models
            }
            if has_ensemble:
                from minivess.evaluation.ensemble import majority_vote, mean_probability

                member_probs = [probs[m.name] for m in models if m.kind is Kind.MEMBER]
                probs[Kind.MEAN_PROBABILITY.value] = mean_probability(member_probs)
                _, fraction = majority_vote([p > THRESHOLD for p in member_probs])
                probs[Kind.MAJORITY_VOTE.value] = fraction
            if baseline is not None:
                image = data[Keys.IMAGE.value][0].numpy()
                mask = baseline.predict(image).astype(np.float32)
                probs[BASELINE_NAME] = (to_shape(mask, label.shape) > THRESHOLD).astype(np.float32)
            for name, prob in probs.items():
                for k, v in volume_metrics(prob > THRESHOLD, label, spacing).items():
                    values[name][k].append(v)
                values[name]["ece"].append(volume_ece(prob, label))
                keep = relevant_voxels(prob, label)
                bins[name].add(prob[keep], label[keep])
            bar.advance(task)
    return values, bins


def learn_baseline(train_data_dir: Path, states: list[dict], resampling: Any) -> ThresholdBaseline:
    """The threshold baseline, learned on the union of the members' training volumes."""
    from minivess.training.data import datalist, usable_pairs
    from minivess.training.splits import Split
    from minivess.training.transforms import eval_transforms

    names = sorted({n for s in states for n in Split.model_validate_json(s["split"]).train})
    pairs = usable_pairs(Path(train_data_dir))
    found = {p.name for p in pairs}
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(
            f"{train_data_dir}: training volumes {missing} of the members are not there; pass "
            f"the dataset the members trained on."
        )
    transform = eval_transforms(resampling)

    def volumes():
        for item in datalist(pairs, names):
            data = transform(item)
            yield (
                item[Keys.NAME.value],
                data[Keys.IMAGE.value][0].numpy(),
                data[Keys.LABEL.value][0].numpy() > 0.5,
            )

    baseline = learn_threshold(volumes())
    log.info(
        "baseline: threshold %.2f (normalised intensity) learned on %d training volume(s), "
        "train Dice %.4f",
        baseline.threshold,
        len(names),
        baseline.train_dice,
    )
    return baseline


def evaluate(
    data_dir: Path,
    checkpoints: list[str],
    out_dir: Path,
    train_data_dir: Path | None = None,
) -> EvaluationReport:
    """Evaluate ``checkpoints`` (files or run folders, local or s3://) on ``data_dir``.

    ``train_data_dir``: the dataset the members trained on; when given, the threshold baseline is
    learned on their training volumes and added to the table.

    Raises:
        DataError: no usable labelled volume in ``data_dir``.
        ConfigError: no checkpoints, members trained with different resampling, or a member's
            training volume missing from ``train_data_dir``.
    """
    from minivess.training.data import usable_pairs

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    pairs = usable_pairs(Path(data_dir))
    members, models, states, resampling = _load_members(list(checkpoints))
    baseline = None
    if train_data_dir is not None:
        baseline = learn_baseline(Path(train_data_dir), states, resampling)
    soup, soup_skipped = _make_soup(models, states, out_dir)
    if soup is not None:
        models.append(soup)
    values, bins = _predict_all(pairs, models, resampling, baseline)
    return _write_report(
        out_dir, pairs, members, models, values, bins, soup, soup_skipped, baseline
    )


def _kind_of(name: str, models: list[_Model]) -> Kind:
    for m in models:
        if m.name == name:
            return m.kind
    if name == BASELINE_NAME:
        return Kind.BASELINE
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
            row |= {f"{k}_mean": ci.mean, f"{k}_lo": ci.lo, f"{k}_hi": ci.hi, f"{k}_n": ci.n}
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
        if kind in (Kind.MEMBER, Kind.BASELINE):
            continue
        out.append(
            EnsembleComparison(
                name=name,
                kind=kind,
                dice=summary[name]["dice"],
                best_member=best.name,
                best_member_dice=summary[best.name]["dice"],
                difference=paired_difference_ci(
                    values[name]["dice"],
                    values[best.name]["dice"],
                    metric_bounds=VALUE_RANGES["dice"],
                ),
            )
        )
    return out


def _pick_champion(
    summary: dict[str, dict[str, CI]],
    models: list[_Model],
    members: list[Member],
    soup: _Model | None,
) -> Champion:
    """The model or ensemble with the best mean Dice (never the baseline), with the checkpoints
    it needs and whether it beats the baseline row."""
    candidates = [n for n in summary if n != BASELINE_NAME]
    name = max(candidates, key=lambda n: _nan_low(summary[n]["dice"].mean))
    kind = _kind_of(name, models)
    dice = summary[name]["dice"].mean
    extra: dict[str, Any] = {}
    if BASELINE_NAME in summary:
        base = summary[BASELINE_NAME]["dice"].mean
        extra = {"baseline_dice": base, "beats_baseline": bool(_nan_low(dice) > _nan_low(base))}
    if kind is Kind.MEMBER:
        file = next(m.uri for m in members if m.name == name)
        return Champion(
            name=name, kind=kind, dice=dice, checkpoint=file, checkpoints=[file], **extra
        )
    if kind is Kind.SOUP and soup is not None:
        return Champion(
            name=name, kind=kind, dice=dice, checkpoint=soup.uris[0], checkpoints=soup.uris,
            **extra,
        )  # fmt: skip
    return Champion(
        name=name, kind=kind, dice=dice, checkpoint=None, checkpoints=[m.uri for m in members],
        **extra,
    )  # fmt: skip


def _write_csvs(
    out_dir: Path,
    values: dict[str, dict[str, list[float]]],
    volumes: list[str],
    table: list[dict[str, Any]],
) -> tuple[Path, Path]:
    per_volume_csv = out_dir / "per_volume.csv"
    with per_volume_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "volume", *VALUE_NAMES])
        for name, v in values.items():
            for i, vol in enumerate(volumes):
                w.writerow([name, vol, *(v[k][i] for k in VALUE_NAMES)])
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
    baseline: ThresholdBaseline | None = None,
) -> EvaluationReport:
    volumes = [p.name for p in pairs]
    summary = {
        n: {k: bootstrap_ci(v[k], bounds=VALUE_RANGES[k]) for k in VALUE_NAMES}
        for n, v in values.items()
    }
    calibration = {n: s["ece"].mean for n, s in summary.items()}
    table = _table_rows(summary, calibration, members, models, len(volumes))
    best = max(members, key=lambda m: _nan_low(summary[m.name]["dice"].mean))
    ensembles = _compare_ensembles(values, summary, models, best)
    champion = _pick_champion(summary, models, members, soup)
    log.info("champion: %s (%s), mean Dice %.4f", champion.name, champion.kind, champion.dice)
    if champion.beats_baseline is False:
        log.warning(
            "champion %s (Dice %.4f) does NOT beat the threshold baseline (Dice %.4f)",
            champion.name, champion.dice, champion.baseline_dice,
        )  # fmt: skip

    per_volume_csv, table_csv = _write_csvs(out_dir, values, volumes, table)
    markdown = _markdown(summary, members, ensembles, models, champion, values)
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
        baseline=baseline,
        report_json=str(report_json),
    )
    report_json.write_text(report.model_dump_json(indent=2))
    return report


def _nan_low(x: float) -> float:
    return x if np.isfinite(x) else float("-inf")


def _verdict(champion: Champion, summary: dict[str, dict[str, CI]], values: Any) -> str:
    """One line: does the champion beat the baseline row?"""
    if champion.beats_baseline is None:
        return "No baseline row: the training data were not given (`--train-data`)."
    diff = paired_difference_ci(
        values[champion.name]["dice"],
        values[BASELINE_NAME]["dice"],
        metric_bounds=VALUE_RANGES["dice"],
    )
    verb = "beats" if champion.beats_baseline else "does **NOT** beat"
    return (
        f"Champion `{champion.name}` {verb} the threshold baseline: Dice "
        f"{champion.dice:.3f} vs {champion.baseline_dice:.3f} (paired difference "
        f"{diff.fmt()})."
    )


def _markdown(
    summary: dict[str, dict[str, CI]],
    members: list[Member],
    ensembles: list[EnsembleComparison],
    models: list[_Model],
    champion: Champion,
    values: Any,
) -> str:
    lines = [
        "## Models and ensembles (mean [95% CI] over volumes, n volumes)",
        "",
        _verdict(champion, summary, values),
        "",
        "| model | kind | Dice | clDice | HD95 | surface Dice | ECE (foreground-relevant) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, cis in summary.items():
        lines.append(
            f"| {name} | {_kind_of(name, models).value} | {cis['dice'].fmt()} | "
            f"{cis['cldice'].fmt()} | {cis['hd95'].fmt(2)} | {cis['surface_dice'].fmt()} | "
            f"{cis['ece'].fmt(4)} |"
        )
    lines += [
        "",
        "CIs: Student t below 20 volumes, BCa bootstrap from 20, cut to the metric's range. "
        "Empty masks: Dice/clDice/surface Dice 1 when label and prediction are both empty, 0 "
        "when one is; HD95 0 and the volume diagonal. ECE: per volume, on label ∪ prediction "
        "dilated by 2 voxels.",
    ]
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


def deployable(report: EvaluationReport) -> tuple[str, str, dict[str, float]]:
    """The champion if it is one checkpoint, else the best single-checkpoint model.

    An ensemble of several checkpoints can win the comparison but cannot be served as one
    network; the registry then gets the best member or soup, and the run records both names.

    Returns:
        ``(name, checkpoint URI, {metric: mean})`` of the model to register.
    """
    champ = report.champion
    if champ.checkpoint:
        name, ckpt = champ.name, champ.checkpoint
    else:
        singles = {m.name: m.uri for m in report.members}
        if report.soup_checkpoint:
            singles[Kind.SOUP.value] = report.soup_checkpoint
        name = max(singles, key=lambda n: report.summary[n]["dice"].mean)
        ckpt = singles[name]
    metrics = {k: ci.mean for k, ci in report.summary[name].items() if ci.n > 0}
    return name, ckpt, metrics
