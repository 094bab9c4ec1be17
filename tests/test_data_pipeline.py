"""End to end over fixture repositories: the real stage scripts, exact counts, verified tools, splits, reruns."""

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixture_repos import SYNTAX_ERRORS, make_repos
from tooltrain import tools, workspace
from tooltrain.tools import question_of
from tooltrain.data.generate import real_arguments
from tooltrain.io import read_jsonl
from tooltrain.data.split import group_keys

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {
    "repos_examples": {"grep": 24, "read": 8, "direct": 10},
    "phase5_examples": {"grep": 10, "read": 5, "direct": 5},
    "html_examples": {"grep": 4, "read": 3, "direct": 3},
}


def run_script(name: str, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"scripts.{name}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_all(repos_root: Path, manifest: Path, data: Path, seed: int = 7) -> None:
    common = ["--repos-root", repos_root, "--manifest", manifest, "--seed", seed]
    c = COUNTS["repos_examples"]
    run_script("generate_repo_examples", *common, "--out", data / "repos_examples", "--grep", c["grep"],
               "--read", c["read"], "--direct", c["direct"], "--curated-direct", 4)
    c = COUNTS["phase5_examples"]
    run_script("generate_phase5_data", *common, "--examples-out", data / "phase5_examples",
               "--out", data / "phase5_format", "--grep", c["grep"], "--read", c["read"], "--direct", c["direct"],
               "--curated-direct", 2, "--valid", 4)
    c = COUNTS["html_examples"]
    run_script("generate_html_examples", *common, "--out", data / "html_examples", "--grep", c["grep"],
               "--read", c["read"], "--direct", c["direct"])
    run_script("merge_phase6_data", "--data-dir", data, "--valid", 10, "--seed", seed)
    run_script("merge_phase7_data", "--data-dir", data, "--valid", 11, "--seed", seed)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    manifest = make_repos(work / "repos")
    build_all(work / "repos", manifest, work / "data")
    return work


def examples(work: Path, stage: str) -> list[dict]:
    return read_jsonl(work / "data" / stage / "training_examples.jsonl")


@pytest.mark.parametrize("stage", sorted(COUNTS))
def test_exact_counts_per_label(built, stage):
    rows = examples(built, stage)
    got = {label: sum(r["label"] == label for r in rows) for label in ("grep", "read", "direct")}
    assert got == COUNTS[stage]


@pytest.mark.parametrize("stage", sorted(COUNTS))
def test_every_tool_call_is_real(built, stage):
    for row in examples(built, stage):
        message = row["messages"][-1]
        assert list(row) == ["id", "label", "domain", "source", "messages", "tools"]
        if row["label"] == "direct":
            assert "tool_calls" not in message and len(message["content"]) > 20
            continue
        call = message["tool_calls"][0]["function"]
        assert isinstance(call["arguments"], dict)
        shown = call["arguments"]["path"]
        assert workspace_folders(row)[shown.split("/")[0]]  # the path starts with a folder the map shows
        arguments = real_arguments(row, built / "repos")  # the call as run on the real tree
        if call["name"] == "read":
            assert tools.read(built / "repos", arguments["path"]) and arguments["path"] == row["source"]["path"]
        else:
            hits = tools.grep(built / "repos", **arguments)
            assert (row["source"]["path"], row["source"]["line"]) in {(h.path, h.line) for h in hits}


def workspace_folders(row: dict) -> dict[str, str]:
    """The folders the row's workspace map shows, each with its map line."""
    lines = row["messages"][1]["content"].splitlines()
    assert row["messages"][1]["role"] == "system" and lines[0] == workspace.HEADER
    return {line[2:].split("/:", 1)[0]: line for line in lines[1:]}


def test_no_duplicate_questions_anywhere(built):
    questions = [question_of(r) for stage in COUNTS for r in examples(built, stage)]
    assert len(questions) == len(set(questions))


def test_broken_files_are_skipped_and_counted(built):
    manifest = json.loads((built / "data" / "repos_examples" / "manifest.json").read_text())
    assert manifest["python_files"]["skipped"] == {"binary": 1, "not_utf8": 1, "syntax_error": SYNTAX_ERRORS}


def split_ids(work: Path, folder: str) -> dict:
    return json.loads((work / "data" / folder / "split.json").read_text())


def test_split_sizes_and_side_preservation(built):
    p5, p6, p7 = (split_ids(built, f"phase{n}_format") for n in (5, 6, 7))
    assert (len(p5["train"]), len(p5["valid"])) == (16, 4)
    assert (len(p6["train"]), len(p6["valid"])) == (52, 10)
    assert (len(p7["train"]), len(p7["valid"])) == (61, 11)
    assert set(p5["train"]) <= set(p6["train"]) and set(p5["valid"]) <= set(p6["valid"])
    assert set(p6["train"]) <= set(p7["train"]) and set(p6["valid"]) <= set(p7["valid"])
    html_ids = {r["id"] for r in examples(built, "html_examples")}
    assert len(html_ids & set(p7["valid"])) == 1
    for n in (5, 6, 7):
        data = built / "data" / f"phase{n}_format"
        assert len(read_jsonl(data / "train.jsonl")) == len(split_ids(built, f"phase{n}_format")["train"])
        assert all(set(row) == {"messages", "tools"} for row in read_jsonl(data / "valid.jsonl"))


def test_groups_never_straddle_the_split(built):
    by_id = {r["id"]: r for stage in COUNTS for r in examples(built, stage)}
    p7 = split_ids(built, "phase7_format")
    train_keys = {k for i in p7["train"] for k in group_keys(by_id[i])}
    valid_keys = {k for i in p7["valid"] for k in group_keys(by_id[i])}
    assert not train_keys & valid_keys


def test_same_seed_gives_byte_identical_files(built, tmp_path):
    manifest = make_repos(tmp_path / "repos")
    build_all(tmp_path / "repos", manifest, tmp_path / "data")
    for first in sorted((built / "data").rglob("*")):
        if first.is_file():
            second = tmp_path / "data" / first.relative_to(built / "data")
            assert filecmp.cmp(first, second, shallow=False), first.name


def test_another_seed_gives_other_rows_and_other_splits(built, tmp_path):
    build_all(built / "repos", built / "repos" / "repos.toml", tmp_path / "data", seed=8)
    for stage in COUNTS:
        assert examples(built, stage) != examples(tmp_path, stage), stage
    # the same rows split with another seed: the merges' own randomness
    again = tmp_path / "again"
    for folder in ("repos_examples", "html_examples", "phase5_examples", "phase5_format"):
        shutil.copytree(built / "data" / folder, again / folder)
    run_script("merge_phase6_data", "--data-dir", again, "--valid", 10, "--seed", 8)
    run_script("merge_phase7_data", "--data-dir", again, "--valid", 11, "--seed", 8)
    for folder in ("phase6_format", "phase7_format"):
        assert json.loads((again / folder / "split.json").read_text()) != split_ids(built, folder), folder


def test_asking_for_too_many_says_what_is_available(built, tmp_path):
    proc = run_script("generate_repo_examples", "--repos-root", built / "repos", "--manifest",
                      built / "repos" / "repos.toml", "--out", tmp_path, "--grep", 5000, check=False)
    assert proc.returncode == 1
    assert "grep: asked 5000, available" in proc.stderr
    assert not (tmp_path / "training_examples.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["--grep", "-5"], "argument --grep: must be 0 or more, not -5"),
    (["--per-file-cap", "0"], "argument --per-file-cap: must be 1 or more, not 0"),
    (["--direct", "10", "--curated-direct", "20"], "--curated-direct 20 is more than --direct 10"),
])
def test_counts_that_make_no_sense_are_refused_before_anything_is_written(args, message, tmp_path):
    manifest = make_repos(tmp_path / "repos")
    proc = run_script("generate_repo_examples", "--repos-root", tmp_path / "repos", "--manifest", manifest,
                      "--out", tmp_path / "out", *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_merge_input_names_file_and_line(built, tmp_path):
    data = tmp_path / "data"
    for folder in ("phase5_examples", "phase5_format", "repos_examples"):
        (data / folder).mkdir(parents=True)
        for file in (built / "data" / folder).iterdir():
            (data / folder / file.name).write_bytes(file.read_bytes())
    broken = data / "repos_examples" / "training_examples.jsonl"
    lines = broken.read_text().splitlines()
    lines[2] = lines[2][:40]
    broken.write_text("\n".join(lines) + "\n")
    proc = run_script("merge_phase6_data", "--data-dir", data, "--valid", 10, check=False)
    assert proc.returncode == 1
    assert f"{broken}:3: not valid JSON" in proc.stderr
    assert not (data / "phase6_format").exists()


def test_missing_repos_is_a_clear_error(tmp_path):
    manifest = make_repos(tmp_path / "repos")
    proc = run_script("generate_repo_examples", "--repos-root", tmp_path / "elsewhere", "--manifest", manifest,
                      "--out", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "repositories not found" in proc.stderr and "gadgets" in proc.stderr
