"""Train one LoRA adapter with mlx-lm's trainer (300 iterations, batch 2, lr 1e-4 by the phase configs).

Reads  configs/lora_phaseN.yaml (an ordinary `mlx_lm.lora -c` config) and its data folder
Writes <adapter_path>/adapters.safetensors    the adapter with the best task success on the config's
                                               `task_eval` cases (mlx-lm loads it); without one, the
                                               best-validation-loss adapter
       <adapter_path>/loss_best_adapters.safetensors  the best-validation-loss adapter
       <adapter_path>/last_adapters.safetensors, adapter_config.json, train_log.jsonl,
       <adapter_path>/training_record.json     losses, best iteration, tokens/s, memory, device, BLAS
       <adapter_path>/loss_curves.png

On a Linux CPU it reruns itself with OpenBLAS preloaded (when installed) and trains
a float32 copy of a quantized base; on Metal/CUDA the quantized base is kept.
A run works in <adapter_path>/unfinished/ and replaces the previous results only once it has
finished: one that fails leaves them as they were, one that is interrupted resumes from its
last checkpoint when started again.

Run from the project root:
    python -m scripts.train_adapter -c configs/lora_phase7.yaml [--model M] [--iters N] ...
"""

import argparse
from pathlib import Path

from tooltrain import cli
from tooltrain.eval.checkpoints import task_scorer
from tooltrain.train.run import train_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, required=True, help="mlx-lm LoRA YAML config")
    parser.add_argument("--model", help="base model (mlx-lm folder or hub id); default: the config's")
    parser.add_argument("--data", help="data folder; default: the config's")
    parser.add_argument("--adapter-path", help="output folder; default: the config's")
    parser.add_argument("--iters", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--steps-per-eval", type=int)
    parser.add_argument("--save-every", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--task-eval", help="eval cases the kept adapter is chosen on; default: the config's")
    parser.add_argument("--task-repos-root", help="the repos root those cases are about; default: the config's")
    parser.add_argument("--no-task-map", dest="task_map", action="store_false", default=None,
                        help="score without the workspace map (for data made with --no-map)")
    args = vars(parser.parse_args())
    record = train_phase(args.pop("config"), task_scorer, **args)
    if record is None:
        return  # a distributed run's other ranks: rank 0 reports
    print(f"{record['data']}: val loss {record['val_loss_first']} -> {record['val_loss_last']} "
          f"({record['val_loss_improvement_pct']}% better), best {record['val_loss_best']} at iteration "
          f"{record['loss_best_iteration']}; kept: {record['kept_adapter']}; {record['tokens_per_second_all']} tok/s "
          f"(all tokens), {record['wall_time_s']}s, adapter {record['adapter_size_bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    cli.run(main)
