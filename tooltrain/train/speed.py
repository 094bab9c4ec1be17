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
import statistics
import sys
import time
import types
from pathlib import Path

from ..blas import REEXEC_MARK, detect, optimized_env
from ..model_folders import training_base
from .prefix_loss import answer_window, frozen_block_count, make_shared_prefix_loss, shared_prefix

PATHS = ("stock", "blas", "project")


def child_env(path: str) -> dict:
    """The environment a path's child starts in: OpenBLAS preloaded or explicitly not."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPENBLAS_CORETYPE")}
    env[REEXEC_MARK] = "1"  # the child must not swap its BLAS itself
    if path != "stock":
        plan = optimized_env()
        env.update(plan.vars)
    return env


def setup_run(path: str, model: str, data: str, num_layers: int, rank: int, batch_size: int, seed: int):
    """One path's LoRA model, loss, optimizer state and batch stream, the same for every path given a seed."""
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm import load
    from mlx_lm.lora import CONFIG_DEFAULTS, load_dataset
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import default_loss, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers


    weights = model if path == "stock" else training_base(model)[0]
    mx.random.seed(seed)
    np.random.seed(seed)
    net, tokenizer = load(weights)
    args = types.SimpleNamespace(**{**CONFIG_DEFAULTS, "data": data, "mask_prompt": True, "train": True})
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    net.freeze()
    linear_to_lora_layers(net, num_layers, {"rank": rank, "dropout": 0.0, "scale": 20.0})
    datasets = [train_set, valid_set]
    loss = (make_shared_prefix_loss(net, shared_prefix(datasets), answer_window(datasets)) if path == "project"
            else default_loss)
    batches = iterate_batches(CacheDataset(train_set), batch_size, 1024, loop=True)
    return types.SimpleNamespace(weights=weights, net=net, loss=loss, optimizer=optim.Adam(learning_rate=1e-4),
                                 batches=batches)


def compiled_step(run, with_grad: bool = True, with_update: bool = True):
    """mlx-lm's training step (forward, backward, Adam), or only its first parts, compiled."""
    import mlx.core as mx
    import mlx.nn as nn

    net, optimizer = run.net, run.optimizer
    value_and_grad = nn.value_and_grad(net, run.loss)
    state = [net.state, optimizer.state]

    def step(batch, lengths):
        if not with_grad:
            return run.loss(net, batch, lengths)
        (value, tokens), grad = value_and_grad(net, batch, lengths)
        if with_update:
            optimizer.update(net, grad)
            return value, tokens
        return value, tokens, grad

    return mx.compile(step, inputs=state, outputs=state), state


def _timed(step, state, batches, steps: int):
    """Seconds over `steps` batches after one untimed warm-up, and what each step returned."""
    import mlx.core as mx

    mx.eval(step(*next(batches)), state)
    seconds, seen = 0.0, []
    for _ in range(steps):
        batch, lengths = next(batches)
        started = time.perf_counter()
        out = step(batch, lengths)
        mx.eval(out, state)
        took = time.perf_counter() - started
        seconds += took
        seen.append((batch, lengths, out, took))
    return seconds, seen


def measure(path: str, model: str, data: str, steps: int, num_layers: int, rank: int, batch_size: int,
            seed: int) -> dict:
    """Time `steps` training steps of one path in this process (the child's side)."""
    import mlx.core as mx

    run = setup_run(path, model, data, num_layers, rank, batch_size, seed)
    step, state = compiled_step(run)
    mx.reset_peak_memory()
    seconds, seen = _timed(step, state, run.batches, steps)
    all_tokens = sum(int(lengths[:, 1].sum().item()) for _, lengths, _, _ in seen)
    loss_tokens = sum(int(out[1].item()) for _, _, out, _ in seen)
    return {"path": path, "weights": run.weights, "blas": detect().blas, "steps": steps,
            "seconds": round(seconds, 2), "step_s": round(seconds / steps, 3),
            # a batch of a padded length not seen before compiles the step anew: the median leaves that out
            "median_step_s": round(statistics.median(took for *_, took in seen), 3),
            "tokens_per_second_all": round(all_tokens / seconds, 1),
            "tokens_per_second_loss": round(loss_tokens / seconds, 1), "row_tokens": all_tokens,
            "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 3),
            "losses": [round(out[0].item(), 4) for _, _, out, _ in seen]}


def _matmul_seconds(shapes: dict[tuple[int, int, int], int], repeats: int = 3) -> float:
    """Time of the given float32 matmuls (m, k, n) -> count, each run alone through the live BLAS."""
    import mlx.core as mx

    total = 0.0
    for (m, k, n), count in shapes.items():
        a, b = mx.random.normal((m, k)), mx.random.normal((k, n))
        mx.eval(a, b, a @ b)
        started = time.perf_counter()
        for _ in range(repeats):
            mx.eval(a @ b)
        total += count * (time.perf_counter() - started) / repeats
    return total


