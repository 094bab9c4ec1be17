"""Training speed against a peer: the project's MLX path and PyTorch + PEFT on the same 20 LoRA steps.

Two workers (tooltrain.lockstep), stepped in turn:

- mlx:   `make bench-training`'s project path (tooltrain.train.speed: float32 base, OpenBLAS, the
         shared-prefix loss, mlx-lm's compiled step and Adam), in the project's venv;
- torch: transformers' Llama on the same float32 weights with PEFT's LoRA, eager PyTorch on the CPU
         (2 threads), in `.venv-peers`: what a user would run instead.

The same work: the MLX worker draws the batches as the project's speed code does (mlx-lm's
`iterate_batches`, same seed) and writes them, with its LoRA layers' initial `lora_a`, to a folder
the torch worker reads. The torch side adapts the projections mlx-lm adapted (read off the MLX
model, not assumed) in the same blocks, rank and scale (PEFT's alpha = scale * rank), starts from
the same `lora_a` (both start `lora_b` at zero), computes mlx-lm's `default_loss` (mean cross-entropy
over the rows' answer tokens, mlx-lm's mask), and steps Adam as MLX's does (no bias correction:
torch's Adam is given a per-step learning rate and epsilon that cancel it). So the losses of the
first steps agree, which shows it is the same work.

The embedded model's q_proj/k_proj rows are in the GGUF's interleaved rotary order (`rope_traditional`);
transformers' Llama rotates the two halves of each head, so the torch side permutes them back
(`rotary_to_half`); the workers' logits on a real row are compared before training.

Run as a worker: `python -m tooltrain.train.peers mlx|torch` (the parent talks to it over stdin/stdout).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from ..blas import reexec_with_optimized_blas
from ..lockstep import Worker, serve, side_by_side
from ..paths import PROJECT_ROOT
from .speed import compiled_step, format_profile, profile, setup_run

ROWS_FILE, LORA_INIT_FILE = "rows.npz", "lora_init.npz"


def rotary_to_half(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q/k projection from the interleaved rotary order (each head's pairs (2i, 2i+1), as GGUF and
    MLX's `traditional` rope keep them) to the half order (pairs (i, i + d/2), transformers' Llama)."""
    rows, cols = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def answer_mask(lengths: np.ndarray, width: int) -> np.ndarray:
    """mlx-lm's `default_loss` mask over a batch's `width - 1` targets: target j (the token at j + 1) counts
    when offset <= j + 1 <= length, for `lengths` rows of (offset, length)."""
    steps = np.arange(1, width)
    return (steps >= lengths[:, :1]) & (steps <= lengths[:, 1:])


def uncorrected_adam(learning_rate: float, betas: tuple[float, float], eps: float, step: int) -> tuple[float, float]:
    """(lr, eps) for torch's Adam at `step` (1, 2, ...) that make its update MLX's Adam's, which has no bias
    correction: torch scales the step by sqrt(1 - b2^t) / (1 - b1^t) and adds epsilon after dividing the
    second moment's root by sqrt(1 - b2^t), so both are scaled back."""
    b1, b2 = betas
    root = math.sqrt(1 - b2 ** step)
    return learning_rate * (1 - b1 ** step) / root, eps / root


def lora_targets(names: list[str]) -> tuple[list[str], list[int]]:
    """(projection names inside a block, block indexes) of LoRA layers named like `model.layers.14.self_attn.q_proj`."""
    keys, blocks = set(), set()
    for name in names:
        head, _, rest = name.partition("layers.")
        index, _, key = rest.partition(".")
        if not index.isdigit() or not key:
            raise ValueError(f"not a LoRA layer inside a block: {name!r}")
        keys.add(key)
        blocks.add(int(index))
    return sorted(keys), sorted(blocks)


