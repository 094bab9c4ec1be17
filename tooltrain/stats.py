"""How sure a rate is, and whether two models differ on the same cases.

- `wilson`: the Wilson score 95% interval of k successes in n trials (good near 0% and 100%, where
  the normal approximation breaks down and most of this project's rates live).
- `mcnemar`: the exact McNemar test for two models scored on the same cases: only the cases where
  they disagree carry information, and under "no difference" each of those is a fair coin.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """(low, high) of the 95% Wilson interval for k/n; None when n is 0."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at 0 and n the interval reaches the bound exactly (rounding would leave it a hair short)
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def mcnemar(first: list[bool], second: list[bool]) -> dict:
    """Exact two-sided McNemar test on paired outcomes: {"only_first", "only_second", "p"}."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need the same cases ({len(first)} vs {len(second)})")
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    n = only_first + only_second
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2 ** n if n else 1.0
    return {"only_first": only_first, "only_second": only_second, "p": min(1.0, 2 * tail)}
