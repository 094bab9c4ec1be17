"""Training speed benchmark: the stock mlx[cpu] path vs the project's, on the same steps, in one run.

Reads  the base model (default: the embedded SmolLM2-135M) and a data folder (default: data/phase7_format)
Writes nothing; prints one line per path (seconds per step, tokens/s over every row token and over
       the loss tokens, peak memory) and the ratios, all measured in this run; with --profile, where a
       step of the project path goes (forward, backward, update; projection matmuls vs the rest).

Paths (each in its own process): stock = quantized base + bundled BLAS + mlx-lm's default_loss;
blas = float32 copy + OpenBLAS + default_loss; project = float32 copy + OpenBLAS + shared-prefix loss.

Run from the project root (the stock path takes ~25 minutes for 20 steps on a 2-core CPU):
    python -m scripts.bench_training [--steps 20] [--paths stock blas project] [--profile]
"""

import argparse
import json
from pathlib import Path

import yaml

from tooltrain import paths
from tooltrain.train.speed import PATHS, format_profile, measure, profile, report, run_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(paths.DEFAULT_MODEL_DIR))
    parser.add_argument("--data", default=str(paths.PHASE7_FORMAT))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--config", type=Path, default=paths.CONFIGS / "lora_phase7.yaml",
                        help="the training config whose LoRA blocks, rank, batch size and seed are measured")
    parser.add_argument("--num-layers", type=int, help="LoRA blocks (default: the config's)")
    parser.add_argument("--rank", type=int, help="LoRA rank (default: the config's)")
    parser.add_argument("--batch-size", type=int, help="rows per step (default: the config's)")
    parser.add_argument("--seed", type=int, help="default: the config's")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--profile", action="store_true", help="also break a project-path step down")
    parser.add_argument("--child", choices=[*PATHS, "profile"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    args.num_layers = args.num_layers or config["num_layers"]
    args.rank = args.rank or config["lora_parameters"]["rank"]
    args.batch_size = args.batch_size or config["batch_size"]
    args.seed = config["seed"] if args.seed is None else args.seed
    setting = [args.model, args.data, args.steps, args.num_layers, args.rank, args.batch_size, args.seed]
    if args.child == "profile":
        print(json.dumps(profile(*setting)))
        return
    if args.child:
        print(json.dumps(measure(args.child, *setting)))
        return
    argv = ["--model", args.model, "--data", args.data, "--steps", str(args.steps), "--num-layers",
            str(args.num_layers), "--rank", str(args.rank), "--batch-size", str(args.batch_size),
            "--seed", str(args.seed)]
    results = []
    for path in args.paths:
        print(f"running {path} ({args.steps} steps) ...", flush=True)
        results.append(run_child(path, argv))
    print(report(results))
    if args.profile:
        print(f"profiling the project path ({args.steps} steps, each three ways) ...", flush=True)
        print(format_profile(run_child("profile", argv)))


if __name__ == "__main__":
    main()
