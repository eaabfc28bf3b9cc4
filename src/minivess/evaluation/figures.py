"""Comparison figures (PNG): per-model box plots and a per-volume scatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def box_plot(values: dict[str, list[float]], metric: str, path: Path) -> Path:
    """One box per model/ensemble of the per-volume ``metric`` values."""
    plt = _plt()
    names = list(values)
    data = [[v for v in values[n] if np.isfinite(v)] or [np.nan] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"per-volume {metric}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def scatter(
    x: list[float], y: list[float], labels: list[str], x_name: str, y_name: str, path: Path
) -> Path:
    """Per-volume scatter of two models' Dice with the identity line (above: ``y`` wins)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.scatter(x, y)
    for xi, yi, name in zip(x, y, labels, strict=True):
        ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x_name} Dice")
    ax.set_ylabel(f"{y_name} Dice")
    ax.set_title("per-volume Dice")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
