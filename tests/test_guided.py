"""Guided decoding: the workspace's paths, the constraint's states, and on the real model: a guided path is
always real, and wherever the greedy path was real already the guided output is the greedy output."""

import pytest

from tests.fixture_repos import make_repos
from tooltrain.guided import END, FREE, KEY_QUOTE, build_trie, folders_under, step, workspace_paths


@pytest.fixture
def repos(tmp_path):
    make_repos(tmp_path / "repos")
    return tmp_path / "repos"


def test_workspace_paths_are_the_files_the_tools_read_and_folders_for_grep(repos, tmp_path):
    (repos / "gadgets" / ".git").mkdir()
    (repos / "gadgets" / ".git" / "config").write_text("[core]\n")
    (repos / "gadgets" / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.txt").write_text("password\n")
    (repos / "gadgets" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    folders = folders_under([repos])
    assert set(folders) == {"gadgets", "bolts"}
    paths = workspace_paths(folders)
    assert {"gadgets/README.md", "gadgets/src/gadgets/hinge.py", "bolts/src/bolts/nut.py"} <= paths["read"]
    assert not {p for p in paths["read"] if ".git" in p or p.endswith((".png", "escape.txt"))}
    assert {"gadgets", "gadgets/", "gadgets/src/gadgets", "bolts/src/"} <= paths["grep"] - paths["read"]
    assert paths["read"] <= paths["grep"]


def walk(text: str, trie: dict):
    state = (KEY_QUOTE, trie)
    for ch in text:
        state = step(state, ch)
        if state is None or state == FREE:
            return state
    return state


def test_the_constraint_follows_the_key_then_the_value_to_a_real_path():
    trie = build_trie(["gadgets/README.md", "gadgets/src/gadgets/hinge.py"])
    assert walk('": "gadgets/README.md"}}', trie) == FREE  # anything after the closing quote
    middle = walk('":  "gadgets/src/', trie)
    assert middle is not None and set(middle[1]) == {"g"}
    assert walk('": "gadgets/README', trie) is not None and END not in walk('": "gadgets/README', trie)[1]
    for wrong in ('": "gadget/', '": "gadgets/README.md/', '": "gadgets"', '" "gadgets', ': "gadgets'):
        assert walk(wrong, trie) is None, wrong


PATH_PROMPTS = [  # questions whose answer starts a read call: the model writes only the path
    "Open the README of gadgets.", "Show me gadgets/src/gadgets/hinge.py", "Read the bolts nut module.",
    "What is in the pyproject.toml of bolts?", "Open hinge.py", "read the core module of gadgets",
]


@pytest.mark.slow
def test_guided_paths_are_real_and_otherwise_the_greedy_output(float32_base, repos):
    from mlx_lm import generate, load
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    from tooltrain.decoding import greedy_decode
    from tooltrain.guided import PathGuard
    from tooltrain.tools import SYSTEM_PROMPT, TOOLS

    model, tokenizer = load(str(float32_base))
    guard = PathGuard(tokenizer, folders_under([repos]))
    real = workspace_paths(folders_under([repos]))["read"]
    start = '<tool_call>\n{"name": "read", "arguments": {"path": "'
    same = changed = 0
    for question in PATH_PROMPTS:
        prompt = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                                {"role": "user", "content": question}], tools=TOOLS,
                                               add_generation_prompt=True) + tokenizer.encode(start, add_special_tokens=False)
        runs = {}
        for guided in (False, True):
            guide = (lambda ids, head=start: guard.allowed(head + tokenizer.decode(ids))) if guided else None
            ids, _ = greedy_decode(model, make_prompt_cache(model), prompt, lambda ids: [],
                                   lambda ids: '"' in tokenizer.decode(ids), 40, set(tokenizer.eos_token_ids), guide)
            runs[guided] = tokenizer.decode(ids).split('"')[0]
        assert runs[True] in real, (question, runs)
        if runs[False] in real:
            assert runs[True] == runs[False]
            same += 1
        else:
            changed += 1
        # the same guard as an mlx-lm logits processor, in mlx-lm's own generate
        text = generate(model, tokenizer, prompt=prompt, max_tokens=40,
                        sampler=make_sampler(temp=0.0),
                        logits_processors=[guard.processor(len(prompt) - len(tokenizer.encode(start, add_special_tokens=False)))])
        assert text.split('"')[0] == runs[True], (question, text, runs)
    assert changed, "the base model should invent at least one path here, or this test shows nothing"
