"""How much of a phase's benchmark score is its seed: each phase trained with several seeds.

The benchmark scores models named `phaseN-seedS` (`make seeds`); here they are grouped by phase and,
per eval set, each phase's success (or another rate) is summed up over its seeds: mean, sample
standard deviation and range. Consecutive phases are compared seed by seed (the spec's claim that
more data helps, tested against what a seed alone moves)."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

SEED_MODEL = re.compile(r"phase(?P<phase>\d+)-seed(?P<seed>\d+)")


def seed_model_name(phase: int, seed: int) -> str:
    return f"phase{phase}-seed{seed}"


def seed_rows(results: dict, metric: str = "success") -> list[dict]:
    """Per eval set and phase: the seeds, their values of `metric`, mean, sd (None for one seed), min, max,
    and the mean change from the phase before over the seeds both have (None for the first phase)."""
    rows = []
    for set_name, per_model in results["results"].items():
        by_phase: dict[int, dict[int, float]] = defaultdict(dict)
        for name, scores in per_model.items():
            if (match := SEED_MODEL.fullmatch(name)) and scores.get(metric) is not None:
                by_phase[int(match["phase"])][int(match["seed"])] = scores[metric]
        previous = None
        for phase in sorted(by_phase):
            by_seed = by_phase[phase]
            values = [by_seed[seed] for seed in sorted(by_seed)]
            changes = [by_seed[s] - previous[s] for s in sorted(set(by_seed) & set(previous or {}))]
            rows.append({"set": set_name, "phase": phase, "seeds": sorted(by_seed), "values": values,
                         "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
                         "min": min(values), "max": max(values),
                         "change_from_previous": statistics.fmean(changes) if changes else None,
                         "changes_by_seed": changes})
            previous = by_seed
    return rows


def format_seed_rows(rows: list[dict], metric: str = "success") -> str:
    """A text table: set, phase, seeds, mean ± sd, range, change from the phase before (mean, per seed)."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"
    lines = [f"{metric} per phase over seeds (percent): mean ± sd, min-max; change = this phase minus the one "
             f"before, seed by seed", "",
             f"{'set':<16} {'phase':<6} {'seeds':<10} {'mean ± sd':<14} {'min-max':<12} change (per seed)"]
    for row in rows:
        sd = "" if row["sd"] is None else f" ± {pct(row['sd'])}"
        per_seed = ", ".join(f"{100 * c:+.1f}" for c in row["changes_by_seed"])
        change = "" if row["change_from_previous"] is None else \
            f"{100 * row['change_from_previous']:+.1f} ({per_seed})"
        lines.append(f"{row['set']:<16} {row['phase']:<6} {' '.join(map(str, row['seeds'])):<10} "
                     f"{pct(row['mean']) + sd:<14} {pct(row['min']) + '-' + pct(row['max']):<12} {change}")
    return "\n".join(lines)
