"""Step 19.6: compare base, Phase 5, Phase 5 fused-8bit, Phase 6 and Phase 7 on tool-use decisions.

Reads  eval sets in DESIGN.md's eval-case format, each with the repos root(s) its questions are about
       (the workspace the model is shown a map of). Default:
         data/eval/unseen_repos.jsonl  = data/eval_repos     held-out repos; choices were tuned on it
         data/eval/holdout_repos.jsonl = data/holdout_repos  held-out repos; the final report, tuned on nothing
         data/eval/phase7_valid.jsonl  = data/repos          the Phase 7 valid split (in distribution)
         ../shared/eval/bfcl_irrelevance_direct.jsonl = data/eval_repos   third-party prompts that need no tool
       the models and adapters
Writes benchmark_all_phases.log    the spec's table per eval set, plus macro-F1, success, over/under-call,
                                   grep hit rate, read validity, format adherence, time to decision, tokens/s,
                                   peak memory, confusion matrices, 95% intervals, paired McNemar tests,
                                   the prompt-cache speedup; beside the raw scores, the last model's (Phase
                                   7's) guided ones (a call's path held to the workspace's real paths) and
                                   the time guidance adds
       benchmark_all_phases.json   the same, machine-readable (with each set's workspace map)
       benchmark_all_phases.png    accuracy and times per model
       data/benchmark/predictions/<set>/<model>.jsonl   one prediction per case (<model>.guided.jsonl: guided)

Run from the project root (`make benchmark` after `make phase7`):
    python benchmark_phase5_vs_base.py [--eval PATH[=ROOT,...] ...] [--repos-root DIR ...] [--models NAME ...]
    python benchmark_phase5_vs_base.py --models phase7 qwen=mlx-community/Qwen2.5-Coder-7B-Instruct-4bit
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from tooltrain import paths
from tooltrain.blas import environment_report, reexec_with_optimized_blas
from tooltrain.eval.benchmark import (BATCH_SIZE, LATENCY_QUESTIONS, NothingBenchmarked, default_models,
                                      guided_names, parse_evals, parse_models, run_benchmark)
from tooltrain.eval.report import format_log, write_outputs

ROOT = paths.PROJECT_ROOT
SHARED_BFCL = ROOT.parent / "shared" / "eval" / "bfcl_irrelevance_direct.jsonl"
EVAL = paths.DATA / "eval"
DEFAULT_EVALS = [f"{EVAL / 'unseen_repos.jsonl'}={paths.EVAL_REPOS_ROOT}",
                 f"{EVAL / 'holdout_repos.jsonl'}={paths.HOLDOUT_REPOS_ROOT}",
                 f"{EVAL / 'phase7_valid.jsonl'}={paths.REPOS_ROOT}"]
DEFAULT_BASE = str(paths.DEFAULT_MODEL_DIR)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", nargs="+", metavar="PATH[=ROOT,...]",
                        help="eval files, each with the repos roots its repos are under (default: --repos-root); "
                             "default: the two held-out sets, the Phase 7 valid split, the BFCL prompts")
    parser.add_argument("--repos-root", nargs="+", type=Path, metavar="DIR", default=[paths.EVAL_REPOS_ROOT],
                        help="repos roots of an --eval file given without =ROOT, searched in order")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="default names (base phase5 phase5-fused-8bit phase6 phase7) or NAME=MODEL[:ADAPTER]")
    parser.add_argument("--no-map", nargs="+", default=[], metavar="NAME",
                        help="models shown no workspace map (adapters trained without one: the ablation)")
    parser.add_argument("--base-model", default=DEFAULT_BASE, help="the base the default names use (Makefile MODEL=)")
    parser.add_argument("--predictions-dir", type=Path, default=paths.DATA / "benchmark" / "predictions")
    parser.add_argument("--log", type=Path, default=ROOT / "benchmark_all_phases.log")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmark_all_phases.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "benchmark_all_phases.png")
    parser.add_argument("--plain-questions", type=int, default=6,
                        help="questions timed against plain one-shot generate, per model (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=96, help="generation budget per question")
    parser.add_argument("--max-answer-tokens", type=int, default=8, help="direct answers stop this far past the decision")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="questions decoded together in the raw pass (1: one at a time, every case timed; "
                             f"more: the same tokens faster, times measured on {LATENCY_QUESTIONS} cases per set)")
    parser.add_argument("--guided-models", nargs="+", metavar="NAME",
                        help="models also scored with guided decoding (paths held to real ones), beside their raw "
                             "scores; `all` for every model; default: the last model (phase7 in the default order)")
    parser.add_argument("--no-guided", dest="guided", action="store_false",
                        help="no guided-decoding scores for any model")
    return parser.parse_args(argv)


def default_evals() -> list[str]:
    if SHARED_BFCL.exists():
        return [*DEFAULT_EVALS, f"{SHARED_BFCL}={paths.EVAL_REPOS_ROOT}"]
    print(f"note: {SHARED_BFCL} not found, so the BFCL irrelevance prompts are skipped", flush=True)
    return list(DEFAULT_EVALS)


def main(argv=None) -> int:
    args = parse_args(argv)
    reexec_with_optimized_blas()
    try:
        specs = parse_models(args.models or [s.name for s in default_models(args.base_model)], args.base_model,
                             tuple(args.no_map))
        evals = parse_evals(args.eval or default_evals(), args.repos_root)
        guided = guided_names(args.guided_models, specs) if args.guided else ()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        results = run_benchmark(evals, specs, args.predictions_dir, args.plain_questions, args.max_tokens,
                                args.max_answer_tokens, guided, args.batch_size)
    except NothingBenchmarked as err:
        print(f"error: {err}; {args.log}, {args.json} and {args.chart} are left as they were", file=sys.stderr)
        return 1
    env = environment_report("")
    results["environment"] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "platform": platform.platform(), "device": env["device"], "blas": env["blas"]}
    write_outputs(results, args.log, args.json, args.chart)
    print(format_log(results))
    print(f"wrote {args.log}, {args.json}, {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