class MlxTraining:
    """The project's training step (tooltrain.train.speed's `project` path), one batch at a time."""

    OPS = ("setup", "logits", "step", "profile")

    def setup(self, model: str, data: str, num_layers: int, rank: int, batch_size: int, seed: int, steps: int,
              workdir: str) -> dict:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        from ..blas import detect

        run = setup_run("project", model, data, num_layers, rank, batch_size, seed)
        self.net, self.step_fn, self.state = run.net, *compiled_step(run)
        self.setting = (model, data, num_layers, rank, batch_size, seed)
        self.batches = [next(run.batches) for _ in range(steps + 1)]  # the first is the warm-up, as in speed.measure
        np.savez(Path(workdir) / ROWS_FILE, **{f"{part}{i}": np.array(value) for i, batch in enumerate(self.batches)
                                               for part, value in zip(("batch", "lengths"), batch)})
        lora = {name: module for name, module in run.net.named_modules() if hasattr(module, "lora_a")}
        np.savez(Path(workdir) / LORA_INIT_FILE, **{name: np.array(m.lora_a) for name, m in lora.items()})
        keys, blocks = lora_targets(list(lora))
        scales = {float(m.scale) for m in lora.values()}
        mx.eval(self.state)
        return {"weights": run.weights, "blas": detect().blas, "keys": keys, "blocks": blocks,
                "rank": int(next(iter(lora.values())).lora_a.shape[1]), "scale": scales.pop(),
                "learning_rate": float(run.optimizer.learning_rate.item()), "lora_layers": len(lora),
                "trainable": sum(v.size for _, v in tree_flatten(run.net.trainable_parameters()))}

    def logits(self, ids: list[int], out: str) -> dict:
        """The model's logits over `ids`, saved to `out` (.npy): before any step the LoRA layers add nothing."""
        import mlx.core as mx

        logits = self.net(mx.array(ids)[None]).astype(mx.float32)
        np.save(out, np.array(logits[0]))
        return {"shape": list(logits.shape[1:])}

    def step(self, index: int) -> dict:
        import mlx.core as mx

        batch, lengths = self.batches[index]
        started = time.perf_counter()
        out = self.step_fn(batch, lengths)
        mx.eval(out, self.state)
        return {"seconds": time.perf_counter() - started, "loss": out[0].item(),
                "row_tokens": int(lengths[:, 1].sum().item()), "width": int(batch.shape[1])}


    def profile(self, steps: int) -> dict:
        """`make bench-training --profile`'s breakdown of a project-path step (forward, backward, update; the
        projection and head matmuls alone vs MLX's other kernels), on a fresh model of the same setting."""
        return profile(self.setting[0], self.setting[1], steps, *self.setting[2:])


