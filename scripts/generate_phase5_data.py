"""Phase 5 data: examples from the Phase 5 sources (svcs, svcs-di, tdom), split 220/24.

Reads  data/repos/<name>/ for the manifest's "phase5" role, curated direct answers
Writes data/phase5_examples/training_examples.jsonl  244 examples (+ DATA_CARD.md, manifest.json)
       data/phase5_format/{train,valid}.jsonl        220 / 24 in mlx-lm's tools format
       data/phase5_format/split.json                 which example ids went where

Run from the project root:
    python -m scripts.generate_phase5_data [--seed 0] [--grep 134 --read 60 --direct 50 --valid 24]
"""

import argparse
from pathlib import Path

from tooltrain import cli, paths
from tooltrain.data import options
from tooltrain.data.pipeline import repo_examples, split_files, write_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Three small sources (19 library files) must give 134 grep rows: a looser cap than 19.2's.
    options.add_common(parser, {"grep": 134, "read": 60, "direct": 50}, per_file_cap=12)
    parser.add_argument("--curated-direct", type=cli.count, default=40, help="curated direct examples (default 40)")
    parser.add_argument("--valid", type=cli.count, default=24, help="rows in valid (default 24)")
    parser.add_argument("--examples-out", type=Path, default=paths.PHASE5_EXAMPLES)
    parser.add_argument("--out", type=Path, default=paths.PHASE5_FORMAT)
    args = parser.parse_args()
    options.check_counts(args)
    # The curated list is read from its end here, so Phase 5 and 19.2 never share a curated row.
    rows, examples = repo_examples(args.repos_root, options.repo_names(args.manifest, "phase5"),
                                   {"grep": args.grep, "read": args.read, "direct": args.direct}, args.seed,
                                   args.curated_direct, curated_from_end=True, title="Phase 5 examples",
                                   options=options.row_options(args))
    train, valid, split = split_files([], None, rows, args.valid, args.seed, "Phase 5 data",
                                      [f"{args.examples_out.name}/{paths.EXAMPLES_FILE}"])
    # Both folders or neither: the examples are not replaced unless their split can be made too.
    write_stage({args.examples_out: examples, args.out: split})
    print(f"phase 5: {len(rows)} examples -> {len(train)} train / {len(valid)} valid in {args.out}")


if __name__ == "__main__":
    cli.run(main)
