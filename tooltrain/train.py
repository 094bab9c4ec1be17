"""LoRA training through mlx-lm's own trainer, with a record of what happened.

The per-phase YAML is an ordinary `mlx_lm.lora -c` config. We load it the way
`mlx_lm.lora` does (its CONFIG_DEFAULTS under the YAML under the command line),
then set the model up as `mlx_lm.lora.train_model` does (LoRA layers, resumed weights,
optimizer) and call mlx-lm's own `trainer.train` with a callback that logs every loss
report, keeps the best adapters and lets an interrupted run resume from its last
checkpoint. `train` takes the shared-prefix loss (same value, less work) and validation
batches that are the same at every validation (comparable losses) as its own arguments:
nothing inside mlx-lm is patched. At the end `adapters.safetensors`
holds the best-validation weights (the last ones stay in `last_adapters.safetensors`),
and `training_record.json` and `loss_curves.png` sit beside them.

A run works in `unfinished/` inside the adapter folder (log, checkpoints, best adapters so
far); only a finished run moves its files over the previous run's, the record last. A run
that fails or is stopped leaves the previous results as they were.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import sys
import time
import types
from dataclasses import asdict
from pathlib import Path

import yaml

from .io import atomic_write, read_jsonl, write_json
from .prefix_loss import answer_window, make_shared_prefix_loss, shared_prefix

LOG_FILE = "train_log.jsonl"
RECORD_FILE = "training_record.json"
PLOT_FILE = "loss_curves.png"
CONFIG_FILE = "adapter_config.json"  # mlx-lm's: how to rebuild the LoRA layers
WORK_DIR = "unfinished"  # the run in progress (or stopped): its log, checkpoints and best adapters so far
ADAPTER_FILE = "adapters.safetensors"  # what mlx-lm loads: the best-validation weights once training ends
LAST_FILE = "last_adapters.safetensors"
LOSS_BEST_FILE = "loss_best_adapters.safetensors"  # the best-validation-loss weights, kept beside for comparison
BEST_SNAPSHOT = "best_adapters.safetensors"
LOSS_SNAPSHOT = "best_loss_snapshot.safetensors"
RESUME_FILE = "resume_adapters.safetensors"
RESUME_BEST = "resume_best_adapters.safetensors"
RESUME_LOSS_BEST = "resume_loss_best_adapters.safetensors"
RESUME_STATE = "resume.json"


class TrainingInputError(ValueError):
    """Bad training input: missing model or data, malformed rows, batch larger than the data."""


def load_config(path: Path, **overrides) -> types.SimpleNamespace:
    """mlx-lm's defaults, under the YAML file, under non-None `overrides` (as `mlx_lm.lora -c` does)."""
    from mlx_lm.lora import CONFIG_DEFAULTS, yaml_loader

    with open(path) as f:
        config = yaml.load(f, yaml_loader) or {}
    merged = {**CONFIG_DEFAULTS, **config, **{k: v for k, v in overrides.items() if v is not None}}
    merged["config"] = str(path)
    for key in ("iters", "batch_size", "steps_per_eval", "save_every", "val_batches"):
        value = merged.get(key)
        if key == "val_batches" and value == -1:  # mlx-lm's "all of them"
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TrainingInputError(f"{path}: {key} must be a positive whole number, not {value!r}")
    rate = merged.get("learning_rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate < 1:
        raise TrainingInputError(f"{path}: learning_rate must be a number between 0 and 1, not {rate!r}")
    return types.SimpleNamespace(**merged)


def check_data(data_dir: Path, batch_size: int) -> dict[str, int]:
    """Row counts of train/valid; a clear error for a missing, empty or malformed folder or a too-large batch."""
    counts = {}
    for split in ("train", "valid"):
        path = Path(data_dir) / f"{split}.jsonl"
        if not path.exists():
            raise TrainingInputError(f"{path} is missing (build the data first: make data)")
        rows = read_jsonl(path)
        bad = next((i for i, row in enumerate(rows, 1) if "messages" not in row), None)
        if bad:
            raise TrainingInputError(f"{path}: row {bad} has no 'messages' (not mlx-lm's chat format)")
        if len(rows) < batch_size:
            raise TrainingInputError(f"{path} has {len(rows)} rows, fewer than batch_size={batch_size}")
        counts[split] = len(rows)
    return counts


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


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
            # A checkpoint is the weights, the best adapters so far and their scores; the state file goes last.
            self.save(self.dir / RESUME_FILE)
            for snapshot, kept in ((BEST_SNAPSHOT, RESUME_BEST), (LOSS_SNAPSHOT, RESUME_LOSS_BEST)):
                if (self.dir / snapshot).exists():
                    shutil.copyfile(self.dir / snapshot, self.dir / kept)
            write_json(self.dir / RESUME_STATE, {"iteration": iteration, "best_val_loss": self.best_loss,
                                                 "best_key": self.best_key})

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
    """{"iteration", "best_val_loss"} of an interrupted run's last checkpoint, or None."""
    state = Path(adapter_dir) / RESUME_STATE
    if state.exists() and (Path(adapter_dir) / RESUME_FILE).exists():
        return json.loads(state.read_text())
    return None


def _peak_memory_gb() -> dict:
    import mlx.core as mx

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    rss_gb = rss_kb / 1e9 if sys.platform == "darwin" else rss_kb / 1e6
    return {"mlx_peak_gb": round(mx.get_peak_memory() / 1e9, 3), "process_peak_rss_gb": round(rss_gb, 3)}


def run_training(args: types.SimpleNamespace, environment: dict) -> dict | None:
    """Train (or resume) one adapter as `args` says; returns and writes the training record.

    In a distributed run (`mlx.launch`) every rank trains on its share of each batch and
    validates collectively; rank 0 writes, and returns the record (the others return None).
    """
    import mlx.core as mx
    import numpy as np
    from mlx_lm.lora import load_dataset
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import evaluate
    from mlx_lm.utils import save_config

    from .modelprep import load_checked

    world = mx.distributed.init()
    lead = world.rank() == 0
    adapter_dir = Path(args.adapter_path)
    work = adapter_dir / WORK_DIR
    counts = check_data(Path(args.data), args.batch_size)
    state = resume_state(work)
    total_iters, done = args.iters, state["iteration"] if state else 0
    if state and lead:
        print(f"resuming {adapter_dir} from iteration {done} of {total_iters} "
              "(weights restored; optimizer state and data order start afresh)")
    started = time.perf_counter()
    np.random.seed(args.seed)  # as mlx_lm.lora does: batch order
    model, tokenizer = load_checked(args.model)
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    seen = first_batches_digest(train_set, args, world)
    scorer = task_scorer(args, model, tokenizer, skip={total_iters - 1})
    if lead:  # only now that the model, the data and the task cases are in hand
        _prepare_dir(work, state)
    recorder = Recorder(model, work, args.save_every, offset=done, state=state, lead=lead, scorer=scorer)
    recorder.log({"kind": "start", "iteration": done, "of": total_iters, "ranks": world.size()})
    # mlx-lm's own periodic saves are turned off: the recorder's checkpoints carry the global iteration.
    run_args = types.SimpleNamespace(**{**vars(args), "adapter_path": str(work), "iters": total_iters - done,
                                        "save_every": total_iters + 1,
                                        "resume_adapter_file": str(work / RESUME_FILE) if state else None})
    prefix = [] if args.grad_checkpoint else shared_prefix([train_set, valid_set])
    # Run even with no iterations left (a run stopped after its last checkpoint): it puts the LoRA
    # layers in place and loads the checkpoint.
    loss = train_lora(run_args, model, train_set, valid_set, recorder, prefix,
                      answer_window([train_set, valid_set]))
    # The trainer's last validation ran before its last step: measure the final weights too.
    final_val = evaluate(model=model, dataset=CacheDataset(valid_set), batch_size=args.batch_size,
                         num_batches=args.val_batches, max_seq_length=args.max_seq_length, loss=loss,
                         iterate_batches=same_validation_batches)
    recorder.on_val_loss_report({"iteration": total_iters - done, "val_loss": final_val, "val_time": 0.0})
    if world.size() > 1:
        write_json(adapter_dir / f"rank{world.rank()}.json",
                   {"rank": world.rank(), "ranks": world.size(), "first_batches_sha256": seen,
                    "final_weights_sha256": weights_digest(model)})
    if not lead:
        return None
    recorder.save(work / LAST_FILE)
    row_tokens = [len(train_set.process(train_set[i])[0]) for i in range(len(train_set))]
    environment = {**environment, "ranks": world.size(), "resumed_from_iteration": done,
                   "loss": (f"mlx-lm's masked loss, the {loss.prefix_length}-token prefix all rows share computed once "
                            f"per batch, and once per run in the {loss.frozen_blocks} frozen blocks, logits only in a "
                            f"{loss.window}-token window over each answer (same value, less work)"
                            if hasattr(loss, "prefix_length") else "mlx-lm's default_loss"),
                   "mean_row_tokens": round(sum(row_tokens) / len(row_tokens), 1)}
    log = read_log(work)
    record = build_record(args, log, counts, time.perf_counter() - started, environment,
                          (work / BEST_SNAPSHOT).stat().st_size)
    record["peak_memory"] = _peak_memory_gb()
    plot_losses(log, work / PLOT_FILE, f"{adapter_dir.name}: {args.model}")
    save_config(dict(vars(args)), work / CONFIG_FILE)  # the whole run's settings, not what was left of a resumed one
    _finish(work, adapter_dir, record, world.size())
    return record


def task_scorer(args, model, tokenizer, skip: set[int]):
    """What the benchmark measures, on the valid split, for the recorder: a function scoring the current
    weights (the benchmark's prompt with the workspace map, greedy decoding, calls run for real), or None
    when the config names no `task_eval` file. Iterations in `skip` (the trainer's last validation comes
    one step before the final one) and before `task_from` (an adapter that young is never the best, and
    a scoring pass costs minutes on a CPU) are not scored."""
    task_eval = getattr(args, "task_eval", None)
    if not task_eval:
        return None
    from .benchmark import score_cases, summarize
    from .decoding import Decider, context_messages
    from .scoring import load_cases
    from .workspace import render_map, scan_roots

    cases = load_cases(Path(task_eval))
    roots = (Path(args.task_repos_root),)
    context = context_messages(render_map(scan_roots(list(roots))) if getattr(args, "task_map", True) else None)

    first = int(getattr(args, "task_from", 0) or 0)

    def scorer(iteration: int) -> dict | None:
        if iteration in skip or iteration < first:
            return None
        records, skipped = score_cases(Decider(model, tokenizer, context), cases, roots)
        summary = summarize(records, skipped)
        return {k: summary.get(k) for k in ("success", "accuracy", "grep_hit_rate", "read_valid_rate",
                                            "over_call_rate", "cases")}

    return scorer


VALIDATION_SEED = 0


def same_validation_batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
    """mlx-lm's `iterate_batches`, but validation draws the same batches every time.

    mlx-lm shuffles validation batches with the global NumPy RNG, so with `val_batches` below the
    whole set each validation scores a different subset (and moves the training order): losses
    that cannot be compared, and a "best" adapter picked by chance. Here the subset is fixed and
    the training order's RNG is left where it was.
    """
    import numpy as np
    from mlx_lm.tuner.trainer import iterate_batches

    if loop:  # training
        return iterate_batches(dataset, batch_size, max_seq_length, loop=True, seed=seed, comm_group=comm_group)
    state = np.random.get_state()
    np.random.seed(VALIDATION_SEED)
    batches = iterate_batches(dataset, batch_size, max_seq_length, comm_group=comm_group)
    try:
        first = next(batches)  # the shuffle happens here
    finally:
        np.random.set_state(state)
    return itertools.chain([first], batches)


def train_lora(args, model, train_set, valid_set, callback, prefix: list[int], window: int | None):
    """What `mlx_lm.lora.train_model` does (seed, LoRA layers, resumed weights, adapter_config.json,
    optimizer), then mlx-lm's `trainer.train` with the shared-prefix loss and fixed validation batches
    passed as its own arguments. Returns the loss, which needs the LoRA layers, so is built here."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers, print_trainable_parameters
    from mlx_lm.utils import save_config

    optimizers = {"adam": optim.Adam, "adamw": optim.AdamW, "muon": optim.Muon, "sgd": optim.SGD,
                  "adafactor": optim.Adafactor}
    name = args.optimizer.lower()
    if args.fine_tune_type not in ("lora", "dora") or name not in optimizers:
        raise TrainingInputError(f"fine_tune_type {args.fine_tune_type!r} with optimizer {args.optimizer!r}: "
                                 f"this trainer runs lora or dora with {', '.join(optimizers)}")
    if args.num_layers > len(model.layers):
        raise TrainingInputError(f"num_layers is {args.num_layers}, but the model has {len(model.layers)} layers")
    mx.random.seed(args.seed)  # the LoRA initialisation, as train_model seeds it
    model.freeze()
    linear_to_lora_layers(model, args.num_layers, args.lora_parameters, use_dora=args.fine_tune_type == "dora")
    if args.resume_adapter_file is not None:
        model.load_weights(args.resume_adapter_file, strict=False)
    print_trainable_parameters(model)
    adapter_path = Path(args.adapter_path)
    adapter_path.mkdir(parents=True, exist_ok=True)
    save_config(vars(args), adapter_path / CONFIG_FILE)
    training_args = TrainingArgs(
        batch_size=args.batch_size, iters=args.iters, val_batches=args.val_batches,
        steps_per_report=args.steps_per_report, steps_per_eval=args.steps_per_eval,
        steps_per_save=args.save_every, adapter_file=adapter_path / ADAPTER_FILE,
        max_seq_length=args.max_seq_length, grad_checkpoint=args.grad_checkpoint,
        grad_accumulation_steps=args.grad_accumulation_steps)
    rate = build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
    optimizer = optimizers[name](learning_rate=rate, **args.optimizer_config.get(name, {}))
    loss = make_shared_prefix_loss(model, prefix, window)
    train(model=model, args=training_args, optimizer=optimizer, train_dataset=CacheDataset(train_set),
          val_dataset=CacheDataset(valid_set), training_callback=callback, loss=loss,
          iterate_batches=same_validation_batches)
    return loss


def _prepare_dir(work: Path, state: dict | None) -> None:
    """Ready the work folder. A fresh run drops what a run stopped before its first checkpoint left
    there; a resumed one goes back to its checkpoint: log entries after it and any later best adapter
    are dropped. The previous run's results beside it are not touched."""
    work.mkdir(parents=True, exist_ok=True)
    if state is None:
        for name in (LOG_FILE, BEST_SNAPSHOT, LOSS_SNAPSHOT, RESUME_FILE, RESUME_BEST, RESUME_LOSS_BEST):
            (work / name).unlink(missing_ok=True)
    else:
        kept = [e for e in read_log(work) if e["iteration"] <= state["iteration"]]
        with atomic_write(work / LOG_FILE) as f:
            f.writelines(json.dumps(e) + "\n" for e in kept)
        for kept_file, snapshot in ((RESUME_BEST, BEST_SNAPSHOT), (RESUME_LOSS_BEST, LOSS_SNAPSHOT)):
            if (work / kept_file).exists():
                shutil.copyfile(work / kept_file, work / snapshot)


# A finished run's files in the work folder, and their names in the adapter folder.
RESULTS = {BEST_SNAPSHOT: ADAPTER_FILE, LOSS_SNAPSHOT: LOSS_BEST_FILE, LAST_FILE: LAST_FILE, CONFIG_FILE: CONFIG_FILE,
           LOG_FILE: LOG_FILE, PLOT_FILE: PLOT_FILE}


def _finish(work: Path, adapter_dir: Path, record: dict, ranks: int) -> None:
    """Put a finished run's files in place of the previous run's, one rename each, the record last
    (make waits for it); then drop what no longer belongs: other ranks' files, the work folder."""
    (work / RESUME_STATE).unlink(missing_ok=True)  # a finished run is not resumed
    for name, final in RESULTS.items():
        os.replace(work / name, adapter_dir / final)
    write_json(adapter_dir / RECORD_FILE, record)
    ours = {f"rank{rank}.json" for rank in range(ranks)} if ranks > 1 else set()
    for path in adapter_dir.glob("rank*.json"):
        if path.name not in ours:
            path.unlink()
    shutil.rmtree(work)


def first_batches_digest(train_set, args, world, count: int = 3) -> str:
    """Digest of the first batches this rank will train on (replayed without moving the RNG)."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import iterate_batches

    state = np.random.get_state()
    batches = iterate_batches(CacheDataset(train_set), args.batch_size, args.max_seq_length, loop=True,
                              comm_group=world)
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(np.array(next(batches)[0]).tobytes())
    np.random.set_state(state)
    return digest.hexdigest()[:16]


def weights_digest(model) -> str:
    """Digest of the trainable (adapter) weights, to compare ranks."""
    import numpy as np
    from mlx.utils import tree_flatten

    digest = hashlib.sha256()
    for name, value in sorted(tree_flatten(model.trainable_parameters()), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(np.array(value).tobytes())
    return digest.hexdigest()[:16]


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


REEXEC_MARK = "TOOLTRAIN_BLAS_CHECKED"


def reexec_with_optimized_blas() -> None:
    """On Linux, run this same command again, once, with an optimized BLAS preloaded when one is usable."""
    if os.environ.get(REEXEC_MARK) or platform.system() != "Linux":
        return
    from .blas import optimized_env

    plan = optimized_env()
    print(f"blas: {plan.reason}", file=sys.stderr, flush=True)  # a note, not output: stdout stays clean for --json
    env = {**os.environ, **plan.vars, REEXEC_MARK: "1"}
    if plan.optimized:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    os.environ[REEXEC_MARK] = "1"


def environment_report(base_note: str) -> dict:
    """Device, BLAS and base-model path of this process, for the training record."""
    import mlx.core as mx

    from .blas import detect

    info = detect()
    return {"device": str(mx.default_device()), "blas": info.blas, "blas_detail": asdict(info),
            "base_path": base_note, "platform": platform.platform()}


def _on_rank0_first(make):
    """Run `make` on rank 0, then on the other ranks (which then find its result ready)."""
    import mlx.core as mx

    world = mx.distributed.init()
    result = make() if world.rank() == 0 else None
    if world.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1.0)))  # barrier
        result = result or make()
    return result


def train_phase(config_path: Path, **overrides) -> dict | None:
    """The whole of `scripts/train_adapter.py`: config, CPU base, train, record."""
    from .modelprep import check_folder, is_local, training_base

    reexec_with_optimized_blas()
    args = load_config(config_path, **overrides)
    if is_local(args.model):
        check_folder(Path(args.model))  # a missing or broken folder is a clear ModelError
    args.base_model = str(args.model)
    args.model, note = _on_rank0_first(lambda: training_base(args.model))
    print(f"training base: {args.model} ({note})", flush=True)
    return run_training(args, {"base_model": args.base_model, **environment_report(note)})
