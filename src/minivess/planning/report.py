"""Human-readable views of a plan: the rich decisions table (``name | value | source | reason``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from minivess.keys import Source
from minivess.planning.plan import TrainingPlan

if TYPE_CHECKING:
    from rich.table import Table

#: Keys of the JSON written by ``minivess plan --json`` (besides the full plan fields).
PLAN_JSON_KEYS = (
    "tier",
    "patch_size",
    "batch_size",
    "cache_rate",
    "num_workers",
    "amp",
    "strides",
    "accelerators",
    "padded_volumes",
    "decisions",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def decisions_table(plan: TrainingPlan, title: str | None = None) -> Table:
    """A rich table with one row per decision; overrides are highlighted."""
    from rich.table import Table

    table = Table(
        title=title
        or f"Training plan for '{plan.model}' (tier {plan.tier}, plan {plan.plan_hash})",
        show_lines=False,
    )
    table.add_column("name", style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    table.add_column("reason", overflow="fold")
    for d in plan.decisions:
        src = "[yellow]override[/]" if d.source is Source.OVERRIDE else "auto"
        table.add_row(d.name, _fmt(d.value), src, d.reason)
    return table


def plan_json(plan: TrainingPlan) -> dict[str, Any]:
    """The plan as a JSON-able dict (all plan fields; ``PLAN_JSON_KEYS`` among them)."""
    return plan.model_dump(mode="json")


def policies_table(plans: dict[str, TrainingPlan | str]) -> Table:
    """What each patch policy gives on the same data and machine (a refusal shows its reason)."""
    from rich.table import Table

    table = Table(title="Patch policies on this data (--set patch_policy=NAME)")
    for col in ("policy", "patch", "batch", "z pooled at levels", "padded", "quarantined"):
        table.add_column(col, overflow="fold")
    for name, plan in plans.items():
        if isinstance(plan, str):
            table.add_row(name, f"refused: {plan}", "", "", "", "")
            continue
        zlevels = [str(i) for i, s in enumerate(plan.strides) if s[2] > 1] or ["none"]
        pads = [plan.decision(f"padding:{n}").value for n in plan.padded_volumes[:3]]
        padded = f"{len(plan.padded_volumes)} volume(s)"
        if pads:
            padded += ": " + ", ".join(
                f"{n} +{tuple(p['pad_voxels'])}"
                for n, p in zip(plan.padded_volumes, pads, strict=False)
            )
            padded += " ..." if len(plan.padded_volumes) > 3 else ""
        table.add_row(
            name,
            "x".join(str(s) for s in plan.patch_size),
            str(plan.batch_size),
            ", ".join(zlevels),
            padded,
            ", ".join(plan.quarantined_volumes) or "none",
        )
    return table
