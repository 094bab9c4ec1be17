"""Step 19.3: HTML examples about the templates the sources ship, plus curated HTML concepts.

Reads  data/repos/<name>/**/*.html for the manifest's "train" role
       tooltrain/resources/html_qa.jsonl (curated direct answers)
Writes data/html_examples/training_examples.jsonl  9 grep + 5 read + 16 direct
       data/html_examples/DATA_CARD.md, manifest.json (last)

Run from the project root:
    python -m scripts.generate_html_examples [--seed 0] [--grep 9 --read 5 --direct 16]
"""

import argparse
import time
from pathlib import Path

from tooltrain import cli, paths
from tooltrain.data import options
from tooltrain.data.datacard import provenance
from tooltrain.data.html_examples import generate_html_examples
from tooltrain.data.pipeline import write_stage
from tooltrain.io import jsonl_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_common(parser, {"grep": 9, "read": 5, "direct": 16})
    parser.add_argument("--out", type=Path, default=paths.HTML_EXAMPLES)
    args = parser.parse_args()
    options.check_counts(args)
    started = time.perf_counter()
    counts = {"grep": args.grep, "read": args.read, "direct": args.direct}
    repos = options.repo_names(args.manifest, "train")
    rows = generate_html_examples(args.repos_root, repos, counts, args.seed, options.row_options(args))
    print(f"[time] html: {time.perf_counter() - started:.2f}s ({len(rows)} examples)")
    write_stage({args.out: provenance(
        "HTML examples (19.3)", {"stage": "HTML examples (19.3)", "seed": args.seed, "repos": repos, "asked": counts},
        rows, ["Grep and read examples point at real HTML files under data/repos/ and were run for real; direct "
               "answers come from the curated HTML concept list."], {paths.EXAMPLES_FILE: jsonl_text(rows)})})
    print(f"wrote {len(rows)} examples to {args.out / paths.EXAMPLES_FILE}")


if __name__ == "__main__":
    cli.run(main)
