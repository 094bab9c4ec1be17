"""Training speed, side by side: the stock `mlx[cpu]` path against the project's, on the same batches.

Each path runs in its own child process (a BLAS is chosen when a process starts):

- stock:   the quantized base as given, MLX's bundled BLAS, mlx-lm's `default_loss`;
- blas:    the float32 copy of the base with OpenBLAS preloaded, `default_loss`;
- project: the float32 copy with OpenBLAS and the shared-prefix loss (what `make phase7` runs).

Every child builds the same LoRA model (same seed), draws the same batches from the same
data with mlx-lm's `iterate_batches`, and times mlx-lm-style compiled training steps
(forward, backward, Adam update) after one untimed warm-up step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

PATHS = ("stock", "blas", "project")


def child_env(path: str) -> dict:
    """The environment a path's child starts in: OpenBLAS preloaded or explicitly not."""
    from .blas import optimized_env
    from .train import REEXEC_MARK

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPENBLAS_CORETYPE")}
    env[REEXEC_MARK] = "1"  # the child must not swap its BLAS itself
    if path != "stock":
        plan = optimized_env()
        env.update(plan.vars)
    return env


def measure(path: str, model: str, data: str, steps: int, num_layers: int, batch_size: int, seed: int) -> dict:
    """Time `steps` training steps of one path in this process (the child's side)."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm import load
    from mlx_lm.lora import CONFIG_DEFAULTS, load_dataset
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import default_loss, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from .blas import detect
    from .modelprep import training_base
    from .prefix_loss import make_shared_prefix_loss, shared_prefix

    weights = model if path == "stock" else training_base(model)[0]
    mx.random.seed(seed)
    np.random.seed(seed)
    net, tokenizer = load(weights)
    args = types.SimpleNamespace(**{**CONFIG_DEFAULTS, "data": data, "mask_prompt": True, "train": True})
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    net.freeze()
    linear_to_lora_layers(net, num_layers, {"rank": 8, "dropout": 0.0, "scale": 20.0})
    loss = (make_shared_prefix_loss(net, shared_prefix([train_set, valid_set])) if path == "project"
            else default_loss)
    optimizer = optim.Adam(learning_rate=1e-4)
    value_and_grad = nn.value_and_grad(net, loss)
    state = [net.state, optimizer.state]

    def step(batch, lengths):
        (value, tokens), grad = value_and_grad(net, batch, lengths)
        optimizer.update(net, grad)
        return value, tokens

    step = mx.compile(step, inputs=state, outputs=state)
    batches = iterate_batches(CacheDataset(train_set), batch_size, 1024, loop=True)
    warm = next(batches)
    mx.eval(step(*warm), state)
    mx.reset_peak_memory()
    seconds, all_tokens, loss_tokens, losses = 0.0, 0, 0, []
    for _ in range(steps):
        batch, lengths = next(batches)
        started = time.perf_counter()
        value, tokens = step(batch, lengths)
        mx.eval(value, tokens, state)
        seconds += time.perf_counter() - started
        all_tokens += int(lengths[:, 1].sum().item())
        loss_tokens += int(tokens.item())
        losses.append(round(value.item(), 4))
    return {"path": path, "weights": weights, "blas": detect().blas, "steps": steps, "seconds": round(seconds, 2),
            "step_s": round(seconds / steps, 3), "tokens_per_second_all": round(all_tokens / seconds, 1),
            "tokens_per_second_loss": round(loss_tokens / seconds, 1), "row_tokens": all_tokens,
            "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 3), "losses": losses}


def run_child(path: str, argv: list[str]) -> dict:
    """Run one path in a fresh process with its BLAS; its JSON result or the error it printed."""
    cmd = [sys.executable, "-m", "scripts.bench_training", "--child", path, *argv]
    done = subprocess.run(cmd, env=child_env(path), capture_output=True, text=True)
    if done.returncode != 0:
        return {"path": path, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> str:
    by_path = {r["path"]: r for r in results}
    lines = [f"{'path':<8} {'weights':<48} {'BLAS':<10} {'s/step':>7} {'tok/s all':>10} {'tok/s loss':>11} "
             f"{'peak GB':>8}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['path']:<8} failed: {r['error']}")
            continue
        lines.append(f"{r['path']:<8} {Path(r['weights']).name:<48} {r['blas']:<10} {r['step_s']:>7.2f} "
                     f"{r['tokens_per_second_all']:>10.1f} {r['tokens_per_second_loss']:>11.1f} "
                     f"{r['peak_memory_gb']:>8.2f}")
    ok = [p for p in PATHS if p in by_path and "error" not in by_path[p]]
    if "stock" in ok:
        for other in ok[1:]:
            ratio = by_path[other]["tokens_per_second_all"] / by_path["stock"]["tokens_per_second_all"]
            lines.append(f"{other} vs stock: {ratio:.1f}x the tokens per second on the same batches")
    if "blas" in ok and "project" in ok:
        ratio = by_path["project"]["tokens_per_second_all"] / by_path["blas"]["tokens_per_second_all"]
        lines.append(f"project vs blas (the shared-prefix loss alone): {ratio:.2f}x")
    for other in ok[1:]:
        gap = max(abs(a - b) for a, b in zip(by_path[ok[0]]["losses"], by_path[other]["losses"]))
        lines.append(f"largest step-loss difference, {other} vs {ok[0]}: {gap:.4f}")
    return "\n".join(lines)
