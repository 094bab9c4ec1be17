"""The benchmark: reading outputs, checking calls for real, metrics, bad eval files, and a real end-to-end run."""

import json
import re
import subprocess
import sys

import pytest

from tests.fixture_repos import make_repos
from tests.training_runs import ROOT
from tooltrain.eval.benchmark import guided_names, parse_models
from tooltrain.eval.decoding import greedy_decode, lookup_draft
from tooltrain.io import write_jsonl
from tooltrain.eval.scoring import (Case, EvalFileError, case_from_example, check_call, decided, finished_call,
                               load_cases, metrics, read_output)

GREP_CALL = '<tool_call>\n{"name": "grep", "arguments": {"pattern": "class FlangePart\\\\b", "path": "gadgets"}}\n</tool_call>'


@pytest.mark.parametrize("text, decision, form, arguments", [
    (GREP_CALL, "grep", "tagged", {"pattern": r"class FlangePart\b", "path": "gadgets"}),
    ('{"name": "read", "arguments": {"path": "gadgets/README.md"}}', "read", "bare", {"path": "gadgets/README.md"}),
    ('```json\n{"name": "read", "arguments": {"path": "a.py"}}\n```', "read", "bare", {"path": "a.py"}),
    ('{"name": "read", "arguments": "{\\"path\\": \\"a.py\\"}"}', "read", "bare", {"path": "a.py"}),
    ('Sure, let me look. <tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call>', "read",
     "embedded", {"path": "a.py"}),
    ('<tool_call>\n{"name": "grep", "arguments": {"pattern": "x"', "grep", "malformed", None),
    ('<tool_call>\n{"name": "grep", "arguments": {"pattern": "x", }}\n</tool_call>', "grep", "malformed", None),
    ('<tool_call>\n{"name": "search_web", "arguments": {"q": "x"}}\n</tool_call>', "invalid", "tagged", {"q": "x"}),
    ("<tool_call>\n</tool_call>", "invalid", "malformed", None),
    ("A decorator wraps a function.", "direct", "text", None),
    ("{not json at all", "direct", "text", None),
    ("", "direct", "text", None),
])
def test_read_output(text, decision, form, arguments):
    reading = read_output(text)
    assert (reading.decision, reading.form) == (decision, form)
    assert (reading.tool_call or {}).get("arguments") == arguments


@pytest.mark.parametrize("partial, expected", [
    ("", None), ("  ", None), ("<", None), ("<tool_c", None), ("<tool_call>\n{\"name\": \"gr", None),
    ("<tool_call>\n{\"name\": \"grep\"", "grep"), ("{\"name\": \"read\"", "read"),
    ("<tool_call>\n{\"name\": \"shell\"", "invalid"), ("The", "direct"), ("<b>bold</b>", "direct"),
    ("```", None), ("```json\n", None), ("```json\n{\"name\": \"read\"", "read"), ("```python", "direct"),
])
def test_decision_settles_as_soon_as_the_output_allows(partial, expected):
    assert decided(partial) == expected


def test_a_call_is_finished_at_its_closing_tag_or_closing_brace():
    assert finished_call(GREP_CALL) and not finished_call(GREP_CALL[:-3])
    assert finished_call('{"name": "read", "arguments": {"path": "a"}}')
    assert not finished_call('{"name": "read", "arguments": {"path": "a"}')
    assert not finished_call("plain words")


@pytest.fixture
def root(tmp_path):
    make_repos(tmp_path / "repos")
    return tmp_path / "repos"


def grep_case(must_find="class FlangePart(FlangeBase):", in_file="gadgets/src/gadgets/flange.py"):
    return Case("g", "Where is FlangePart defined in gadgets?", "gadgets", "grep",
                {"must_find": must_find, "in_file": in_file})


def read_case():
    return Case("r", "Open gadgets/README.md.", "gadgets", "read", {"path": "gadgets/README.md"})


def call(name, **arguments):
    return read_output(json.dumps({"name": name, "arguments": arguments}))


