"""Argument helpers the stage scripts share: repos by role, seed, counts per label."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import paths, repos
from .generate import RowOptions


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


def check_counts(args: argparse.Namespace) -> None:
    """A data set has at least one row; hand-written direct rows are a part of the direct rows, never more."""
    if not (args.grep or args.read or args.direct):
        raise ValueError("--grep, --read and --direct are all 0: nothing to generate")
    if getattr(args, "curated_direct", 0) > args.direct:
        raise ValueError(f"--curated-direct {args.curated_direct} is more than --direct {args.direct}")


def add_common(parser: argparse.ArgumentParser, counts: dict[str, int] | None = None, per_file_cap: int = 4) -> None:
    parser.add_argument("--seed", type=int, default=0, help="one seed for all randomness (default 0)")
    parser.add_argument("--repos-root", type=Path, default=paths.REPOS_ROOT, help="where the repositories are")
    parser.add_argument("--manifest", type=Path, default=paths.REPO_MANIFEST, help="pinned repo manifest")
    for label, default in (counts or {}).items():
        parser.add_argument(f"--{label}", type=count, default=default, help=f"{label} examples (default {default})")
    parser.add_argument("--per-file-cap", type=positive, default=per_file_cap,
                        help=f"at most this many rows about one source file (default {per_file_cap})")
    parser.add_argument("--no-map", action="store_true",
                        help="rows without the workspace map (and so without renamed folders): the ablation")


def row_options(args: argparse.Namespace) -> RowOptions:
    """The project's row options, or the no-map ablation's."""
    if args.no_map:
        return RowOptions(with_map=False, alias_rate=0.0, swap_rate=0.0, other_alias_rate=0.0,
                          per_file_cap=args.per_file_cap)
    return RowOptions(per_file_cap=args.per_file_cap)


def repo_names(manifest: Path, role: str) -> list[str]:
    """Names of the manifest's repositories of one role, in manifest order (none is an error)."""
    names = [spec.name for spec in repos.select(repos.load_manifest(manifest), role=role)]
    if not names:
        raise ValueError(f"{manifest} has no repositories of role {role!r}")
    return names


def run(main) -> None:
    """Run a stage; a known failure prints one clear line and exits 1 instead of a traceback."""
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
