"""Argument helpers every stage script shares: counts as argparse types, and a known failure as one line."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """An argparse type: a whole number >= 0 (`--grep -5` is refused, not a data set without grep rows)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def run(main) -> None:
    """Run a stage; a known failure prints one clear line and exits 1 instead of a traceback."""
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
