"""Training through mlx-lm's trainer: real runs of a few iterations, resume, fusing, bad input."""

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training_runs import ROOT, make_run, rows, stop_at_first_checkpoint, train, user_env, validation_loss
from tooltrain.io import write_jsonl
from tooltrain.tools import TOOLS
from tooltrain.model_folders import ADAPTER_FILE
from tooltrain.train.config import TrainingInputError, check_data, load_config
from tooltrain.train.record import (BEST_SNAPSHOT, CONFIG_FILE, LAST_FILE, LOSS_BEST_FILE, PLOT_FILE, RECORD_FILE,
                                    RESUME_STATE, WORK_DIR, Recorder, read_log, resume_state)
from tooltrain.train.run import _finish, _prepare_dir


@pytest.mark.slow
def test_real_training_lowers_validation_loss_and_keeps_the_best(trained):
    record = json.loads((trained / RECORD_FILE).read_text())
    assert record["val_loss_last"] < record["val_loss_first"]
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    vals = [e for e in log if e["kind"] == "val"]
    assert [e["iteration"] for e in vals] == [0, 1, 3, 5, 6]
    assert record["best_iteration"] == min(vals, key=lambda e: e["val_loss"])["iteration"]
    assert record["selected_by"] == "validation loss"  # no task_eval in this config
    assert (trained / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["peak_memory"]["mlx_peak_gb"] > 0


@pytest.mark.slow
def test_the_run_reexecuted_itself_on_the_optimized_blas_it_found(trained):
    """train_adapter reruns itself with OpenBLAS preloaded when this machine has a usable one: the record
    names the BLAS the training process really had mapped (stock mlx on Linux brings the reference BLAS)."""
    from tooltrain.blas import optimized_env

    record = json.loads((trained / RECORD_FILE).read_text())
    plan = optimized_env()
    if platform.system() == "Linux" and plan.optimized:
        assert record["blas"] == "openblas", record["blas_detail"]
        assert record["blas_detail"]["env"]["LD_PRELOAD"] == plan.vars["LD_PRELOAD"]
    elif platform.system() == "Linux":
        assert record["blas"] != "openblas" and "LD_PRELOAD" not in record["blas_detail"]["env"]


@pytest.mark.slow
def test_each_kept_adapter_file_holds_its_iterations_weights(trained, float32_base):
    """mlx-lm loads each file and measures the validation loss the log gave for that file's iteration:
    adapters.safetensors (what `mlx_lm.load` finds in the folder) is the best iteration's weights,
    last_adapters.safetensors the final ones, and both differ from the untrained adapter."""
    record = json.loads((trained / RECORD_FILE).read_text())
    # the last validation of an iteration wins
    loss_at = {e["iteration"]: e["val_loss"] for e in read_log(trained) if e["kind"] == "val"}
    data = trained.parent / "data"
    kept = validation_loss(float32_base, trained, data)
    last = validation_loss(float32_base, trained / LAST_FILE, data)
    assert kept == pytest.approx(loss_at[record["best_iteration"]], rel=2e-3)
    assert last == pytest.approx(loss_at[max(loss_at)], rel=2e-3)
    assert kept < loss_at[0] * 0.95 and record["adapter_size_bytes"] == (trained / "adapters.safetensors").stat().st_size


def _tiny_model():
    """A real (tiny) MLX module standing for a model whose trainable weights are an adapter's."""
    import mlx.nn as nn

    return nn.Linear(2, 2)


def _set_weights(model, value: float) -> None:
    """Every weight of `model` set to `value`, so a saved file tells which moment it was saved at."""
    import mlx.core as mx

    model.update({"weight": mx.full((2, 2), float(value)), "bias": mx.full((2,), float(value))})


def _weights_in(path: Path) -> float:
    import mlx.core as mx

    return mx.load(str(path))["weight"][0, 0].item()


@pytest.mark.parametrize("task, kept_iteration", [
    (None, 2),  # no task cases: the lowest validation loss
    ({2: 0.50, 4: 0.75, 6: 0.75}, 4),  # task success first, then the lower validation loss
])
def test_the_published_adapter_is_the_selected_iteration_not_the_last(tmp_path, task, kept_iteration):
    adapters = tmp_path / "adapters"
    work = adapters / WORK_DIR
    work.mkdir(parents=True)
    model = _tiny_model()
    scorer = None if task is None else (lambda iteration: {"success": task[iteration]})
    recorder = Recorder(model, work, save_every=100, scorer=scorer)
    for iteration, loss in ((0, 3.0), (2, 1.0), (4, 2.0), (6, 2.5)):
        _set_weights(model, iteration)
        recorder.on_val_loss_report({"iteration": iteration, "val_loss": loss, "val_time": 0.0})
    recorder.save(work / LAST_FILE)
    for name in (CONFIG_FILE, PLOT_FILE):
        (work / name).write_text("x")
    _finish(work, adapters, {"done": True}, ranks=1)
    assert _weights_in(adapters / ADAPTER_FILE) == kept_iteration
    assert _weights_in(adapters / LOSS_BEST_FILE) == 2
    assert _weights_in(adapters / LAST_FILE) == 6
    assert not work.exists() and json.loads((adapters / RECORD_FILE).read_text()) == {"done": True}


def test_a_resumed_run_goes_back_to_its_checkpoint_with_the_best_adapters_and_scores_it_had(tmp_path):
    work = tmp_path / WORK_DIR
    work.mkdir()
    model = _tiny_model()
    first = Recorder(model, work, save_every=2)
    for iteration, loss in ((0, 3.0), (1, 1.0)):
        _set_weights(model, iteration)
        first.on_val_loss_report({"iteration": iteration, "val_loss": loss, "val_time": 0.0})
    _set_weights(model, 2)
    first.on_train_loss_report({"iteration": 2, "train_loss": 1.0})  # the checkpoint
    _set_weights(model, 3)
    first.on_val_loss_report({"iteration": 3, "val_loss": 0.5, "val_time": 0.0})  # a best after it, then a crash
    assert _weights_in(work / BEST_SNAPSHOT) == 3

    state = resume_state(work)
    assert state["iteration"] == 2 and _weights_in(work / state["files"]["weights"]) == 2
    _prepare_dir(work, state)
    assert _weights_in(work / BEST_SNAPSHOT) == 1  # the best as of the checkpoint, not the lost one after it
    assert [e["iteration"] for e in read_log(work)] == [0, 1, 2]
    again = Recorder(model, work, save_every=2, offset=2, state=state)
    _set_weights(model, 30)
    again.on_val_loss_report({"iteration": 1, "val_loss": 1.5, "val_time": 0.0})  # worse than the kept 1.0
    assert _weights_in(work / BEST_SNAPSHOT) == 1
    _set_weights(model, 40)
    again.on_val_loss_report({"iteration": 2, "val_loss": 0.9, "val_time": 0.0})
    assert _weights_in(work / BEST_SNAPSHOT) == 40


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path, monkeypatch):
    """The state file is written after the new checkpoint's weights and names them: a run stopped between
    the two resumes from the older checkpoint whole, its weights and its iteration together."""
    from tooltrain.train import record

    work = tmp_path / WORK_DIR
    work.mkdir()
    model = _tiny_model()
    recorder = Recorder(model, work, save_every=2)
    _set_weights(model, 1)
    recorder.on_val_loss_report({"iteration": 1, "val_loss": 1.0, "val_time": 0.0})
    _set_weights(model, 2)
    recorder.on_train_loss_report({"iteration": 2, "train_loss": 1.0})
    _set_weights(model, 4)

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(record, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        recorder.on_train_loss_report({"iteration": 4, "train_loss": 0.5})
    state = resume_state(work)
    assert state["iteration"] == 2 and _weights_in(work / state["files"]["weights"]) == 2
    assert _weights_in(work / state["files"]["best"]) == 1
    monkeypatch.undo()
    recorder.on_train_loss_report({"iteration": 4, "train_loss": 0.5})  # the next checkpoint replaces it whole
    state = resume_state(work)
    assert state["iteration"] == 4 and _weights_in(work / state["files"]["weights"]) == 4
    assert sorted(p.name for p in work.glob("resume_*")) == sorted(state["files"].values())
    (work / state["files"]["weights"]).unlink()
    assert resume_state(work) is None and (work / RESUME_STATE).exists()  # a state without its weights is no checkpoint


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(float32_base, tmp_path):
    config = make_run(tmp_path, float32_base, iters=8, save_every=2)
    work = tmp_path / "adapters" / WORK_DIR
    saved = stop_at_first_checkpoint(config, user_env(), timeout=300)
    assert 2 <= saved < 8 and not (tmp_path / "adapters" / RECORD_FILE).exists()
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    shutil.copyfile(work / resume_state(work)["files"]["weights"], checkpoint / ADAPTER_FILE)
    shutil.copyfile(work / CONFIG_FILE, checkpoint / CONFIG_FILE)
    done = train(config)
    assert done.returncode == 0, done.stderr
    assert f"resuming {tmp_path / 'adapters'} from iteration {saved} of 8" in done.stdout
    log = [json.loads(line) for line in (tmp_path / "adapters" / "train_log.jsonl").read_text().splitlines()]
    steps = [e["iteration"] for e in log if e["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # back to the checkpoint, no step logged twice
    # The resumed run validates first thing: on the checkpoint's weights, not on a fresh adapter.
    vals = [e for e in log if e["kind"] == "val"]
    at_resume = [e["val_loss"] for e in vals if e["iteration"] == saved][0]
    assert at_resume == pytest.approx(validation_loss(float32_base, checkpoint, tmp_path / "data"), rel=2e-3)
    assert at_resume < vals[0]["val_loss"] * 0.95
    assert not (tmp_path / "adapters" / WORK_DIR).exists()  # checkpoints and all: a finished run is not resumed


@pytest.mark.slow
def test_fuse_phase5_writes_an_8_bit_model_that_says_where_it_came_from(trained, tmp_path):
    import mlx.nn as nn
    from mlx_lm import generate, load

    from tooltrain.eval.benchmark import ModelSpec, load_model
    from tooltrain.model_folders import has_accelerator

    out = tmp_path / "fused-8bit"
    done = subprocess.run([sys.executable, "-m", "scripts.fuse_phase5", "--adapter-path", str(trained),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "8-bit" in done.stdout
    record = json.loads((trained / RECORD_FILE).read_text())
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["adapter"] == str(trained) and provenance["trained_on"] == record["model"]
    assert provenance["source"] == record["base_model"] and provenance["bits"] == 8
    assert provenance["adapter_best_iteration"] == record["best_iteration"]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["bits"] == 8
    model, tokenizer = load(str(out))
    prompt = tokenizer.apply_chat_template(rows(1)[0]["messages"][:2], tools=TOOLS, add_generation_prompt=True)
    quantized_text = generate(model, tokenizer, prompt=prompt, max_tokens=12)
    # the benchmark runs it dequantized on a CPU (BLAS matmuls): same weights, same greedy text
    dequantized, _, note = load_model(ModelSpec("fused", str(out), float32_on_cpu=False))
    if has_accelerator():  # Metal/CUDA compute quantized matmuls fast: kept as they are
        return
    assert "dequantized to float32" in note
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in dequantized.named_modules())
    assert generate(dequantized, tokenizer, prompt=prompt, max_tokens=12) == quantized_text


def test_bad_training_input_is_named(tmp_path):
    with pytest.raises(TrainingInputError, match="train.jsonl is missing"):
        check_data(tmp_path, 2)
    write_jsonl(tmp_path / "train.jsonl", rows(1))
    write_jsonl(tmp_path / "valid.jsonl", rows(4))
    with pytest.raises(TrainingInputError, match="has 1 rows, fewer than batch_size=2"):
        check_data(tmp_path, 2)
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n{"text": "x"}\n')
    with pytest.raises(TrainingInputError, match="row 2 has no 'messages'"):
        check_data(tmp_path, 1)


@pytest.mark.parametrize("override, message", [
    ({"iters": -3}, "iters must be a positive whole number, not -3"),
    ({"batch_size": 0}, "batch_size must be a positive whole number, not 0"),
    ({"learning_rate": -1e-4}, "learning_rate must be a number between 0 and 1, not -0.0001"),
])
def test_training_settings_that_make_no_sense_are_refused(override, message, tmp_path):
    config = make_run(tmp_path, tmp_path / "no-such-model", iters=2, save_every=2)
    with pytest.raises(TrainingInputError, match=message):
        load_config(config, **override)


def test_missing_model_is_a_clear_error(tmp_path):
    config = make_run(tmp_path, tmp_path / "no-such-model", iters=2, save_every=2)
    done = train(config)
    assert done.returncode == 1
    assert "no-such-model" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_two_ranks_on_loopback_train_one_adapter(float32_base, tmp_path):
    """mlx.launch runs two local processes (ring backend): different batches, identical final adapters."""
    config = make_run(tmp_path, float32_base, iters=3, save_every=3)
    launcher = Path(sys.executable).parent / "mlx.launch"
    done = subprocess.run([str(launcher), "-n", "2", "--backend", "ring", "--cwd", str(ROOT),
                           "--env", "OPENBLAS_NUM_THREADS=1", "--", sys.executable, "-m", "scripts.train_adapter",
                           "-c", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    adapters = tmp_path / "adapters"
    ranks = [json.loads((adapters / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["ranks"] for r in ranks] == [2, 2]
    assert ranks[0]["first_batches_sha256"] != ranks[1]["first_batches_sha256"]
    assert ranks[0]["final_weights_sha256"] == ranks[1]["final_weights_sha256"]
    record = json.loads((adapters / RECORD_FILE).read_text())
    assert record["ranks"] == 2 and (adapters / "adapters.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("windowed", [False, True])
def test_shared_prefix_loss_equals_mlx_lm_default_loss(float32_base, tmp_path, windowed):
    """Same value, token count and gradients as mlx-lm's default_loss on real rows, frozen blocks included,
    with logits over every position after the prefix or only in each row's answer window."""
    import types

    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm import load
    from mlx_lm.lora import CONFIG_DEFAULTS, load_dataset
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import default_loss, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from tooltrain.train.prefix_loss import answer_window, make_shared_prefix_loss, shared_prefix

    make_run(tmp_path, float32_base, iters=1, save_every=1)
    model, tokenizer = load(str(float32_base))
    args = types.SimpleNamespace(**{**CONFIG_DEFAULTS, "data": str(tmp_path / "data"), "mask_prompt": True,
                                    "train": True})
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    prefix = shared_prefix([train_set, valid_set])
    system_and_tools = tokenizer.apply_chat_template(rows(1)[0]["messages"][:1], tools=TOOLS)
    assert prefix[: len(system_and_tools)] == system_and_tools and len(prefix) > len(system_and_tools)
    model.freeze()
    linear_to_lora_layers(model, 4, {"rank": 8, "dropout": 0.0, "scale": 20.0})
    mx.random.seed(0)  # LoRA's B starts at zero: move it so every adapted block has a gradient
    model.update(tree_map(lambda w: w + 0.01 * mx.random.normal(w.shape), model.trainable_parameters()))
    window = answer_window([train_set, valid_set]) if windowed else None
    loss = make_shared_prefix_loss(model, prefix, window)
    assert loss.frozen_blocks == len(model.layers) - 4 and loss.prefix_length == len(prefix)
    batch, lengths = next(iterate_batches(CacheDataset(train_set), 2, 1024))
    if windowed:  # the window is narrower than the rows (so it is exercised) and covers every answer
        assert window < batch.shape[1] - len(prefix) - 1
        assert window >= int((lengths[:, 1] - lengths[:, 0]).max().item()) + 1
    (expected, expected_tokens), expected_grad = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    (got, got_tokens), got_grad = nn.value_and_grad(model, loss)(model, batch, lengths)
    assert got_tokens.item() == expected_tokens.item()
    assert abs(got.item() - expected.item()) < 1e-5 * max(1.0, abs(expected.item()))
    expected_grad, got_grad = dict(tree_flatten(expected_grad)), dict(tree_flatten(got_grad))
    assert got_grad.keys() == expected_grad.keys() and len(got_grad) == 4 * 7 * 2
    for name, g in expected_grad.items():
        scale = mx.abs(g).max().item()
        assert scale > 0 and mx.abs(got_grad[name] - g).max().item() < 1e-4 * scale, name


def test_validation_draws_the_same_batches_and_leaves_the_training_rng_alone():
    import numpy as np

    from tooltrain.train.run import same_validation_batches

    rows = [(list(range(1, 3 + i)), 0) for i in range(20)]  # (tokens, prompt offset), lengths 2..21
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    draws = [[np.array(b).tolist() for b, _ in same_validation_batches(rows, 2, 64)][:4] for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    assert (np.random.get_state()[1] == before).all()
    np.random.seed(1)
    shuffled = [np.array(b).tolist() for b, _ in same_validation_batches(rows, 2, 64, loop=False)]
    assert len(shuffled) == 10 and shuffled[:4] == draws[0]


@pytest.mark.slow
def test_training_speed_benchmark_compares_paths_on_the_same_batches(float32_base, tmp_path):
    """Two paths in their own processes give the same step losses (same batches, same loss value),
    and the profile times the step and the matmuls inside it."""
    make_run(tmp_path, float32_base, iters=1, save_every=1)
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench_training", "--model", str(float32_base), "--data",
         str(tmp_path / "data"), "--steps", "2", "--num-layers", "2", "--rank", "4", "--paths", "blas", "project",
         "--profile"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("project vs blas (the shared-prefix loss alone): ") for line in lines)
    gap = next(line for line in lines if line.startswith("largest step-loss difference, project vs blas: "))
    assert float(gap.rsplit(" ", 1)[1]) < 1e-3, done.stdout
    step = float(next(line for line in lines if line.startswith("a project-path step: ")).split(": ")[1].split()[0])
    matmuls = next(line for line in lines if "matmuls, timed alone" in line)
    assert 0 < float(matmuls.split(": ")[1].split()[0]) < step, done.stdout
    assert "profile failed" not in done.stdout
