"""Tiny real training runs the training and benchmark tests share: rows, a config, the script."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tooltrain.io import write_jsonl
from tooltrain.tools import SYSTEM_PROMPT, TOOLS, tool_call

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


def train(config: Path, **kwargs) -> subprocess.CompletedProcess:
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
