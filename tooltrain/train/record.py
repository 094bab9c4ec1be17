"""What a training run leaves behind: its files, the log and the best adapters the recorder keeps, the
training record and the loss plot.

`adapters.safetensors` holds the adapter with the best task success (or the best validation loss,
without a task scorer); `training_record.json` is written last, when training has finished.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..io import file_digest, pyplot, read_jsonl, save_png, write_json
from ..model_folders import ADAPTER_FILE

LOG_FILE = "train_log.jsonl"
RECORD_FILE = "training_record.json"
PLOT_FILE = "loss_curves.png"
CONFIG_FILE = "adapter_config.json"  # mlx-lm's: how to rebuild the LoRA layers
WORK_DIR = "unfinished"  # the run in progress (or stopped): its log, checkpoints and best adapters so far
LAST_FILE = "last_adapters.safetensors"
LOSS_BEST_FILE = "loss_best_adapters.safetensors"  # the best-validation-loss weights, kept beside for comparison
BEST_SNAPSHOT = "best_adapters.safetensors"
LOSS_SNAPSHOT = "best_loss_snapshot.safetensors"
RESUME_STATE = "resume.json"  # the last complete checkpoint: its iteration, scores and files
CHECKPOINT_GLOB = "resume_*.safetensors"


def checkpoint_files(iteration: int) -> dict[str, str]:
    """A checkpoint's weight files, named by its iteration so that a newer one never overwrites the files the
    state file still points at."""
    stem = f"resume_{iteration:06d}"
    return {"weights": f"{stem}_adapters.safetensors", "best": f"{stem}_best_adapters.safetensors",
            "loss_best": f"{stem}_loss_best_adapters.safetensors"}


# A checkpoint's copies of the best adapters so far, by their name in checkpoint_files.
CHECKPOINT_SNAPSHOTS = {"best": BEST_SNAPSHOT, "loss_best": LOSS_SNAPSHOT}


class Recorder:
    """mlx-lm TrainingCallback: logs loss reports and keeps two adapters: the best by validation loss, and the
    best by task success (the benchmark's decoding and checks on the valid split) when a scorer is given.
    `adapters.safetensors` is the second (or the first, without a scorer)."""

    def __init__(self, model, adapter_dir: Path, save_every: int, offset: int = 0, state: dict | None = None,
                 lead: bool = True, scorer=None):
        self.model = model
        self.dir = Path(adapter_dir)
        self.save_every = save_every
        self.offset = offset  # iterations done before a resume
        state = state or {}
        self.best_loss = state.get("best_val_loss", float("inf"))
        self.best_key = state.get("best_key")  # [success, -val_loss] of the kept adapter
        self.lead = lead  # in a distributed run only rank 0 writes; every rank keeps the same state
        self.scorer = scorer  # iteration -> {"success", "accuracy", ...} of the current weights (None: skip it)

    def log(self, entry: dict) -> None:
        if not self.lead:
            return
        with open(self.dir / LOG_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def on_train_loss_report(self, info: dict) -> None:
        # Reported after the step, so the weights now hold exactly `iteration` updates.
        iteration = info["iteration"] + self.offset
        self.log({"kind": "train", **info, "iteration": iteration})
        if iteration % self.save_every == 0 and self.lead:
            self.checkpoint(iteration)

    def checkpoint(self, iteration: int) -> None:
        """Write the weights and the best adapters so far under new names, then the state file that names
        them (one atomic rename: a run killed at any moment resumes from one whole checkpoint), then drop
        the older checkpoint's files."""
        names = checkpoint_files(iteration)
        files = {"weights": names["weights"]}
        self.save(self.dir / names["weights"])
        for role, snapshot in CHECKPOINT_SNAPSHOTS.items():
            if (self.dir / snapshot).exists():
                shutil.copyfile(self.dir / snapshot, self.dir / names[role])
                files[role] = names[role]
        write_json(self.dir / RESUME_STATE, {"iteration": iteration, "best_val_loss": self.best_loss,
                                             "best_key": self.best_key, "files": files})
        for path in self.dir.glob(CHECKPOINT_GLOB):
            if path.name not in files.values():
                path.unlink()

    def on_val_loss_report(self, info: dict) -> None:
        # mlx-lm reports validation before the step: "iteration" counts the updates already applied.
        iteration, loss = info["iteration"] + self.offset, info["val_loss"]
        self.log({"kind": "val", "iteration": iteration, "val_loss": loss, "val_time": info["val_time"]})
        if loss < self.best_loss:
            self.best_loss = loss
            self.save(self.dir / LOSS_SNAPSHOT)
        if self.scorer is None:
            key = [0.0, -loss]
        elif iteration == 0:
            return  # the untrained adapter is never the one to keep
        else:
            started = time.perf_counter()
            task = self.scorer(iteration)
            if task is None:
                return
            self.log({"kind": "task", "iteration": iteration, **task, "task_time": time.perf_counter() - started})
            key = [task["success"], -loss]
        if self.best_key is None or key > self.best_key:
            self.best_key = key
            self.save(self.dir / BEST_SNAPSHOT)

    def save(self, path: Path) -> None:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        if not self.lead:
            return
        weights = dict(tree_flatten(self.model.trainable_parameters()))
        tmp = path.with_name(path.name + ".tmp.safetensors")
        mx.save_safetensors(str(tmp), weights)
        tmp.replace(path)


def read_log(adapter_dir: Path) -> list[dict]:
    path = Path(adapter_dir) / LOG_FILE
    return read_jsonl(path) if path.exists() else []


def resume_state(adapter_dir: Path) -> dict | None:
    """{"iteration", "best_val_loss", "best_key", "files"} of an interrupted run's last checkpoint, or None
    (no checkpoint, or one whose files are gone)."""
    path = Path(adapter_dir) / RESUME_STATE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    files = state.get("files") or {}
    if "weights" not in files or not all((Path(adapter_dir) / name).exists() for name in files.values()):
        return None
    return state


def build_record(args, log: list[dict], counts: dict, wall_s: float, environment: dict, adapter_bytes: int) -> dict:
    vals = [e for e in log if e["kind"] == "val"]
    trains = [e for e in log if e["kind"] == "train"]
    tasks = [e for e in log if e["kind"] == "task"]
    first, last = vals[0]["val_loss"], vals[-1]["val_loss"]
    best_loss = min(vals, key=lambda e: e["val_loss"])
    loss_at = {e["iteration"]: e["val_loss"] for e in vals}  # the last validation of an iteration wins
    if tasks:  # the kept adapter: best task success, then lower validation loss (as the recorder chose)
        best = max(tasks, key=lambda e: (e["success"], -loss_at[e["iteration"]]))
        kept = (f"{ADAPTER_FILE} = iteration {best['iteration']} (best task success on {args.task_eval}: "
                f"{best['success']:.3f}, then validation loss); {LOSS_BEST_FILE} = iteration "
                f"{best_loss['iteration']} (best validation loss)")
    else:
        best = best_loss
        kept = f"{ADAPTER_FILE} = iteration {best['iteration']} (best validation loss)"
    data_files = [Path(args.data) / "train.jsonl", Path(args.data) / "valid.jsonl"]
    return {
        "model": str(args.model),
        "data": str(args.data),
        "data_sha256": file_digest(*data_files),
        "rows": counts,
        "config": args.config,
        "iters": args.iters, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "num_layers": args.num_layers, "lora_parameters": args.lora_parameters, "mask_prompt": args.mask_prompt,
        "seed": args.seed,
        "val_loss_first": round(first, 4), "val_loss_last": round(last, 4),
        "val_loss_improvement_pct": round(100 * (first - last) / first, 1),
        "val_loss_best": round(best_loss["val_loss"], 4), "loss_best_iteration": best_loss["iteration"],
        "best_iteration": best["iteration"], "kept_adapter": kept,
        "selected_by": "task success" if tasks else "validation loss",
        "task": [{k: e[k] for k in ("iteration", "success", "accuracy", "grep_hit_rate", "read_valid_rate",
                                     "over_call_rate", "cases", "task_time")} for e in tasks],
        "train_loss_last": round(trains[-1]["train_loss"], 4) if trains else None,
        **throughput(log, args.batch_size, environment["mean_row_tokens"]),
        "wall_time_s": round(wall_s, 1),  # this run's; a resumed run counts from its checkpoint
        "adapter_size_bytes": adapter_bytes,
        **environment,
    }


def throughput(log: list[dict], batch_size: int, mean_row_tokens: float) -> dict:
    """Tokens per second of the training steps (validation excluded).

    mlx-lm reports only the tokens the loss sees (with mask_prompt, the answer);
    the model also computes over the prompt, so both figures are given.
    """
    seconds, loss_tokens, steps, previous = 0.0, 0, 0, None
    for entry in log:
        if entry["kind"] == "start":  # `trained_tokens` and `iteration` windows restart with each run
            previous = {"trained_tokens": 0, "iteration": entry["iteration"]}
        elif entry["kind"] == "train":
            window = entry["trained_tokens"] - previous["trained_tokens"]
            seconds += window / entry["tokens_per_second"]
            loss_tokens += window
            steps += entry["iteration"] - previous["iteration"]
            previous = entry
    if not seconds:
        return {"tokens_per_second_loss": None, "tokens_per_second_all": None, "train_step_time_s": None}
    return {
        "tokens_per_second_loss": round(loss_tokens / seconds, 1),
        "tokens_per_second_all": round(steps * batch_size * mean_row_tokens / seconds, 1),
        "train_step_time_s": round(seconds / steps, 3),
    }


def plot_losses(log: list[dict], out: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, key, style in (("train", "train_loss", ".-"), ("val", "val_loss", "o-")):
        points = [(e["iteration"], e[key]) for e in log if e["kind"] == kind]
        if points:
            ax.plot(*zip(*points), style, label=f"{kind} loss", markersize=4)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, out)
