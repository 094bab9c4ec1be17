"""`ask`: the workspace's confined tool runs, bad input, and the real script on a fixture repository."""

import json
import re
import subprocess
import sys

import pytest

from tests.fixture_repos import make_repos
from tests.training_runs import ROOT
from tooltrain.eval.ask import AskError, Workspace, check_question
from tooltrain.eval.guided import workspace_paths


@pytest.fixture
def repos(tmp_path):
    make_repos(tmp_path / "repos")
    return tmp_path / "repos"


def test_calls_run_inside_the_named_folder_only(repos, tmp_path):
    ws = Workspace([repos / "gadgets"])
    assert ws.map_text().splitlines()[1] == "- gadgets/: gadgets/src/gadgets/ README.md"
    grep = ws.run({"name": "grep", "arguments": {"pattern": r"class HingePart\b", "path": "gadgets"}})
    assert grep["total"] == 1 and grep["hits"][0] == {"path": "gadgets/src/gadgets/hinge.py", "line": 28,
                                                      "text": "class HingePart(HingeBase):"}
    read = ws.run({"name": "read", "arguments": {"path": "gadgets/README.md"}})
    assert read["path"] == "gadgets/README.md" and read["head"][0] == "# gadgets" and read["bytes"] > 0
    (tmp_path / "secret.txt").write_text("password\n")
    (repos / "gadgets" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    for call, message in [
        ({"name": "read", "arguments": {"path": "bolts/README.md"}}, "must start with a workspace folder"),
        ({"name": "read", "arguments": {"path": "gadgets/../bolts/README.md"}}, "'..' is not allowed"),
        ({"name": "read", "arguments": {"path": "gadgets/escape.txt"}}, "leaves the repos root"),
        ({"name": "grep", "arguments": {"pattern": "(", "path": "gadgets"}}, "invalid regular expression"),
        ({"name": "shell", "arguments": {"path": "gadgets"}}, "no such tool"),
        (None, "could not be read"),
    ]:
        assert message in ws.run(call)["error"]


def test_bad_folders_and_questions_are_refused_clearly(repos, tmp_path):
    with pytest.raises(AskError, match="no such folder"):
        Workspace([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blob.bin").write_bytes(b"\x00\x01")
    with pytest.raises(AskError, match="holds no text files"):
        Workspace([tmp_path / "empty"])
    with pytest.raises(AskError, match="too long"):
        check_question("x" * 10_240)
    with pytest.raises(AskError, match="not UTF-8"):
        check_question(b"where \xff\xfe is it".decode("utf-8", "surrogateescape"))
    with pytest.raises(AskError, match="empty"):
        check_question("   ")


def run_ask(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "scripts.ask", *map(str, args)], cwd=ROOT, input=stdin,
                          capture_output=True, timeout=900)


@pytest.mark.slow
def test_ask_one_shot_json_and_interactive_on_the_real_model(float32_base, trained, repos):
    common = [repos / "gadgets", "--model", float32_base, "--adapter", trained, "--max-tokens", "48"]
    one = run_ask(*common, "-q", "Where is the HingePart class defined in gadgets?")
    assert one.returncode == 0, one.stderr.decode()[-2000:]
    assert one.stdout.decode().strip().splitlines()[-1].startswith("[decided in ")
    shot = run_ask(*common, "--json", "-q", "What is a decorator?")
    assert shot.returncode == 0, shot.stderr.decode()[-2000:]
    record = json.loads(shot.stdout)
    assert set(record) == {"question", "decision", "call", "raw", "result", "timings", "first_raw", "resolved_from"}
    assert record["first_raw"] is record["resolved_from"] is None  # only guided calls that were retried or resolved
    assert record["decision"] in ("grep", "read", "direct", "invalid")
    assert (record["result"] is None) == (record["decision"] == "direct")
    lines = b"Open gadgets/README.md.\n\xff\xfe binary\n" + b"x" * 10_240 + b"\nWhat is a closure?\n"
    loop = run_ask(*common, "--json", stdin=lines)
    assert loop.returncode == 0, loop.stderr.decode()[-2000:]
    records = [json.loads(line) for line in loop.stdout.decode().splitlines()]
    assert [r["question"] for r in records] == ["Open gadgets/README.md.", "What is a closure?"]
    assert "not UTF-8" in loop.stderr.decode() and "too long" in loop.stderr.decode()
    assert records[1]["timings"]["total_s"] > 0
    guided = [json.loads(line) for line in run_ask(*common, "--json", "--guided", stdin=b"Open the README of gadgets.\n"
                                                   b"Show me the hinge module of gadgets.\n").stdout.splitlines()]
    real = workspace_paths({"gadgets": repos / "gadgets"})["grep"]
    assert len(guided) == 2
    for record in guided:  # every path a guided call writes is real, and a readable call runs without error
        assert set(re.findall(r'"path": "([^"]*)"', record["raw"])) <= real, record["raw"]
        if record["call"] is not None and record["decision"] == "read":
            assert "error" not in record["result"], record


@pytest.mark.slow
def test_ask_fails_in_one_line_on_a_missing_folder_or_adapter(float32_base, repos, tmp_path):
    missing = run_ask(tmp_path / "nowhere", "--model", float32_base, "-q", "hi")
    assert missing.returncode == 2 and missing.stderr.decode().strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
    no_adapter = run_ask(repos / "gadgets", "--model", float32_base, "--adapter", tmp_path / "no-adapter", "-q", "hi")
    assert no_adapter.returncode == 2
    assert no_adapter.stderr.decode().strip().splitlines()[-1].startswith("error: could not load the model: ")
