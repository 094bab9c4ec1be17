"""Failed runs never destroy what was there: training that cannot load its model, a broken cached
float32 copy, a benchmark with no eval case or no model. Each builds its hostile input in tmp_path
beside the files of an earlier good run and checks them byte for byte afterwards.

The tiny model is a real mlx-lm llama folder (4-bit, like the embedded model) with 2 blocks of
width 64 and the embedded model's tokenizer: it converts in about a second.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training_runs import ROOT, make_run, stop_at_first_checkpoint, train
from tooltrain import model_folders, paths
from tooltrain.io import write_jsonl
from tooltrain.blas import REEXEC_MARK
from tooltrain.train.record import WORK_DIR

# The optimized-BLAS check reruns each script once; it is not what these tests are about.
QUICK = {**os.environ, REEXEC_MARK: "1"}
EMPTY_SAFETENSORS = struct.pack("<Q", 2) + b"{}"  # a valid weights file holding no tensor
DIRECT = {"id": "d1", "question": "What is a Python decorator?", "repo": None, "expected": "direct", "check": {}}
GREP = {"id": "g1", "question": "Where is the Flask class defined?", "repo": "flask", "expected": "grep",
        "check": {"must_find": "class Flask(", "in_file": "flask/src/flask/app.py"}}


def files(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes (folders as None) under `folder`, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def earlier_run(adapters: Path) -> dict[str, bytes | None]:
    """The files a finished training run leaves (made up, as bytes only need to survive), and a stale rank file."""
    adapters.mkdir(parents=True, exist_ok=True)
    for name in ("training_record.json", "train_log.jsonl", "adapters.safetensors", "last_adapters.safetensors",
                 "loss_best_adapters.safetensors", "adapter_config.json", "loss_curves.png", "rank1.json"):
        (adapters / name).write_bytes(f"earlier {name}\n".encode())
    return files(adapters)


def tiny_model(folder: Path, real: Path, seed: int = 0) -> Path:
    """A real 4-bit llama folder, small enough to convert in a second, with the tokenizer (and the
    config, shrunk) of the embedded model in `real`."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    config = {**json.loads((real / "config.json").read_text()), "hidden_size": 64, "num_hidden_layers": 2,
              "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
              "quantization": {"group_size": 32, "bits": 4}}
    config.pop("quantization_config", None)
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    nn.quantize(model, group_size=32, bits=4)
    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for name in model_folders.TOKENIZER_FILES:
        shutil.copyfile(real / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def embedded(request) -> Path:
    """The embedded model's folder: the project's when `make model` has built it, else the session's own
    conversion (a clean clone's `make test`), so these tests never skip for want of it."""
    built = paths.DEFAULT_MODEL_DIR
    return built if (built / "tokenizer.json").exists() else request.getfixturevalue("converted")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedded):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny", embedded)


# ---------------------------------------------------------------- the cached float32 copy