@pytest.mark.parametrize("reading, valid, detail", [
    (call("grep", pattern=r"class FlangePart\b", path="gadgets"), True, "1 hits"),
    (call("grep", pattern=r"class FlangePart\b", path="gadgets/src"), True, "1 hits"),
    (call("grep", pattern=r"def describe_flange", path="gadgets"), False, "none in gadgets/src/gadgets/flange.py"),
    (call("grep", pattern=r".", path="gadgets"), False, "pattern too broad"),
    (call("grep", pattern=r"class FlangePart", path="../gadgets"), False, "'..' is not allowed"),
    (call("grep", pattern=r"class FlangePart", path="/etc"), False, "absolute paths are not allowed"),
    (call("grep", pattern="(", path="gadgets"), False, "invalid regular expression"),
    (call("grep", path="gadgets"), False, "pattern must be a non-empty string"),
    (read_output('<tool_call>{"name": "grep", "arguments": {"pattern": "x"</tool_call>'), False, "could not be read"),
])
def test_grep_calls_are_run_for_real_and_confined(root, reading, valid, detail):
    got, message = check_call(grep_case(), reading, root)
    assert got is valid and detail in message


def test_catastrophic_regex_is_cut_off(root):
    (root / "gadgets" / "slow.txt").write_text("a" * 40 + "!\n")
    got, message = check_call(grep_case(), call("grep", pattern=r"(a|aa)+$", path="gadgets"), root)
    assert got is False and "longer than" in message


@pytest.mark.parametrize("path, valid, detail", [
    ("gadgets/README.md", True, ""), ("gadgets/./README.md", True, ""),
    ("gadgets/pyproject.toml", False, "another file"), ("gadgets/NOPE.md", False, "no such file"),
    ("bolts/../gadgets/README.md", False, "'..'"), ("/work/main/README.md", False, "absolute"),
])
def test_read_calls_must_resolve_to_the_asked_for_file(root, path, valid, detail):
    got, message = check_call(read_case(), call("read", path=path), root)
    assert got is valid and detail in message


def test_read_through_a_symlink_that_leaves_the_root_is_refused(root, tmp_path):
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "gadgets" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    got, message = check_call(read_case(), call("read", path="gadgets/escape.txt"), root)
    assert got is False and "leaves the repos root" in message


def test_no_check_for_direct_cases_or_wrong_decisions(root):
    direct = Case("d", "What is a closure?", None, "direct", {})
    assert check_call(direct, call("grep", pattern="x", path="gadgets"), root) == (None, "")
    assert check_call(grep_case(), read_output("It is in flange.py."), root) == (None, "")


def record(expected, decision, valid=None, form=None):
    return {"expected": expected, "decision": decision, "valid": valid,
            "form": form or ("text" if decision == "direct" else "tagged")}


def test_metrics_on_hand_made_predictions():
    records = [record("grep", "grep", True), record("grep", "grep", False), record("grep", "direct"),
               record("grep", "read", form="bare"), record("read", "read", True), record("read", "read", True),
               record("direct", "direct"), record("direct", "direct"), record("direct", "grep", form="bare"),
               record("direct", "invalid", form="malformed")]
    m = metrics(records)
    assert m["cases"] == 10 and m["accuracy"] == 0.6
    # grep: P 2/3 R 2/4 -> 4/7; read: P 2/3 R 2/2 -> 0.8; direct: P 2/3 R 2/4 -> 4/7
    assert m["f1"] == {"grep": round(4 / 7, 4), "read": 0.8, "direct": round(4 / 7, 4)}
    assert m["macro_f1"] == round((4 / 7 + 0.8 + 4 / 7) / 3, 4)
    assert m["success"] == 0.5  # the grep that missed its line is a right decision, not a success
    assert m["over_call_rate"] == 0.5 and m["under_call_rate"] == round(1 / 6, 4)
    assert m["grep_hit_rate"] == 0.5 and m["read_valid_rate"] == 1.0
    assert m["format_adherence"] == round(4 / 7, 4)  # 7 outputs tried a call, 4 in the template's tagged form
    assert m["confusion"]["grep"] == {"grep": 2, "direct": 1, "read": 1}
    assert m["confusion"]["direct"] == {"direct": 2, "grep": 1, "invalid": 1}


