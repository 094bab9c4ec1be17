"""Grouped train/valid splits and mlx-lm training rows.

Rows about the same source symbol or file, and rows whose questions are equal
once normalised, form one group (union-find); a group is never split between
train and valid. Valid gets exactly the asked-for count, labels kept close to
their share of the whole.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from ..tools import question_of
from .generate import normalise_question


class SplitError(ValueError):
    """The asked-for split cannot be made from these rows."""


def group_keys(row: dict) -> list[str]:
    """The keys that tie a row to others: its symbol, its file (for repository rows), its normalised question."""
    source = row["source"]
    keys = [f"q:{normalise_question(question_of(row))}"]
    if source.get("symbol"):
        keys.append(f"s:{source['repo']}:{source['symbol']}")
    if source.get("repo") and source.get("path"):
        keys.append(f"f:{source['path']}")
    return keys


def groups_of(rows: list[dict]) -> list[list[int]]:
    """Indices of rows, grouped by shared keys (union-find), in first-appearance order."""
    parent = list(range(len(rows)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, row in enumerate(rows):
        for key in group_keys(row):
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    members = defaultdict(list)
    for i in range(len(rows)):
        members[find(i)].append(i)
    return list(members.values())


def grouped_split(rows: list[dict], valid_count: int, rng: random.Random,
                  fixed: dict[int, str] | None = None) -> tuple[list[dict], list[dict]]:
    """(train, valid) with exactly `valid_count` valid rows and no group on both sides.

    `fixed` maps row indices to the side ("train"/"valid") they must keep; their
    groups follow them, and `valid_count` includes the fixed valid rows.
    """
    if not 0 <= valid_count <= len(rows):
        raise SplitError(f"cannot put {valid_count} of {len(rows)} rows in valid")
    fixed = fixed or {}
    chosen, taken, free = set(), Counter(), []
    for group in groups_of(rows):
        sides = {fixed[i] for i in group if i in fixed}
        if len(sides) > 1:
            raise SplitError(f"rows {[rows[i]['id'] for i in group][:4]} are one group but sit on both sides")
        if sides == {"valid"}:
            chosen.update(group)
            taken.update(rows[i]["label"] for i in group)
        elif not sides:
            free.append(group)
    # Labels of the rows still to place keep their share of the valid rows still to fill.
    free_labels = Counter(rows[i]["label"] for group in free for i in group)
    free_total = sum(free_labels.values()) or 1
    remaining = valid_count - len(chosen)
    target = {label: taken[label] + round(remaining * n / free_total) for label, n in free_labels.items()}
    rng.shuffle(free)
    for respect_labels in (True, False):  # second pass fills any gap the label targets left
        for group in free:
            if len(chosen) == valid_count:
                break
            if group[0] in chosen or len(chosen) + len(group) > valid_count:
                continue
            need = Counter(rows[i]["label"] for i in group)
            if respect_labels and any(taken[label] + n > target[label] for label, n in need.items()):
                continue
            chosen.update(group)
            taken.update(need)
    if len(chosen) != valid_count:
        raise SplitError(f"could not fill valid with exactly {valid_count} rows without splitting a group "
                         f"(got {len(chosen)} of {len(rows)} rows)")
    train = [row for i, row in enumerate(rows) if i not in chosen]
    valid = [row for i, row in enumerate(rows) if i in chosen]
    return train, valid


def training_row(row: dict) -> dict:
    """mlx-lm's tools chat format: only messages and tools."""
    return {"messages": row["messages"], "tools": row["tools"]}