def truncate_weights(copy: Path) -> None:
    os.truncate(copy / "model.safetensors", (copy / "model.safetensors").stat().st_size // 2)


def drop_config(copy: Path) -> None:
    (copy / "config.json").unlink()


def unstamped(copy: Path) -> None:
    """A copy made before copies were stamped with their source's digest (and so never checked against it)."""
    provenance = json.loads((copy / model_folders.PROVENANCE).read_text())
    del provenance["source_stamp"]
    (copy / model_folders.PROVENANCE).write_text(json.dumps(provenance))


def test_a_broken_float32_copy_is_rebuilt_before_it_is_used(tiny, tmp_path, capsys):
    source = shutil.copytree(tiny, tmp_path / "tiny")
    copy = model_folders.float32_copy(source)
    good = files(copy)
    written = (copy / "model.safetensors").stat().st_mtime_ns
    assert model_folders.float32_copy(source) == copy  # an intact copy is used as it is
    assert (copy / "model.safetensors").stat().st_mtime_ns == written and "rebuilding" not in capsys.readouterr().out
    for damage, reason in [(truncate_weights, f"truncated weights file {copy}/model.safetensors: "),
                           (drop_config, f"model folder {copy} has no config.json"),
                           (unstamped, "its provenance.json does not match (source_stamp)")]:
        damage(copy)
        assert model_folders.float32_copy(source) == copy
        assert f"note: rebuilding {copy}: {reason}" in capsys.readouterr().out
        assert files(copy) == good


def test_a_float32_copy_of_other_weights_is_rebuilt(tiny, embedded, tmp_path, capsys):
    source = shutil.copytree(tiny, tmp_path / "tiny")
    copy = model_folders.float32_copy(source)
    old = (copy / "model.safetensors").read_bytes()
    tiny_model(source, embedded, seed=1)  # the base was made again since: same names, other weights
    assert model_folders.float32_copy(source) == copy
    assert f"note: rebuilding {copy}: its provenance.json does not match (source_stamp)" in capsys.readouterr().out
    assert (copy / "model.safetensors").read_bytes() != old
    assert json.loads((copy / model_folders.PROVENANCE).read_text())["source_stamp"] == model_folders.source_stamp(source)


# ---------------------------------------------------------------- training


def no_config(model: Path) -> None:
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(EMPTY_SAFETENSORS)


def unknown_type(model: Path) -> None:
    """Passes every check made without loading it; only mlx-lm's load finds the problem."""
    no_config(model)
    (model / "config.json").write_text('{"model_type": "no_such_arch"}')


@pytest.mark.parametrize("broken, message, stopped_run", [
    (no_config, "error: model folder {model} has no config.json", False),
    (unknown_type, "error: cannot load model {model}: ValueError: Model type no_such_arch not supported.", False),
    (unknown_type, "error: cannot load model {model}: ValueError: Model type no_such_arch not supported.", True),
])
def test_training_that_cannot_load_its_model_leaves_the_earlier_run_as_it_was(tmp_path, broken, message,
                                                                              stopped_run):
    model = tmp_path / "model"
    model.mkdir()
    broken(model)
    config = make_run(tmp_path, model, iters=2, save_every=2)
    adapters = tmp_path / "adapters"
    earlier_run(adapters)
    if stopped_run:  # a later run stopped at its checkpoint: restarting it must not lose that either
        (adapters / WORK_DIR).mkdir()
        (adapters / WORK_DIR / "resume.json").write_text('{"iteration": 2, "best_val_loss": 1.5, "best_key": null, '
                                                         '"files": {"weights": "resume_000002_adapters.safetensors"}}')
        (adapters / WORK_DIR / "resume_000002_adapters.safetensors").write_bytes(EMPTY_SAFETENSORS)
        write_jsonl(adapters / WORK_DIR / "train_log.jsonl", [{"kind": "val", "iteration": 2, "val_loss": 1.5},
                                                             {"kind": "val", "iteration": 3, "val_loss": 1.4}])
    before = files(adapters)
    done = train(config, env=QUICK)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message.format(model=model) in done.stderr and "Traceback" not in done.stderr
    assert files(adapters) == before


@pytest.mark.slow
def test_training_rebuilds_a_broken_float32_copy_and_replaces_the_earlier_run_only_at_the_end(tiny, tmp_path):
    source = shutil.copytree(tiny, tmp_path / "tiny")
    copy = model_folders.float32_copy(source)
    truncate_weights(copy)
    adapters = tmp_path / "adapters"
    before = earlier_run(adapters)
    done = train(make_run(tmp_path, source, iters=2, save_every=2), env=QUICK, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"note: rebuilding {copy}: truncated weights file {copy / 'model.safetensors'}" in done.stdout
    after = files(adapters)
    assert sorted(after) == sorted(set(before) - {"rank1.json"})  # every result replaced, the stale rank file gone
    assert all(after[name] != before[name] for name in after)
    record = json.loads(after["training_record.json"])
    assert record["model"] == str(copy) and record["adapter_size_bytes"] == len(after["adapters.safetensors"])
    assert json.loads(after["adapter_config.json"])["adapter_path"] == str(adapters)


@pytest.mark.slow
def test_a_stopped_run_keeps_the_earlier_run_and_resumes(tiny, tmp_path):
    config = make_run(tmp_path, shutil.copytree(tiny, tmp_path / "tiny"), iters=8, save_every=2)
    adapters = tmp_path / "adapters"
    before = earlier_run(adapters)
    saved = stop_at_first_checkpoint(config, QUICK, timeout=600)
    assert 2 <= saved < 8
    assert {k: v for k, v in files(adapters).items() if not k.startswith(WORK_DIR)} == before
    done = train(config, env=QUICK, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming {adapters} from iteration {saved} of 8" in done.stdout
    log = [json.loads(line) for line in (adapters / "train_log.jsonl").read_text().splitlines()]
    steps = [e["iteration"] for e in log if e["kind"] == "train"]
    assert steps == list(range(1, 9))  # back to the checkpoint, no step logged twice
    assert not (adapters / WORK_DIR).exists()
    assert json.loads((adapters / "training_record.json").read_text())["iters"] == 8


# ---------------------------------------------------------------- the benchmark


def benchmark(tmp_path: Path, evals: list[str], models: list[str]) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    return subprocess.run(
        [sys.executable, "benchmark_phase5_vs_base.py", "--eval", *evals, "--repos-root", str(tmp_path / "repos"),
         "--models", *models, "--predictions-dir", str(out / "pred"), "--log", str(out / "b.log"),
         "--json", str(out / "b.json"), "--chart", str(out / "b.png"), "--plain-questions", "0", "--no-guided"],
        cwd=ROOT, capture_output=True, text=True, env=QUICK, timeout=600)


@pytest.fixture
def earlier_benchmark(tmp_path):
    """An eval file, an empty workspace and the outputs of an earlier benchmark."""
    write_jsonl(tmp_path / "eval.jsonl", [DIRECT, GREP])
    (tmp_path / "repos").mkdir()
    out = tmp_path / "out"
    for name in ("b.log", "b.json", "b.png", "pred/base.jsonl"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(f"earlier {name}\n".encode())
    return out


def test_a_benchmark_with_no_readable_eval_set_leaves_the_earlier_results(tmp_path, earlier_benchmark):
    before = files(earlier_benchmark)
    (tmp_path / "broken.jsonl").write_text('{"id": "x", "question": "Q", "expected": "maybe", "check": {}}\n')
    (tmp_path / "empty.jsonl").write_text("")
    done = benchmark(tmp_path, [str(tmp_path / "missing.jsonl"), str(tmp_path / "broken.jsonl"),
                                str(tmp_path / "empty.jsonl")], [f"ghost={tmp_path / 'no-such-model'}"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"error: no eval case to ask (eval set skipped: {tmp_path / 'missing.jsonl'}: no such eval file; "
            f"eval set skipped: {tmp_path / 'broken.jsonl'}: case 1 (x): unknown label 'maybe'") in done.stderr
    assert (f"{tmp_path / 'empty.jsonl'}: no cases); {earlier_benchmark / 'b.log'}, {earlier_benchmark / 'b.json'} "
            f"and {earlier_benchmark / 'b.png'} are left as they were") in done.stderr
    assert "could not load" not in done.stdout  # no model is loaded for nothing
    assert files(earlier_benchmark) == before


def test_a_benchmark_where_no_model_loads_leaves_the_earlier_results(tmp_path, earlier_benchmark):
    before = files(earlier_benchmark)
    (tmp_path / "broken-model").mkdir()
    done = benchmark(tmp_path, [str(tmp_path / "eval.jsonl")],
                     [f"ghost={tmp_path / 'no-such-model'}", f"broken={tmp_path / 'broken-model'}"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert (f"error: no model answered a case (ghost: ModelError: model folder {tmp_path / 'no-such-model'} does not "
            f"exist; broken: ModelError: model folder {tmp_path / 'broken-model'} has no config.json); "
            f"{earlier_benchmark / 'b.log'}") in done.stderr
    assert files(earlier_benchmark) == before


def test_a_benchmark_where_every_case_is_skipped_leaves_the_earlier_results(tmp_path, earlier_benchmark, tiny):
    before = files(earlier_benchmark)
    write_jsonl(tmp_path / "tools.jsonl", [GREP])  # its repo is not in the (empty) workspace
    done = benchmark(tmp_path, [str(tmp_path / "tools.jsonl")], [f"tiny={tiny}"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: no model answered a case (every case skipped, its repo folder is not in the workspace)" \
        in done.stderr
    assert files(earlier_benchmark) == before
