"""Evaluation: per-volume metrics, bootstrap CIs, ensembles, calibration, figures.

Public API::

    from minivess.evaluation import evaluate
    report = evaluate(data_dir, ["ckpt/dicece-fold0", "s3://b/run/best.pt"], Path("eval"))
    report.champion, report.table_markdown, report.figures
"""

from __future__ import annotations

from minivess.evaluation.report import (
    Champion,
    EnsembleComparison,
    EvaluationReport,
    Kind,
    Member,
    evaluate,
)

__all__ = ["Champion", "EnsembleComparison", "EvaluationReport", "Kind", "Member", "evaluate"]
