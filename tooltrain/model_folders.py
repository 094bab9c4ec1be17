"""Model folders at run time, for every stage that loads or makes one: check a folder before loading it,
load it, publish a new one atomically with its provenance, and the CPU training base (a float32 copy of a
quantized model, whose matmuls then go through BLAS).

Training, fusing and the benchmark use these; the one-off conversion of the embedded model is
tooltrain.model.gguf.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

from .io import json_text, replace_folder, sha256_file
from .paths import MODELS

PROVENANCE = "provenance.json"
ADAPTER_FILE = "adapters.safetensors"  # what mlx-lm loads from an adapter folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ModelError(ValueError):
    """A model source or folder that cannot be used; the message names the problem."""


def _check_safetensors(path: Path) -> None:
    """The header must parse and the file must be as long as its last tensor says (catches truncation)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError("header is longer than the file")
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"corrupt weights file {path}: {err}") from None
    if 8 + header_len + end > size:
        raise ModelError(f"truncated weights file {path}: {size} bytes, expected {8 + header_len + end}")


def check_folder(folder: Path) -> dict:
    """Validate an mlx-lm model folder without loading it; returns its config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelError(f"model folder {folder} has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError(f"{config_path} has no model_type")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        raise ModelError(f"model folder {folder} has no tokenizer (tokenizer.json or tokenizer.model)")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        files = [folder / n for n in names]
        if missing := [str(f) for f in files if not f.is_file()]:
            raise ModelError(f"model folder {folder} lacks weight files: {', '.join(missing)}")
    else:
        files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ModelError(f"model folder {folder} has no weights (model*.safetensors)")
    for f in files:
        _check_safetensors(f)
    return config


def is_local(model: str | Path) -> bool:
    """A path (exists, or looks like one) rather than a hub id like 'org/name'."""
    text = str(model)
    return Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") != 1


def load_checked(model: str | Path):
    """`mlx_lm.load` after validating a local folder; errors name the folder and the problem."""
    from mlx_lm import load

    if is_local(model):
        check_folder(Path(model))
    try:
        return load(str(model))
    except Exception as err:  # mlx-lm/transformers raise many types; one clear message instead
        raise ModelError(f"cannot load model {model}: {type(err).__name__}: {err}") from err


def why_redo(folder: Path, expected: dict) -> str | None:
    """Why a prepared folder cannot be reused (broken, unfinished, or made from something else), or None."""
    try:
        check_folder(folder)
        provenance = json.loads((Path(folder) / PROVENANCE).read_text(encoding="utf-8"))
    except ModelError as err:
        return str(err)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return f"no readable {PROVENANCE} (an unfinished folder)"
    wrong = [key for key, value in expected.items() if not isinstance(provenance, dict) or provenance.get(key) != value]
    return f"its {PROVENANCE} does not match ({', '.join(wrong)})" if wrong else None


def has_accelerator() -> bool:
    """Metal or CUDA: MLX computes quantized matmuls fast there, so the 4-bit base is kept."""
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    return mx.metal.is_available() or bool(cuda and cuda.is_available())


def build_model_folder(out: Path, fill, source: str | Path, provenance: dict) -> Path:
    """Make a model folder atomically: `fill(folder)` writes the weights, the source's tokenizer
    files are kept byte for byte (mlx-lm's savers may rewrite the chat template), provenance last."""
    def build(target: Path) -> None:
        fill(target)
        if is_local(source):
            for file in TOKENIZER_FILES:
                if (Path(source) / file).exists():
                    shutil.copyfile(Path(source) / file, target / file)
        (target / PROVENANCE).write_text(json_text({"source": str(source), **provenance}), encoding="utf-8")

    replace_folder(Path(out), build)
    return Path(out)


def source_stamp(model: str | Path) -> str:
    """What a derived folder was made from: for a local folder a digest of its config and weights (its
    content, wherever it sits), for a hub id the id."""
    if not is_local(model):
        return str(model)
    digest = hashlib.sha256()
    for path in [Path(model) / "config.json", *sorted(Path(model).glob("*.safetensors"))]:
        digest.update(f"{path.name} {sha256_file(path)}\n".encode())
    return digest.hexdigest()


def float32_copy(model: str | Path, models_dir: Path | None = None) -> Path:
    """A float32, unquantized copy of `model` in `models_dir`: by default beside a local model folder,
    in data/models for a hub id. Made atomically, and made again when the copy is broken (truncated
    weights, no config.json, no provenance) or was made from other weights than `model` holds now."""
    from mlx_lm.convert import convert

    name = Path(str(model)).name if is_local(model) else str(model).replace("/", "--")
    if models_dir is None:
        models_dir = Path(model).parent if is_local(model) else MODELS
    out = Path(models_dir) / f"{name}-float32"
    made_from = {"dtype": "float32", "source_stamp": source_stamp(model)}
    reason = why_redo(out, made_from)
    if reason is None:
        return out
    if out.exists():
        print(f"note: rebuilding {out}: {reason}", flush=True)
    return build_model_folder(
        out, lambda folder: convert(hf_path=str(model), mlx_path=str(folder), dtype="float32", dequantize=True),
        model, {**made_from, "dequantized": True,
                "why": "CPU training: float32 matmuls go through BLAS, quantized ones do not"})


def training_base(model: str | Path) -> tuple[str, str]:
    """What to train on, and why: the model itself on Metal/CUDA, a float32 copy of a quantized one on CPU."""
    if has_accelerator():
        return str(model), "accelerator: quantized base kept (QLoRA)"
    config_path = Path(str(model)) / "config.json"
    if is_local(model) and config_path.exists():
        if "quantization" not in json.loads(config_path.read_text()):
            return str(model), "cpu: base is not quantized, used as is"
    return str(float32_copy(model)), "cpu: float32 copy of the quantized base (its matmuls go through BLAS)"
