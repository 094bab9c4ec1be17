"""Guided decoding: the workspace's paths, the constraint's states, and on the real model: a guided path is
always real, and wherever the greedy path was real already the guided output is the greedy output."""

import pytest

from tests.fixture_repos import make_repos
from tooltrain.eval.guided import (END, FREE, KEY_QUOTE, PathGuard, build_trie, folders_under, grep_finds, guided_output,
                              pattern_tokens, resolve_path, step, workspace_paths)


@pytest.fixture
def repos(tmp_path):
    make_repos(tmp_path / "repos")
    return tmp_path / "repos"


def test_workspace_paths_are_the_files_the_tools_read_and_folders_for_grep(repos, tmp_path):
    (repos / "gadgets" / ".git").mkdir()
    (repos / "gadgets" / ".git" / "config").write_text("[core]\n")
    (repos / "gadgets" / "logo.png").write_bytes(b"\x89PNG")
    (repos / "gadgets" / "CHANGELOG").write_text("1.0: first\n")
    (repos / "gadgets" / "blob").write_bytes(b"\xff\xfe not UTF-8")
    (tmp_path / "secret.txt").write_text("password\n")
    (repos / "gadgets" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    folders = folders_under([repos])
    assert set(folders) == {"gadgets", "bolts"}
    paths = workspace_paths(folders)
    assert {"gadgets/README.md", "gadgets/src/gadgets/hinge.py", "bolts/src/bolts/nut.py"} <= paths["read"]
    assert not {p for p in paths["read"] if ".git" in p or p.endswith((".png", "escape.txt"))}
    assert {"gadgets", "gadgets/", "gadgets/src/gadgets", "bolts/src/"} <= paths["grep"] - paths["read"]
    # read opens a top-level text file with no suffix; grep does not search it, and nothing opens a binary one
    assert "gadgets/CHANGELOG" in paths["read"] and "gadgets/CHANGELOG" not in paths["grep"]
    assert "gadgets/blob" not in paths["read"]
    assert paths["read"] - {"gadgets/CHANGELOG"} <= paths["grep"]


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


def call(pattern: str, path: str = "gadgets") -> str:
    return '<tool_call>\n{"name": "grep", "arguments": {"pattern": "%s", "path": "%s"}}\n</tool_call>' % (pattern, path)


def test_a_search_is_retried_only_when_it_finds_nothing_or_does_not_compile(repos):
    folders = folders_under([repos])
    assert grep_finds(call("class HingeBase"), folders)
    assert grep_finds("Decorators wrap functions.", folders)  # not a search: nothing to retry
    assert grep_finds('<tool_call>\n{"name": "read", "arguments": {"path": "nowhere"}}\n</tool_call>', folders)
    assert not grep_finds('<tool_call>\n{"name": "grep", "arguments": {"pattern": "\\udc80", "path": "gadgets"}}\n'
                          '</tool_call>', folders)  # a call that cannot be read
    for broken in (call("class NoSuchThing"), call("class Hinge("), call("class HingeBase", "elsewhere"),
                   call("class HingeBase", "../gadgets")):
        assert not grep_finds(broken, folders), broken


class Characters:
    """A tokenizer with one token per character (token id = code point): positions are easy to check."""

    def decode(self, ids):
        return "".join(map(chr, ids))

    def get_vocab(self):
        return {chr(i): i for i in range(128)}


def test_a_path_that_is_not_real_resolves_to_the_one_real_path_it_names(repos):
    paths = workspace_paths(folders_under([repos]))
    read, grep = paths["read"], paths["grep"]
    assert resolve_path("gadgets/src/gadgets/hinge.py", read) == "gadgets/src/gadgets/hinge.py"
    assert resolve_path("gadgets/hinge.py", read) == "gadgets/src/gadgets/hinge.py"  # the package path, relative
    assert resolve_path("gadgets/gadgets/hinge.py", read) == "gadgets/src/gadgets/hinge.py"  # flat for src/
    assert resolve_path("gadgets/core.py", read) == "gadgets/src/gadgets/core.py"  # bolts has a core.py too
    assert resolve_path("gadget/src/gadgets/hinge.py", read) == "gadgets/src/gadgets/hinge.py"  # the folder misspelt
    assert resolve_path("gadgets/README.rst", read) == "gadgets/README.md"  # the extension
    assert resolve_path("gadgets/src/bolts/nut.py", read) == "bolts/src/bolts/nut.py"  # only bolts has src/bolts/nut.py
    assert resolve_path("gadgetz", grep) == "gadgets" and resolve_path("gadgetz", read) is None
    real = read | {"python-dateutil/src/dateutil/tz/tz.py", "python-dateutil/src/dateutil/utils.py",
                   "python-dateutil/tests/utils.py"}
    assert resolve_path("dateutil/tz/tz.py", real) == "python-dateutil/src/dateutil/tz/tz.py"  # a package's name
    for unclear in ("python-dateutil/utils.py",  # two files end with it: no guess
                    "src/gadgets/hinge.py",  # both repositories have src/
                    "gadgets/x.py", "zzz/hinge.py", "../gadgets/README.md", "gadgets/../bolts/README.md", ""):
        assert resolve_path(unclear, real) is None, unclear


def test_guided_output_keeps_a_real_call_resolves_a_path_and_else_decodes_again(repos):
    folders = folders_under([repos])
    guard = PathGuard(Characters(), folders)

    def first(raw):
        return {"raw": raw, "ids": [ord(ch) for ch in raw], "gen_time_s": 1.0, "time_to_decision_s": 0.5}

    again = {"raw": "decoded again", "gen_time_s": 2.0, "time_to_decision_s": 0.1}
    real = first(READ.format("gadgets/src/gadgets/hinge.py"))
    assert guided_output(real, guard, folders, lambda: again) is real
    resolved = guided_output(first(READ.format("gadgets/hinge.py")), guard, folders, lambda: again)
    assert resolved["raw"] == READ.format("gadgets/src/gadgets/hinge.py")
    assert resolved["resolved_from"] == READ.format("gadgets/hinge.py")
    lost = guided_output(first(READ.format("gadgets/nowhere.py")), guard, folders, lambda: again)
    assert lost["raw"] == "decoded again" and (lost["gen_time_s"], lost["time_to_decision_s"]) == (3.0, 0.5)
    assert guided_output(first(call("class NoSuchThing")), guard, folders, lambda: again)["raw"] == "decoded again"


READ = '<tool_call>\n{{"name": "read", "arguments": {{"path": "{}"}}}}\n</tool_call>'


def test_the_tokens_of_the_pattern_are_the_ones_a_retry_may_change():
    text = call("class Hinge\\b")
    positions = pattern_tokens(Characters(), [ord(ch) for ch in text])
    start = text.index("class")
    assert positions == list(range(start, start + len("class Hinge\\b")))
    assert pattern_tokens(Characters(), [ord(ch) for ch in "a direct answer"]) == []


PATH_PROMPTS = [  # questions whose answer starts a read call: the model writes only the path
    "Open the README of gadgets.", "Show me gadgets/src/gadgets/hinge.py", "Read the bolts nut module.",
    "What is in the pyproject.toml of bolts?", "Open hinge.py", "read the core module of gadgets",
]


@pytest.mark.slow
def test_guided_paths_are_real_and_otherwise_the_greedy_output(float32_base, repos):
    from mlx_lm import generate, load
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    from tooltrain.eval.decoding import greedy_decode
    from tooltrain.eval.guided import PathGuard
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


SEARCHES = ["Where is the HingeBase class defined in gadgets?", "Find where gadgets raises HingeError.",
            "Which functions in bolts are decorated with @register_nut?", "where is NUT_LIMIT set in bolts"]


@pytest.mark.slow
def test_a_retried_search_keeps_the_model_greedy_up_to_the_one_token_it_changes(float32_base, repos):
    """Forcing the greedy tokens gives the greedy output back; a retry changes exactly one token of the
    pattern to the runner-up there and is kept only when it finds something (and the first did not)."""
    from mlx_lm import load

    from tooltrain import workspace
    from tooltrain.eval.decoding import Decider, context_messages
    from tooltrain.eval.guided import PathGuard, decide_searching
    from tooltrain.eval.scoring import read_output

    model, tokenizer = load(str(float32_base))
    folders = folders_under([repos])
    context = context_messages(workspace.render_map(workspace.scan_roots([repos])))
    decider = Decider(model, tokenizer, context, guard=PathGuard(tokenizer, folders))
    head = tokenizer.encode('<tool_call>\n{"name": "grep", "arguments": {"pattern": "', add_special_tokens=False)
    retried = 0
    for question in SEARCHES:  # the base model rarely calls a tool: its answers start a grep call
        first = decider.decide(question, forced=head, runners_up=True)
        assert first["ids"][:len(head)] == head and len(first["runners_up"]) == len(first["ids"])
        assert all(margin >= 0 for _, margin in first["runners_up"])
        # Forced tokens are kept and decoding goes on after them (prefilled in one pass, the rest may differ
        # from `first` by float rounding, so only the call is compared).
        half = (len(head) + len(first["ids"])) // 2
        again = decider.decide(question, forced=first["ids"][:half])
        assert again["ids"][:half] == first["ids"][:half] and read_output(again["raw"]).decision == "grep"
        out = decide_searching(decider, question, folders, forced=head)
        if grep_finds(first["raw"], folders):
            assert out["ids"] == first["ids"] and out["retries"] == 0
            continue
        retried += out["retries"] > 0
        if "first_raw" in out:  # a retry found something: one token of the pattern is the runner-up
            assert out["first_raw"] == first["raw"] and grep_finds(out["raw"], folders)
            index = next(i for i, (a, b) in enumerate(zip(out["ids"], first["ids"])) if a != b)
            assert index in pattern_tokens(tokenizer, first["ids"])
            assert out["ids"][index] == first["runners_up"][index][0]
        else:
            assert out["ids"] == first["ids"]
    assert retried, "the base model should write at least one search that finds nothing, or this shows nothing"
