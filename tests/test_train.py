"""Training through mlx-lm's trainer: real runs of a few iterations, resume, fusing, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training_runs import ROOT, make_run, rows, train
from tooltrain.io import write_jsonl
from tooltrain.tools import TOOLS
from tooltrain.train import RECORD_FILE, WORK_DIR, TrainingInputError, check_data, load_config


@pytest.mark.slow
def test_real_training_lowers_validation_loss_and_keeps_the_best(trained):
    record = json.loads((trained / RECORD_FILE).read_text())
    assert record["val_loss_last"] < record["val_loss_first"]
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    vals = [e for e in log if e["kind"] == "val"]
    assert [e["iteration"] for e in vals] == [0, 1, 3, 5, 6]
    best = min(vals, key=lambda e: e["val_loss"])
    assert record["best_iteration"] == best["iteration"]
    assert (trained / "adapters.safetensors").stat().st_size == record["adapter_size_bytes"] > 0
    assert (trained / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["blas"] in ("openblas", "accelerate", "reference", "mkl", "blis", "unknown")
    assert record["peak_memory"]["mlx_peak_gb"] > 0


@pytest.mark.slow
def test_the_kept_adapter_loads_in_mlx_lm(trained, float32_base):
    from mlx_lm import load

    model, tokenizer = load(str(float32_base), adapter_path=str(trained))
    assert tokenizer.encode("hello")


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(float32_base, tmp_path):
    config = make_run(tmp_path, float32_base, iters=8, save_every=2)
    state = tmp_path / "adapters" / WORK_DIR / "resume.json"
    proc = subprocess.Popen([sys.executable, "-m", "scripts.train_adapter", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())["iteration"]
    assert 2 <= saved < 8 and not (tmp_path / "adapters" / RECORD_FILE).exists()
    done = train(config)
    assert done.returncode == 0, done.stderr
    assert f"resuming {tmp_path / 'adapters'} from iteration {saved} of 8" in done.stdout
    log = [json.loads(line) for line in (tmp_path / "adapters" / "train_log.jsonl").read_text().splitlines()]
    steps = [e["iteration"] for e in log if e["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # back to the checkpoint, no step logged twice
    assert not (tmp_path / "adapters" / WORK_DIR).exists()  # checkpoints and all: a finished run is not resumed


@pytest.mark.slow
def test_fuse_and_quantize_to_8_bits(trained, tmp_path):
    import mlx.nn as nn
    from mlx_lm import generate, load

    from tooltrain.benchmark import ModelSpec, load_model
    from tooltrain.fuse import fuse_and_quantize
    from tooltrain.modelprep import has_accelerator

    out = fuse_and_quantize(trained, tmp_path / "fused-8bit")
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

    from tooltrain.prefix_loss import answer_window, make_shared_prefix_loss, shared_prefix

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

    from tooltrain.train import same_validation_batches

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