def test_bad_eval_files_are_named(tmp_path):
    path = tmp_path / "eval.jsonl"
    good = {"id": "a", "question": "Q?", "repo": None, "expected": "direct", "check": {}}
    write_jsonl(path, [good])
    assert load_cases(path) == [Case("a", "Q?", None, "direct", {})]
    path.write_text(json.dumps(good) + "\n{broken\n")
    with pytest.raises(EvalFileError, match=r"eval.jsonl:2: not valid JSON"):
        load_cases(path)
    for bad, message in [({**good, "expected": "search"}, "unknown label 'search'"),
                         ({**good, "expected": "grep"}, "needs check keys \\['in_file', 'must_find'\\]"),
                         ({"id": "b", "question": "Q?"}, "missing expected")]:
        write_jsonl(path, [good, bad])
        with pytest.raises(EvalFileError, match=message):
            load_cases(path)
    write_jsonl(path, [good, good])
    with pytest.raises(EvalFileError, match="duplicate id"):
        load_cases(path)
    with pytest.raises(EvalFileError, match="no such eval file"):
        load_cases(tmp_path / "missing.jsonl")


def test_in_distribution_cases_ask_the_examples_own_questions(root):
    from tooltrain.tools import tool_call

    def example(label, answer, source):
        return {"id": f"gadgets/{label}/x/0", "label": label, "source": {"repo": "gadgets", **source},
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"{label}?"}, answer]}

    grep = example("grep", tool_call("grep", pattern=r"class FlangePart\b", path="gadgets"),
                   {"path": "gadgets/src/gadgets/flange.py", "line": 28, "intent": "class_def"})
    case = case_from_example(grep, root)
    assert case["check"] == {"must_find": "class FlangePart(FlangeBase):", "in_file": "gadgets/src/gadgets/flange.py"}
    assert check_call(Case(**{k: case[k] for k in ("id", "question", "repo", "expected", "check")}),
                      call("grep", pattern=r"class FlangePart\b", path="gadgets"), root)[0] is True
    read = example("read", tool_call("read", path="gadgets/README.md"), {"path": "gadgets/README.md", "line": None})
    assert case_from_example(read, root)["check"] == {"path": "gadgets/README.md"}
    direct = example("direct", {"role": "assistant", "content": "A."}, {"path": None, "line": None})
    assert case_from_example(direct, root)["check"] == {} and case_from_example(direct, root)["question"] == "direct?"


def test_model_names_and_custom_models():
    specs = parse_models(["base", "phase7", "qwen=mlx-community/Qwen2.5-Coder-7B-Instruct-4bit",
                          "mine=models/m:adapters/a"], "models/base")
    assert [(s.name, s.model, s.adapter) for s in specs] == [
        ("base", "models/base", None), ("phase7", "models/base", str(ROOT / "adapters_phase7")),
        ("qwen", "mlx-community/Qwen2.5-Coder-7B-Instruct-4bit", None), ("mine", "models/m", "adapters/a")]
    with pytest.raises(ValueError, match="not one of"):
        parse_models(["phase9"], "models/base")


def test_guided_scores_go_to_the_last_model_unless_named():
    specs = parse_models(["base", "phase6", "phase7"], "models/base")
    assert guided_names(None, specs) == ("phase7",)  # the model `make ask` loads
    assert guided_names(["all"], specs) == ("base", "phase6", "phase7")
    assert guided_names(["phase6"], specs) == ("phase6",)
    with pytest.raises(ValueError, match="phase9: not among the models"):
        guided_names(["phase9"], specs)


def test_lookup_draft_proposes_what_followed_the_latest_match():
    context = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8]
    assert lookup_draft([0, 2, 3], context, 2) == [7, 8]  # the later "2 3" wins
    assert lookup_draft([9, 4], context, 3) == [5, 9, 2]  # falls back to the 1-token tail
    assert lookup_draft([6], context, 3) == [] and lookup_draft([2], context, 0) == []
    assert lookup_draft([7, 8], context + [7, 8], 4) == [7, 8]  # the earlier "7 8", not the tail itself
    assert lookup_draft([1, 5], [1, 5], 2) == []


