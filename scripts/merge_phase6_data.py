"""Step 19.4: Phase 6 = Phase 5 (244) + repository examples (550) = 794 -> 714 train / 80 valid.

Reads  data/phase5_examples/training_examples.jsonl, data/phase5_format/split.json,
       data/repos_examples/training_examples.jsonl
Writes data/phase6_format/{train,valid}.jsonl, split.json, DATA_CARD.md, manifest.json (last)

Phase 5 rows keep their side; the repository examples are split grouped by
symbol/file and normalised question, so valid ends with exactly --valid rows.

Run from the project root:
    python -m scripts.merge_phase6_data [--seed 0] [--valid 80] [--data-dir data]
"""

from tooltrain import cli
from tooltrain.data.pipeline import merge_phase


def main() -> None:
    merge_phase(__doc__, kept_examples=["phase5_examples"], kept_split="phase5_format",
                new_examples=["repos_examples"], out="phase6_format", valid=80, title="Phase 6 data (19.4)")


if __name__ == "__main__":
    cli.run(main)