def _step_matmuls(net, prefix: int, row_tokens: int, head_tokens: int) -> dict[tuple[int, int, int], int]:
    """The projection and vocabulary-head matmuls of one shared-prefix training step: frozen blocks
    forward on the rows' own tokens; adapted blocks forward and backward (input gradients) on those
    and on the prefix; the head forward and backward on the answer windows' tokens."""
    import mlx.nn as nn


    shapes: dict[tuple[int, int, int], int] = {}

    def add(m, k, n):
        if m:
            shapes[(m, k, n)] = shapes.get((m, k, n), 0) + 1

    frozen = frozen_block_count(net)
    for i, layer in enumerate(net.model.layers):
        for _, linear in layer.named_modules():
            if not isinstance(linear, nn.Linear):  # a LoRA layer's frozen Linear is its child
                continue
            out_dim, in_dim = linear.weight.shape
            if i < frozen:
                add(row_tokens, in_dim, out_dim)
            else:
                for tokens in (row_tokens, prefix):
                    add(tokens, in_dim, out_dim)  # forward
                    add(tokens, out_dim, in_dim)  # gradient with respect to the input
    vocab, hidden = net.model.embed_tokens.weight.shape
    add(head_tokens, hidden, vocab)
    add(head_tokens, vocab, hidden)
    return shapes


def profile(model: str, data: str, steps: int, num_layers: int, rank: int, batch_size: int, seed: int) -> dict:
    """Where a project-path step goes: forward, backward and the Adam update (the same batches run
    three ways), and how much of it the linear layers' and the head's matmuls take, timed alone at
    the step's shapes through the same BLAS; the rest is MLX's own kernels (attention, softmax,
    elementwise, reductions) and graph overhead."""
    run = setup_run("project", model, data, num_layers, rank, batch_size, seed)
    prefix = getattr(run.loss, "prefix_length", 0)
    batches = [next(run.batches) for _ in range(steps + 1)]
    times = {}
    for name, grad, update in (("forward", False, False), ("forward_backward", True, False), ("step", True, True)):
        step, state = compiled_step(run, grad, update)
        times[name], seen = _timed(step, state, iter(batches), steps)
    row_tokens = [int(batch.shape[0] * (batch.shape[1] - prefix - 1)) for batch, *_ in seen]
    window = getattr(run.loss, "window", None)
    matmul = sum(_matmul_seconds(_step_matmuls(run.net, prefix, n, min(n, batch_size * (window or n))), repeats=1)
                 for n in row_tokens)
    per = {k: v / steps for k, v in times.items()}
    return {"steps": steps, "prefix_tokens": prefix, "mean_row_tokens_after_prefix": sum(row_tokens) / steps,
            "step_s": round(per["step"], 3), "forward_s": round(per["forward"], 3),
            "backward_s": round(per["forward_backward"] - per["forward"], 3),
            "update_s": round(per["step"] - per["forward_backward"], 3),
            "projection_and_head_matmuls_s": round(matmul / steps, 3),
            "other_s": round(per["step"] - matmul / steps, 3)}


def run_child(path: str, argv: list[str]) -> dict:
    """Run one path in a fresh process with its BLAS; its JSON result or the error it printed."""
    cmd = [sys.executable, "-m", "scripts.bench_training", "--child", path, *argv]
    done = subprocess.run(cmd, env=child_env(path), capture_output=True, text=True)
    if done.returncode != 0:
        return {"path": path, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> str:
    by_path = {r["path"]: r for r in results}
    lines = [f"{'path':<8} {'weights':<48} {'BLAS':<10} {'s/step':>7} {'median':>7} {'tok/s all':>10} "
             f"{'tok/s loss':>11} {'peak GB':>8}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['path']:<8} failed: {r['error']}")
            continue
        lines.append(f"{r['path']:<8} {Path(r['weights']).name:<48} {r['blas']:<10} {r['step_s']:>7.2f} "
                     f"{r['median_step_s']:>7.2f} {r['tokens_per_second_all']:>10.1f} {r['tokens_per_second_loss']:>11.1f} "
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


def format_profile(p: dict) -> str:
    if "error" in p:
        return f"profile failed: {p['error']}"
    share = lambda key: f"{p[key]:.2f} s ({100 * p[key] / p['step_s']:.0f}%)"
    return "\n".join([
        f"a project-path step: {p['step_s']:.2f} s ({p['prefix_tokens']} shared prefix tokens once, "
        f"{p['mean_row_tokens_after_prefix']:.0f} of the rows' own tokens on average)",
        f"  forward {share('forward_s')}, backward {share('backward_s')}, Adam update {share('update_s')}",
        f"  projection and vocabulary-head matmuls, timed alone at the step's shapes: "
        f"{share('projection_and_head_matmuls_s')}",
        f"  everything else (attention, softmax, elementwise, reductions, graph): {share('other_s')}"])
