"""The seeds table: each phase's benchmark success over the seeds it was trained with (`make seeds`).

Reads  a benchmark JSON whose models are named phaseN-seedS (`make seeds` writes
       data/seeds/benchmark-seeds0-1-2.json for SEEDS="0 1 2")
Writes seeds.json (the rows) beside it, and prints the table

Run from the project root (`make seeds SEEDS="0 1 2"` runs it last):
    python -m scripts.seeds_report data/seeds/benchmark-seeds0-1-2.json [--metric success]
"""

import argparse
import json
from pathlib import Path

from tooltrain.eval.seeds import format_seed_rows, seed_rows
from tooltrain.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", type=Path, help="the benchmark JSON of the seed runs")
    parser.add_argument("--metric", default="success", help="a rate of the benchmark's results (default success)")
    args = parser.parse_args()
    rows = seed_rows(json.loads(args.benchmark.read_text()), args.metric)
    if not rows:
        raise SystemExit(f"{args.benchmark} has no models named phaseN-seedS with a {args.metric!r} rate")
    write_json(args.benchmark.with_name("seeds.json"), {"metric": args.metric, "rows": rows})
    print(format_seed_rows(rows, args.metric))
    print(f"\n{len(rows)} rows ({len({r['phase'] for r in rows})} phases) -> {args.benchmark.with_name('seeds.json')}")


if __name__ == "__main__":
    main()