class TorchTraining:
    """The same steps with transformers' Llama and PEFT's LoRA, eager PyTorch on the CPU."""

    OPS = ("setup", "logits", "step", "profile")

    def setup(self, model: str, workdir: str, keys: list[str], blocks: list[int], rank: int, scale: float,
              learning_rate: float, threads: int = 2) -> dict:
        import peft
        import torch
        import transformers
        from peft import LoraConfig, get_peft_model
        from transformers import LlamaForCausalLM

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        net = LlamaForCausalLM.from_pretrained(model, dtype=torch.float32)
        config = net.config
        with torch.no_grad():
            for layer in net.model.layers:
                for proj, heads in ((layer.self_attn.q_proj, config.num_attention_heads),
                                    (layer.self_attn.k_proj, config.num_key_value_heads)):
                    proj.weight.copy_(torch.from_numpy(rotary_to_half(proj.weight.numpy(), heads)))
        lora = LoraConfig(r=rank, lora_alpha=scale * rank, lora_dropout=0.0, target_modules=keys,
                          layers_to_transform=blocks, layers_pattern="layers", bias="none")
        self.net = get_peft_model(net, lora)
        init = np.load(Path(workdir) / LORA_INIT_FILE)
        placed = set()
        with torch.no_grad():
            for name, param in self.net.named_parameters():
                if ".lora_A." in name:  # base_model.model.<mlx name>.lora_A.default.weight, stored transposed
                    mlx_name = name.removeprefix("base_model.model.").split(".lora_A.")[0]
                    param.copy_(torch.from_numpy(init[mlx_name].T))
                    placed.add(mlx_name)
        if placed != set(init.files):
            raise ValueError(f"PEFT's LoRA layers and mlx-lm's differ: {sorted(placed ^ set(init.files))[:4]} ...")
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)
        self.learning_rate, self.updates = learning_rate, 0
        rows = np.load(Path(workdir) / ROWS_FILE)
        self.batches = [(torch.from_numpy(rows[f"batch{i}"]).long(), torch.from_numpy(rows[f"lengths{i}"]).long())
                        for i in range(len(rows.files) // 2)]
        return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "threads": torch.get_num_threads(), "lora_layers": len(placed),
                "trainable": sum(p.numel() for p in trainable), "attention": config._attn_implementation}

    def logits(self, ids: list[int], out: str) -> dict:
        import torch

        with torch.no_grad():
            logits = self.net(input_ids=torch.tensor([ids]), use_cache=False).logits
        np.save(out, logits[0].numpy())
        return {"shape": list(logits.shape[1:])}

    def _loss(self, batch, lengths):
        """mlx-lm's `default_loss`: mean cross-entropy over the targets `answer_mask` keeps."""
        import torch
        import torch.nn.functional as F

        logits = self.net(input_ids=batch[:, :-1], use_cache=False).logits
        mask = torch.from_numpy(answer_mask(lengths.numpy(), batch.shape[1]))
        ce = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none") * mask
        return ce.sum() / mask.sum()

    def _update(self) -> None:
        self.updates += 1
        for group in self.optimizer.param_groups:
            group["lr"], group["eps"] = uncorrected_adam(self.learning_rate, group["betas"], 1e-8, self.updates)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, index: int) -> dict:
        batch, lengths = self.batches[index]
        started = time.perf_counter()
        loss = self._loss(batch, lengths)
        loss.backward()
        self._update()
        return {"seconds": time.perf_counter() - started, "loss": loss.item(),
                "row_tokens": int(lengths[:, 1].sum()), "width": int(batch.shape[1])}

    def profile(self, indexes: list[int], top: int = 12) -> dict:
        """torch.profiler over steps on the given batches: the operators that took the most CPU time."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            took = sum(self.step(i)["seconds"] for i in indexes)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        return {"steps": len(indexes), "step_s": round(took / len(indexes), 3),
                "ops": [{"op": e.key, "calls_per_step": e.count // len(indexes),
                         "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / len(indexes), 1),
                         "share": round(e.self_cpu_time_total / total, 3)} for e in ops[:top]]}


def compare(mlx_python: str, peer_python: str, workdir: Path, setting: dict, profile_steps: int = 4) -> dict:
    """The two workers on the same steps, in turn (who goes first alternates): a warm-up step each, then
    `setting["steps"]` timed ones; logits compared first. Where torch is faster, both are profiled."""
    root = str(PROJECT_ROOT)
    with Worker("mlx", mlx_python, __name__, "mlx", cwd=root) as ours, \
            Worker("torch", peer_python, __name__, "torch", cwd=root) as peer:
        print("training: MLX worker drawing the batches ...", file=sys.stderr, flush=True)
        mlx_info = ours.ask("setup", **setting, workdir=str(workdir))
        torch_info = peer.ask("setup", model=mlx_info["weights"], workdir=str(workdir), keys=mlx_info["keys"],
                              blocks=mlx_info["blocks"], rank=mlx_info["rank"], scale=mlx_info["scale"],
                              learning_rate=mlx_info["learning_rate"])
        rows = np.load(workdir / ROWS_FILE)
        first = rows["batch0"][0, : int(rows["lengths0"][0, 1])].tolist()
        for worker in (ours, peer):
            worker.ask("logits", ids=first, out=str(workdir / f"logits_{worker.name}.npy"))
        gap = float(np.abs(np.load(workdir / "logits_mlx.npy") - np.load(workdir / "logits_torch.npy")).max())
        steps = {"mlx": [], "torch": []}
        for index in range(setting["steps"] + 1):
            for worker in (ours, peer) if index % 2 else (peer, ours):
                steps[worker.name].append(worker.ask("step", index=index))
            print(f"training: step {index}/{setting['steps']}: "
                  + ", ".join(f"{k} {v[-1]['seconds']:.2f} s loss {v[-1]['loss']:.4f}" for k, v in steps.items()),
                  file=sys.stderr, flush=True)
        timed = {name: [s["seconds"] for s in seen[1:]] for name, seen in steps.items()}
        result = {"setting": setting, "mlx": mlx_info, "torch": torch_info,
                  "logits_max_abs_diff": round(gap, 6), "logits_tokens": len(first),
                  "losses": {name: [round(s["loss"], 4) for s in seen] for name, seen in steps.items()},
                  "row_tokens_per_step": round(sum(s["row_tokens"] for s in steps["mlx"][1:]) / setting["steps"], 1),
                  "times": side_by_side(timed["mlx"], timed["torch"])}
        if result["times"]["peer_over_ours_mean"] < 1:
            result["torch_profile"] = peer.ask("profile", indexes=list(range(1, 1 + profile_steps)))
            result["mlx_profile"] = ours.ask("profile", steps=profile_steps)
    return result


def report(result: dict) -> list[str]:
    t, losses = result["times"], result["losses"]
    lines = [f"training, {t['count']} steps (batch {result['setting']['batch_size']}, rank {result['mlx']['rank']}, "
             f"{len(result['mlx']['blocks'])} blocks, {', '.join(result['mlx']['keys'])}; "
             f"{result['row_tokens_per_step']:.0f} row tokens a step), in turn:",
             f"  project MLX path   {t['ours_mean_s']:.2f} s/step (median {t['ours_median_s']:.2f})",
             f"  PyTorch + PEFT     {t['peer_mean_s']:.2f} s/step (median {t['peer_median_s']:.2f})",
             f"  torch / MLX: {t['peer_over_ours_mean']:.2f}x the time (median of step pairs {t['peer_over_ours_median_pair']:.2f}x)",
             f"  logits on a {result['logits_tokens']}-token row before training: max |MLX - torch| = "
             f"{result['logits_max_abs_diff']:.2g}",
             "  losses, warm-up step first: " + "  ".join(f"{a:.4f}/{b:.4f}" for a, b in
                                                       zip(losses["mlx"][:6], losses["torch"][:6])) + "  (MLX/torch)",
             f"  largest loss difference over the {len(losses['mlx'])} steps: "
             f"{max(abs(a - b) for a, b in zip(losses['mlx'], losses['torch'])):.4f}"]
    if prof := result.get("torch_profile"):
        lines.append(f"  torch is faster; where its {prof['step_s']:.2f} s step goes (torch.profiler, self CPU time):")
        lines += [f"    {op['op']:<36} {op['self_ms_per_step']:>8.1f} ms {100 * op['share']:>5.1f}%" for op in prof["ops"]]
        lines += ["  and a project-path step:", *("  " + line for line in format_profile(result["mlx_profile"]).splitlines())]
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "mlx":
        reexec_with_optimized_blas()
    serve({"mlx": MlxTraining, "torch": TorchTraining}[sys.argv[1]]())
