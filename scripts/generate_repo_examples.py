"""Step 19.2: AST-parse the pinned repositories into verified tool-use examples.

Reads  data/repos/<name>/ for every repo of the manifest's "train" role
       tooltrain/resources/*_qa.jsonl (hand-written direct answers)
Writes data/repos_examples/training_examples.jsonl  300 grep + 150 read + 100 direct
       data/repos_examples/DATA_CARD.md, manifest.json (last)

Every grep pattern is run over its repo and must hit its source line; every read
path must exist; direct answers are cleaned docstrings or hand-written answers. Each
row shows a workspace map (its repository often renamed or laid out the other way)
and its call follows the map; `--no-map` writes the ablation's rows without one.

Run from the project root:
    python -m scripts.generate_repo_examples [--seed 0] [--grep 300 --read 150 --direct 100]
"""

import argparse
from pathlib import Path

from tooltrain import cli, paths
from tooltrain.data import options, repos
from tooltrain.data.pipeline import repo_examples, write_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_common(parser, {"grep": 300, "read": 150, "direct": 100})
    parser.add_argument("--curated-direct", type=cli.count, default=75,
                        help="how many direct examples are hand-written (default 75; the rest are docstrings)")
    parser.add_argument("--role", default="train", choices=repos.ROLES,
                        help="manifest role of the source repos (default train)")
    parser.add_argument("--out", type=Path, default=paths.REPO_EXAMPLES, help="output folder")
    parser.add_argument("--workers", type=cli.positive, default=None, help="parser processes (default: all cores)")
    args = parser.parse_args()
    options.check_counts(args)
    rows, files = repo_examples(args.repos_root, options.repo_names(args.manifest, args.role),
                                {"grep": args.grep, "read": args.read, "direct": args.direct}, args.seed,
                                args.curated_direct, title="Repository examples (19.2)", workers=args.workers,
                                options=options.row_options(args))
    write_stage({args.out: files})
    print(f"wrote {len(rows)} examples to {args.out / paths.EXAMPLES_FILE}")


if __name__ == "__main__":
    cli.run(main)
