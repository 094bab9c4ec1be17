"""LoRA training through mlx-lm's own trainer, with a record of what happened.

With the config read as `mlx_lm.lora` reads it (tooltrain.train.config), we
set the model up as `mlx_lm.lora.train_model` does (LoRA layers, resumed weights,
optimizer) and call mlx-lm's own `trainer.train` with a callback that logs every loss
report, keeps the best adapters and lets an interrupted run resume from its last
checkpoint. `train` takes the shared-prefix loss (same value, less work) and validation
batches that are the same at every validation (comparable losses) as its own arguments:
nothing inside mlx-lm is patched. At the end `adapters.safetensors` holds the kept
weights (best task success when the config names task cases, else best validation loss;
the last ones stay in `last_adapters.safetensors`),
and `training_record.json` and `loss_curves.png` sit beside them (tooltrain.train.record).

A run works in `unfinished/` inside the adapter folder (log, checkpoints, best adapters so
far); only a finished run moves its files over the previous run's, the record last. A run
that fails or is stopped leaves the previous results as they were.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import sys
import time
import types
from pathlib import Path

from ..blas import environment_report, reexec_with_optimized_blas
from ..io import atomic_write, write_json
from ..model_folders import ADAPTER_FILE, check_folder, is_local, load_checked, training_base
from .config import TrainingInputError, check_data, load_config
from .digests import first_batches_digest, weights_digest
from .prefix_loss import answer_window, make_shared_prefix_loss, shared_prefix
from .record import (BEST_SNAPSHOT, CHECKPOINT_GLOB, CHECKPOINT_SNAPSHOTS, CONFIG_FILE, LAST_FILE, LOG_FILE,
                     LOSS_BEST_FILE, LOSS_SNAPSHOT, PLOT_FILE, RECORD_FILE, RESUME_STATE, WORK_DIR, Recorder,
                     build_record, plot_losses, read_log, resume_state)


def _peak_memory_gb() -> dict:
    import mlx.core as mx

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    rss_gb = rss_kb / 1e9 if sys.platform == "darwin" else rss_kb / 1e6
    return {"mlx_peak_gb": round(mx.get_peak_memory() / 1e9, 3), "process_peak_rss_gb": round(rss_gb, 3)}


def run_training(args: types.SimpleNamespace, environment: dict, task_scorer) -> dict | None:
    """Train (or resume) one adapter as `args` says; returns and writes the training record.

    `task_scorer(args, model, tokenizer, skip)` gives the recorder its measure of the current weights, or None
    (tooltrain.eval.checkpoints.task_scorer: the benchmark's, when the config names a `task_eval` file).

    In a distributed run (`mlx.launch`) every rank trains on its share of each batch and
    validates collectively; rank 0 writes, and returns the record (the others return None).
    """
    import mlx.core as mx
    import numpy as np
    from mlx_lm.lora import load_dataset
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import evaluate
    from mlx_lm.utils import save_config

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
                                        "resume_adapter_file": str(work / state["files"]["weights"]) if state else None})
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
                            f"{loss.window}-token window over each answer"
                            + (", every exponential as a power of two" if loss.powers_of_two else "")
                            + " (same value, less work)"
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
        for path in [work / LOG_FILE, work / BEST_SNAPSHOT, work / LOSS_SNAPSHOT, *work.glob(CHECKPOINT_GLOB)]:
            path.unlink(missing_ok=True)
    else:
        kept = [e for e in read_log(work) if e["iteration"] <= state["iteration"]]
        with atomic_write(work / LOG_FILE) as f:
            f.writelines(json.dumps(e) + "\n" for e in kept)
        for role, snapshot in CHECKPOINT_SNAPSHOTS.items():
            if role in state["files"]:
                shutil.copyfile(work / state["files"][role], work / snapshot)


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


def _on_rank0_first(make):
    """Run `make` on rank 0, then on the other ranks (which then find its result ready)."""
    import mlx.core as mx

    world = mx.distributed.init()
    result = make() if world.rank() == 0 else None
    if world.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1.0)))  # barrier
        result = result or make()
    return result


def train_phase(config_path: Path, task_scorer, **overrides) -> dict | None:
    """The whole of `scripts/train_adapter.py`: config, CPU base, train (adapters kept by `task_scorer`, see
    run_training), record."""
    reexec_with_optimized_blas()
    args = load_config(config_path, **overrides)
    if is_local(args.model):
        check_folder(Path(args.model))  # a missing or broken folder is a clear ModelError
    args.base_model = str(args.model)
    args.model, note = _on_rank0_first(lambda: training_base(args.model))
    print(f"training base: {args.model} ({note})", flush=True)
    return run_training(args, {"base_model": args.base_model, **environment_report(note)}, task_scorer)
