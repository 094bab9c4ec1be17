"""Step 19.1: fetch the pinned source repositories.

Reads  configs/repos.toml (name, git URL, tag, package-index name and version, role).
Writes data/repos/<name>/           the project tree (pyproject.toml etc. at the top),
       data/repos/.pins/<name>.json what was fetched: route, tag/version, archive + sha256 or commit,
       data/repos/manifest.json     every repo present and the totals (written last),
       .cache/downloads/            archives taken from the package index (reused on reruns).

Each repo is a shallow gitpython clone at its tag; when that fails (the git host
cannot be reached) the same release comes from the package index via
`pip download` (sdist, or the wheel where the manifest says dist = "wheel").
A repo already at its pin is skipped. Ends by printing Python files per repo.

Run from the project root:
    python -m scripts.clone_popular_repos                 # train + phase5 repos
    python -m scripts.clone_popular_repos --role eval --repos-root data/eval_repos   # the eval repos
    python -m scripts.clone_popular_repos --only flask click --force
    python -m scripts.clone_popular_repos --index-only     # the package index only: no git host
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tooltrain import paths
from tooltrain.data import repos


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="just these repos (any role)")
    parser.add_argument("--role", choices=[*repos.ROLES, "all"],
                        help="repos of this role (default: train and phase5)")
    parser.add_argument("--force", action="store_true", help="fetch again even if already at pin")
    parser.add_argument("--index-only", action="store_true",
                        help="take every repo from the package index; the git host is not contacted")
    parser.add_argument("--manifest", type=Path, default=paths.REPO_MANIFEST, help="pinned repo manifest (TOML)")
    parser.add_argument("--repos-root", type=Path, default=paths.REPOS_ROOT, help="where the repos go")
    parser.add_argument("--download-dir", type=Path, default=paths.DOWNLOADS,
                        help="package-index archives; one already here is used without downloading")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = repos.select(repos.load_manifest(args.manifest), args.only, args.role)
    except repos.ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    outcomes = repos.fetch_repos(specs, args.repos_root, args.download_dir, force=args.force,
                                 index_only=args.index_only)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
