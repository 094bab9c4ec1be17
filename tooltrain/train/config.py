"""A training run's settings and data, checked before anything is loaded.

The per-phase YAML is an ordinary `mlx_lm.lora -c` config, read the way `mlx_lm.lora`
reads it: its CONFIG_DEFAULTS under the YAML under the command line.
"""

from __future__ import annotations

import types
from pathlib import Path

import yaml

from ..io import read_jsonl


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
