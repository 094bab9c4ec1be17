"""Tiny real training runs the training and benchmark tests share: rows, a config, the script."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tooltrain.io import write_jsonl
from tooltrain.tools import SYSTEM_PROMPT, TOOLS, tool_call
from tooltrain.train.record import RESUME_STATE, WORK_DIR

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    ("Where is the Flask class defined in flask?", tool_call("grep", pattern=r"class Flask\b", path="flask")),
    ("Open flask/src/flask/app.py.", tool_call("read", path="flask/src/flask/app.py")),
    ("What is a Python decorator?", {"role": "assistant", "content": "A function that wraps another function."}),
    ("Where is the Blueprint class defined in flask?", tool_call("grep", pattern=r"class Blueprint\b", path="flask")),
]


def rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}, a],
             "tools": TOOLS} for q, a in (QUESTIONS * n)[:n]]


def make_run(tmp_path: Path, model: Path, iters: int, save_every: int) -> Path:
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", rows(8))
    write_jsonl(data / "valid.jsonl", rows(4))
    config = {"model": str(model), "train": True, "data": str(data), "adapter_path": str(tmp_path / "adapters"),
              "fine_tune_type": "lora", "iters": iters, "batch_size": 2, "learning_rate": 5e-4,
              "mask_prompt": True, "num_layers": 2, "steps_per_report": 1, "steps_per_eval": 2,
              "val_batches": -1, "save_every": save_every, "max_seq_length": 1024, "seed": 0}
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def user_env() -> dict:
    """This process's environment without the BLAS choice `make test` made for the test session (it runs
    pytest under `python -m tooltrain.blas exec`): what a user's shell hands `train_adapter`, which then
    makes the choice itself."""
    from tooltrain.blas import REEXEC_MARK

    chosen = ("LD_PRELOAD", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", REEXEC_MARK)
    return {k: v for k, v in os.environ.items() if k not in chosen}


def stop_at_first_checkpoint(config: Path, env: dict, timeout: float) -> int:
    """Start `train_adapter -c config`, kill it (SIGKILL, the whole process group) as soon as its first
    resume checkpoint is written, and return the iteration that checkpoint holds."""
    adapters = Path(yaml.safe_load(Path(config).read_text())["adapter_path"])
    state = adapters / WORK_DIR / RESUME_STATE
    proc = subprocess.Popen([sys.executable, "-m", "scripts.train_adapter", "-c", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return json.loads(state.read_text())["iteration"]


def train(config: Path, **kwargs) -> subprocess.CompletedProcess:
    """`scripts/train_adapter.py -c config`, started from a user's environment unless `env=` says otherwise."""
    kwargs.setdefault("env", user_env())
    return subprocess.run([sys.executable, "-m", "scripts.train_adapter", "-c", str(config)], cwd=ROOT,
                          capture_output=True, text=True, **kwargs)


def load_with_adapter(model: Path, adapter: Path):
    """(model, tokenizer) as `mlx_lm.load` gives them; `adapter` is an adapter folder or one weights file
    of a run (loaded beside that run's adapter_config.json)."""
    from mlx_lm import load

    if Path(adapter).is_dir():
        return load(str(model), adapter_path=str(adapter))
    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(Path(adapter).parent / "adapter_config.json", Path(folder) / "adapter_config.json")
        shutil.copyfile(adapter, Path(folder) / "adapters.safetensors")
        return load(str(model), adapter_path=folder)


def validation_loss(model: Path, adapter: Path, data: Path) -> float:
    """The validation loss of `adapter` (folder or weights file) on `data`/valid.jsonl as mlx-lm itself
    computes it (its loader, dataset, `evaluate` and default masked loss) over the batches training
    validates on: a measure of which weights a file holds that owes nothing to the run's own log."""
    import types

    from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset
    from mlx_lm.tuner.trainer import evaluate

    from tooltrain.train.run import same_validation_batches

    net, tokenizer = load_with_adapter(model, adapter)
    _, valid, _ = load_local_dataset(Path(data), tokenizer, types.SimpleNamespace(mask_prompt=True))
    return float(evaluate(net, CacheDataset(valid), batch_size=2, num_batches=-1, max_seq_length=1024,
                          iterate_batches=same_validation_batches))
