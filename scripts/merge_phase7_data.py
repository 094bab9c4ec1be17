"""Step 19.5: Phase 7 = Phase 6 (794) + HTML examples (30) = 824 -> 741 train / 83 valid.

Reads  data/phase5_examples/ and data/repos_examples/ training_examples.jsonl,
       data/phase6_format/split.json, data/html_examples/training_examples.jsonl
Writes data/phase7_format/{train,valid}.jsonl, split.json, DATA_CARD.md, manifest.json (last)

Every Phase 6 row keeps its side; the HTML rows split 27/3.

Run from the project root:
    python -m scripts.merge_phase7_data [--seed 0] [--valid 83] [--data-dir data]
"""

from tooltrain import cli
from tooltrain.data.pipeline import merge_phase


def main() -> None:
    merge_phase(__doc__, kept_examples=["phase5_examples", "repos_examples"], kept_split="phase6_format",
                new_examples=["html_examples"], out="phase7_format", valid=83, title="Phase 7 data (19.5)")


if __name__ == "__main__":
    cli.run(main)