def test_drafts_change_the_passes_never_the_tokens_and_the_run_ends_where_done_says():
    """mlx-lm's llama at toy size (random weights, milliseconds): drafts that are right are kept whole,
    wrong ones cost a pass per token, and a run that is `done` inside a kept draft ends there."""
    import mlx.core as mx
    from mlx_lm.models import llama
    from mlx_lm.models.cache import make_prompt_cache

    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2,
                                        intermediate_size=128, num_attention_heads=4, rms_norm_eps=1e-5,
                                        vocab_size=64, num_key_value_heads=2))
    prompt = [1, 2, 3, 4, 5]

    def run(propose, done=lambda t: False, stop=frozenset()):
        return greedy_decode(model, make_prompt_cache(model), prompt, propose, done, 20, set(stop))

    plain, passes = run(lambda t: [])
    assert len(plain) == passes == 20
    right = lambda t: plain[len(t):len(t) + 8]  # noqa: E731
    wrong = lambda t: [(x + 1) % 64 for x in right(t)]  # noqa: E731
    assert run(right) == (plain, 3)  # 9 + 9 + 2 tokens: the prompt's own pass checks the first draft
    assert run(wrong) == (plain, 20)
    assert run(right, done=lambda t: len(t) >= 5) == (plain[:5], 1)
    at = plain.index(plain[-1])  # the first time the last token comes (6, as this seed's output goes)
    assert at > 1 and run(right, stop={plain[-1]}) == (plain[:at], (at + 9) // 9)


@pytest.mark.slow
def test_drafted_decoding_gives_the_plain_greedy_tokens(float32_base):
    """On the float32 copy the benchmark decodes with on a CPU (the 4-bit base runs ~5x slower here)."""
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache

    from tooltrain.eval.decoding import CALL_SHAPES, context_messages
    from tooltrain.tools import TOOLS

    model, tokenizer = load(str(float32_base))
    stop = set(tokenizer.eos_token_ids)
    for question in ("Where is the Flask class defined in flask?", "Write a haiku about autumn."):
        messages = [*context_messages("Workspace folders:\n- flask/"), {"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True)
        plain = []
        for token, _ in generate_step(mx_array(prompt), model, max_tokens=24):
            if token in stop:
                break
            plain.append(token)
        context = tokenizer.encode(CALL_SHAPES, add_special_tokens=False) + prompt
        drafted, passes = greedy_decode(model, make_prompt_cache(model), prompt,
                                        lambda t: lookup_draft(t, context + t, 8), lambda t: False, 24, stop)
        assert drafted == plain and passes < len(plain)  # fewer passes: some drafts were kept


def test_fast_blocks_compute_mlx_lms_logits(float32_base):
    """The Decider's batched forward (exponentials as powers of two) against mlx-lm's on the real model: a prompt into a
    KV cache, a one-token step after it, and two rows of different lengths batched after a cached prefix (left
    padding, array masks). The same logits to float32 rounding, the same greedy tokens."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    from tooltrain.eval.decoding import _prefill_rows
    from tooltrain.model import fast_blocks

    model, tokenizer = load(str(float32_base))
    fast = fast_blocks.forward(model)
    assert fast is not model

    def same(want, got):
        assert mx.abs(got - want).max().item() < 1e-4 * mx.abs(want).max().item()
        assert mx.argmax(got[:, -1], axis=-1).tolist() == mx.argmax(want[:, -1], axis=-1).tolist()

    caches = make_prompt_cache(model), make_prompt_cache(model)
    for step in (tokenizer.encode("Where is the Flask class defined? It is in"), [42]):
        same(model(mx.array(step)[None], cache=caches[0]), fast(mx.array(step)[None], cache=caches[1]))
    rows = [tokenizer.encode(" Where is the Flask class defined?"), tokenizer.encode(" Hi")]
    batched = []
    for forward in (model, fast):
        prefix = make_prompt_cache(model)
        forward(mx.array(tokenizer.encode("You are a helpful assistant."))[None], cache=prefix)
        cache, first = _prefill_rows(forward, prefix, rows)
        batched.append((forward(mx.array([[token] for token in first]), cache=cache), first))
    assert batched[0][1] == batched[1][1]
    same(batched[0][0], batched[1][0])


@pytest.mark.slow
def test_the_benchmark_decision_path_gives_plain_generate_output(float32_base, trained, root):
    """The benchmark's path (shared prefix cached once and trimmed back after each question, drafts, early
    stop, direct answers cut) against mlx-lm's one-shot `generate` on the whole prompt, question after question."""
    from tests.training_runs import load_with_adapter
    from tooltrain import workspace
    from tooltrain.eval.decoding import Decider, context_messages

    model, tokenizer = load_with_adapter(float32_base, trained)
    context = context_messages(workspace.render_map(workspace.scan_roots([root])))
    decider = Decider(model, tokenizer, context, max_tokens=48, max_answer_tokens=4)
    questions = ["Where is the Flask class defined in flask?", "Write a haiku about autumn.",
                 "Open gadgets/README.md.", "What is a Python decorator?"]
    first = None
    for question in [*questions, questions[0]]:  # the first again, after the others went through the cache
        ours = decider.decide(question)
        plain, _ = decider.plain_generate(question)
        assert ours["prefix_reused"] and decider.cache[0].offset == len(decider.prefix), question
        assert plain.startswith(ours["raw"]), (question, ours["raw"], plain)
        reading = read_output(ours["raw"])
        assert reading.decision == read_output(plain).decision, question
        if reading.decision == "direct":  # cut 4 tokens after the decision, where plain goes on
            ids = ours["ids"]
            settled = next(k for k in range(1, len(ids) + 1) if decided(tokenizer.decode(ids[:k])) is not None)
            assert len(ids) == settled + 4 and len(ours["raw"]) < len(plain), ours
        else:  # a call ends at its closing tag, in fewer forward passes than tokens
            assert finished_call(ours["raw"]) and ours["passes"] < ours["tokens"], ours
        first = first or ours
    assert read_output(first["raw"]).decision == "grep"  # the adapter learned this one: drafts are exercised
    assert ours["ids"] == first["ids"]
    # Early stop alone ends a call at its closing tag, where the turn-end token is not taken as a stop.
    decider.stop_tokens = set()
    open_ended = decider.decide(questions[0])
    assert open_ended["raw"] == first["raw"], open_ended


@pytest.mark.slow
def test_adapter_fused_in_memory_computes_the_same_logits(float32_base, trained):
    import mlx.core as mx
    from mlx_lm import load

    from tooltrain.eval.benchmark import fuse_unquantized_adapters

    model, tokenizer = load(str(float32_base), adapter_path=str(trained))
    tokens = mx.array(tokenizer.encode("Where is the Flask class defined?"))[None]
    before = model(tokens)
    assert fuse_unquantized_adapters(model)
    assert not any(hasattr(m, "fuse") for _, m in model.named_modules())
    after = model(tokens)
    assert mx.abs(after - before).max().item() < 1e-3 * mx.abs(before).max().item()
    assert (mx.argmax(after, axis=-1) == mx.argmax(before, axis=-1)).all().item()


def mx_array(tokens):
    import mlx.core as mx

    return mx.array(tokens)


# Questions about the fixture workspace, one per label, that the end-to-end benchmark tests ask.
MINI_CASES = [{"id": "g1", "question": "Where is the FlangePart class defined in gadgets?", "repo": "gadgets",
               "expected": "grep", "check": {"must_find": "class FlangePart(", "in_file": "gadgets/src/gadgets/flange.py"}},
              {"id": "r1", "question": "Open gadgets/README.md.", "repo": "gadgets", "expected": "read",
               "check": {"path": "gadgets/README.md"}},
              {"id": "d1", "question": "What is a Python decorator?", "repo": None, "expected": "direct", "check": {}}]


@pytest.mark.slow
def test_end_to_end_on_the_real_model_and_a_tiny_adapter(converted, float32_base, trained, root, tmp_path):
    """The real embedded base and a 6-step adapter: log, JSON, predictions and chart; a missing model,
    a malformed eval file and a case whose repo is missing are reported while the rest goes on."""
    cases = [*MINI_CASES, {"id": "m1", "question": "Open nowhere/README.md.", "repo": "nowhere", "expected": "read",
                           "check": {"path": "nowhere/README.md"}}]
    good, bad = tmp_path / "mini.jsonl", tmp_path / "broken.jsonl"
    write_jsonl(good, cases)
    bad.write_text('{"id": "x", "question": "Q", "expected": "maybe", "check": {}}\n')
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "benchmark_phase5_vs_base.py", "--eval", str(good), str(bad), "--repos-root", str(root),
         "--base-model", str(converted), "--models", "base", f"tiny={float32_base}:{trained}",
         f"ghost={tmp_path / 'no-such-model'}", "--predictions-dir", str(out / "pred"), "--log", str(out / "b.log"),
         "--json", str(out / "b.json"), "--chart", str(out / "b.png"), "--plain-questions", "2",
         "--max-tokens", "24", "--max-answer-tokens", "4", "--guided-models", "tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "b.log").read_text()
    assert re.search(r"^Phase +Examples +Load Time +Avg Gen Time +Accuracy +Adapter Size$", log, re.M)
    assert "ghost: not benchmarked: " in log and "no-such-model" in log
    assert "eval set skipped" in log and "unknown label 'maybe'" in log
    assert "plain one-shot mlx_lm.generate" in log
    results = json.loads((out / "b.json").read_text())
    assert set(results["results"]) == {"mini"}
    # the workspace map shown with every question comes from the repos root, not from the cases
    assert results["sets"]["mini"]["workspace_map"].splitlines()[1:] == ["- bolts/: bolts/src/bolts/ README.md",
                                                                        "- gadgets/: gadgets/src/gadgets/ README.md"]
    comparison = results["comparisons"]["mini"][0]
    assert (comparison["first"], comparison["second"], comparison["cases"]) == ("base", "tiny", 3)
    assert "each model vs the one before it" in log
    assert set(results["results"]["mini"]["base"]["intervals"]) >= {"accuracy", "success", "over_call_rate"}
    for name in ("base", "tiny"):
        summary = results["results"]["mini"][name]
        assert summary["cases"] == 3 and len(summary["skipped"]) == 1 and "nowhere" in summary["skipped"][0]
        predictions = [json.loads(line) for line in (out / "pred" / f"{name}.jsonl").read_text().splitlines()]
        assert [p["id"] for p in predictions] == ["g1", "r1", "d1"]
        for p in predictions:
            assert p["decision"] == read_output(p["raw"]).decision and p["prefix_reused"]
            assert p["batch_size"] == 32 and "gen_time_s" not in p  # batched (the default): no per-case times
        assert summary["latency_sample"] == 3 and 0 < summary["avg_time_to_decision_s"] <= summary["avg_gen_time_s"]
    assert set(results["guided"]["mini"]) == {"tiny"} and not (out / "pred" / "base.guided.jsonl").exists()
    # guided beside raw, for the model named: same cases; a case kept as it was is one the guard lets through
    raw = [json.loads(line) for line in (out / "pred" / "tiny.jsonl").read_text().splitlines()]
    guided = [json.loads(line) for line in (out / "pred" / "tiny.guided.jsonl").read_text().splitlines()]
    assert [g["id"] for g in guided] == ["g1", "r1", "d1"]
    assert all(steered.get("guided_rerun") or steered["raw"] == plain["raw"] for plain, steered in zip(raw, guided))
    assert results["guided"]["mini"]["tiny"]["rerun"] == sum(bool(g.get("guided_rerun")) for g in guided)
    assert results["guided"]["mini"]["tiny"]["overhead"]["questions"] == 2
    assert "raw -> guided decoding" in log
    assert "latency, 3 cases taken in turn over the labels decided one at a time; throughput of the raw pass at batch size 32" in log
    tiny = next(m for m in results["models"] if m["name"] == "tiny")
    assert tiny["examples"] == 12 and tiny["size_of"] == "adapter" and tiny["load_time_s"] > 0
    for name in ("base", "tiny"):  # the benchmark's path decides and writes as plain `generate` does
        plain_vs_cached = next(m for m in results["models"] if m["name"] == name)["plain_vs_cached"]
        assert plain_vs_cached["questions"] == plain_vs_cached["same_decision"] == plain_vs_cached["same_text"] == 2
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_two_benchmark_runs_write_the_same_predictions(float32_base, trained, root, tmp_path):
    """Greedy decoding is deterministic across processes: the same adapter, questions and workspace give
    the same tokens, calls and checks twice (the raw path; the guided one re-decodes from these)."""
    write_jsonl(tmp_path / "mini.jsonl", MINI_CASES)
    runs = []
    for run in ("first", "second"):
        out = tmp_path / run
        done = subprocess.run(
            [sys.executable, "benchmark_phase5_vs_base.py", "--eval", str(tmp_path / "mini.jsonl"), "--repos-root",
             str(root), "--models", f"tiny={float32_base}:{trained}", "--predictions-dir", str(out),
             "--log", str(out / "b.log"), "--json", str(out / "b.json"), "--chart", str(out / "b.png"),
             "--plain-questions", "0", "--no-guided", "--max-tokens", "48"],
            cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append([{k: p[k] for k in ("id", "ids", "raw", "decision", "tool_call", "valid", "detail")}
                     for p in map(json.loads, (out / "tiny.jsonl").read_text().splitlines())])
    assert len(runs[0]) == 3 and runs[0] == runs[1]


@pytest.mark.slow
def test_batched_raw_pass_gives_the_one_at_a_time_tokens(float32_base, trained):
    """The benchmark's batched raw pass (6 rows, continuous batching: 16 questions, rows leaving and joining as
    they finish) against `Decider.decide` one question at a time: the same token ids for every question. Real
    unseen-set questions, their real workspace map, the real model with a 6-step adapter fused in as the
    benchmark fuses it."""
    from tests.training_runs import load_with_adapter
    from tooltrain import paths, workspace
    from tooltrain.eval.benchmark import fuse_unquantized_adapters, score_cases
    from tooltrain.eval.decoding import Decider, context_messages

    model, tokenizer = load_with_adapter(float32_base, trained)
    fuse_unquantized_adapters(model)
    cases = load_cases(ROOT / "data" / "eval" / "unseen_repos.jsonl")[:16]
    context = context_messages(workspace.render_map(workspace.scan_roots([paths.EVAL_REPOS_ROOT])))
    decider = Decider(model, tokenizer, context, max_tokens=48, max_answer_tokens=8)
    batched, skipped = score_cases(decider, cases, (paths.EVAL_REPOS_ROOT,), batch_size=6)
    asked = [case for case in cases if case.id in {r["id"] for r in batched}]  # all, once `make data` fetched them
    assert len(asked) + len(skipped) == 16 and len(asked) >= 6
    assert [r["id"] for r in batched] == [case.id for case in asked]
    assert [r["ids"] for r in batched] == [decider.decide(case.question)["ids"] for case in asked]
    assert decider.cache[0].offset == len(decider.prefix)  # the shared prefix is left as it was
    assert all(r["batch_size"] == 6 and "gen_time_s" not in r for r in batched)
    assert len({r["tokens"] for r in batched}) > 1  # rows ended at different steps


@pytest.mark.slow
def test_the_task_scorer_scores_the_weights_in_training_as_the_one_at_a_time_benchmark(float32_base, trained, tmp_path):
    """The scorer that picks the adapter during training runs the benchmark's batched pass on the LoRA model as
    it is (not fused): its figures are those of the same cases decided one at a time."""
    from types import SimpleNamespace

    from tests.training_runs import load_with_adapter
    from tooltrain import paths, workspace
    from tooltrain.eval.benchmark import score_cases, summarize
    from tooltrain.eval.checkpoints import task_scorer
    from tooltrain.eval.decoding import Decider, context_messages

    model, tokenizer = load_with_adapter(float32_base, trained)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join((ROOT / "data" / "eval" / "unseen_repos.jsonl").read_text().splitlines(True)[:12]))
    args = SimpleNamespace(task_eval=str(cases), task_repos_root=str(paths.EVAL_REPOS_ROOT), task_from=2)
    scorer = task_scorer(args, model, tokenizer, skip={4})
    assert scorer(1) is None and scorer(4) is None  # before task_from; the trainer's next-to-last validation
    scored = scorer(5)
    context = context_messages(workspace.render_map(workspace.scan_roots([paths.EVAL_REPOS_ROOT])))
    records, skipped = score_cases(Decider(model, tokenizer, context), load_cases(cases), (paths.EVAL_REPOS_ROOT,))
    alone = summarize(records, skipped)
    assert scored == {key: alone.get(key) for key in scored} and scored["cases"] == len(records) > 0
