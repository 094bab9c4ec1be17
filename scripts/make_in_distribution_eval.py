"""In-distribution eval sets: a phase's valid split as eval cases (questions like the training ones).

Reads  data/phaseN_format/split.json (the valid ids) and the example files they come from
       (data/{phase5,repos,html}_examples/training_examples.jsonl), data/repos/ for grep source lines
Writes data/eval/phaseN_valid.jsonl   one eval case per valid row (DESIGN.md's eval-case format): the
                                      question with the real tree as its workspace, checked on the real file

Training keeps the adapter that does best on its phase's set; the benchmark reports Phase 7's.

Run from the project root:
    python -m scripts.make_in_distribution_eval [--phase 7]
"""

import argparse
from collections import Counter
from pathlib import Path

from tooltrain import cli, paths
from tooltrain.data.pipeline import load_examples, read_split
from tooltrain.eval.scoring import case_from_example
from tooltrain.io import write_jsonl

SOURCES = ("phase5_examples", "repos_examples", "html_examples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", type=int, choices=(5, 6, 7), default=7, help="whose valid split (default 7)")
    parser.add_argument("--data-dir", type=Path, default=paths.DATA, help="folder holding the stages' outputs")
    parser.add_argument("--out", type=Path, help="default: data/eval/phaseN_valid.jsonl")
    args = parser.parse_args()
    out = args.out or paths.DATA / "eval" / f"phase{args.phase}_valid.jsonl"
    valid = read_split(args.data_dir / f"phase{args.phase}_format")["valid"]
    files = [args.data_dir / s / paths.EXAMPLES_FILE for s in SOURCES if (args.data_dir / s).exists()]
    examples = {e["id"]: e for e in load_examples(*files)}
    missing = [i for i in valid if i not in examples]
    if missing:
        raise ValueError(f"{len(missing)} valid ids have no example (e.g. {missing[0]}): rebuild the data (make data)")
    cases = [case_from_example(examples[i], args.data_dir / "repos") for i in valid]
    write_jsonl(out, cases)
    print(f"wrote {len(cases)} cases to {out}: {dict(Counter(c['expected'] for c in cases))}")


if __name__ == "__main__":
    cli.run(main)
