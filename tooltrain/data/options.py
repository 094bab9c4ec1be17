"""The data scripts' shared options: repos by role, seed, counts per label, row options."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import paths
from ..cli import count, positive
from . import repos
from .generate import RowOptions


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
