"""The project's two held-out eval sets: format, balance, and every check verified against the real trees.

- data/eval/unseen_repos.jsonl (role "eval", data/eval_repos/): the set choices are tuned on;
- data/eval/holdout_repos.jsonl (role "holdout", data/holdout_repos/): the final-report set, written
  without looking at the generator's question shapes; no choice is made on it.

Neither set's repositories are training sources. The repo-backed test is slow: it reads the project's
trees of a set when they are at their pins, else fetches the pinned releases into a temp folder (the clone
script, package index only), then greps and reads every case with the project's own confined tools.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import regex

from tooltrain import paths, tools
from tooltrain.data import repos
from tooltrain.io import read_jsonl

ROOT = paths.PROJECT_ROOT
# (eval file, manifest role of its repositories, where they are fetched, id prefix)
SETS = {
    "unseen_repos": (ROOT / "data" / "eval" / "unseen_repos.jsonl", "eval", paths.EVAL_REPOS_ROOT, "u"),
    "holdout_repos": (ROOT / "data" / "eval" / "holdout_repos.jsonl", "holdout", paths.HOLDOUT_REPOS_ROOT, "h"),
}
LABELS = tools.LABELS
KEYS = {"id", "question", "repo", "expected", "check", "tags"}
CHECK_KEYS = {"grep": {"must_find", "in_file"}, "read": {"path"}, "direct": set()}
DIRECT_KINDS = {"names-repo", "general", "off-topic"}


@pytest.fixture(scope="module", params=sorted(SETS))
def eval_set(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def cases(eval_set) -> list[dict]:
    return read_jsonl(SETS[eval_set][0])


@pytest.fixture(scope="module")
def eval_specs(eval_set) -> dict[str, repos.RepoSpec]:
    role = SETS[eval_set][1]
    return {spec.name: spec for spec in repos.select(repos.load_manifest(paths.REPO_MANIFEST), role=role)}


def test_format(cases, eval_specs, eval_set):
    assert cases, f"{SETS[eval_set][0]} is empty"
    ids = [case.get("id") for case in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    questions = [str(case.get("question", "")).strip().lower() for case in cases]
    assert len(questions) == len(set(questions)), [q for q, n in Counter(questions).items() if n > 1]
    for case in cases:
        where = case.get("id")
        assert set(case) == KEYS, f"{where}: keys {sorted(case)}"
        assert re.fullmatch(rf"{SETS[eval_set][3]}\d{{3}}", case["id"]), where
        assert isinstance(case["question"], str) and case["question"].strip() == case["question"] != "", where
        label = case["expected"]
        assert label in LABELS, f"{where}: expected {label!r}"
        assert isinstance(case["check"], dict) and set(case["check"]) == CHECK_KEYS[label], f"{where}: check"
        assert all(isinstance(v, str) and v for v in case["check"].values()), f"{where}: check values"
        tags = case["tags"]
        assert isinstance(tags, list) and all(isinstance(t, str) for t in tags) and tags[0] == label, where
        repo = case["repo"]
        assert repo is None or repo in eval_specs, f"{where}: repo {repo!r} is not an eval repo"
        if label in ("grep", "read"):
            assert repo is not None, f"{where}: a {label} case names its repo"
            target = case["check"]["in_file" if label == "grep" else "path"]
            assert target.startswith(f"{repo}/") and ".." not in Path(target).parts, f"{where}: {target}"
            assert "\n" not in case["check"].get("must_find", ""), f"{where}: must_find spans lines"
        else:
            kind = tags[1]
            assert kind in DIRECT_KINDS, f"{where}: direct kind {kind!r}"
            assert (repo is not None) == (kind == "names-repo"), f"{where}: repo vs {kind}"
            if repo:  # a conceptual question that names the library ("Jinja" names jinja2)
                assert repo.rstrip("0123456789") in case["question"].lower(), f"{where}: does not name {repo}"


def test_counts_and_spread(cases, eval_specs):
    per_label = Counter(case["expected"] for case in cases)
    assert len(cases) >= 150, per_label
    assert all(per_label[label] >= 50 for label in LABELS), per_label
    for label in ("grep", "read"):
        per_repo = Counter(case["repo"] for case in cases if case["expected"] == label)
        assert set(per_repo) == set(eval_specs), f"{label}: {per_repo}"
        assert min(per_repo.values()) >= 10, f"{label}: {per_repo}"
    kinds = Counter(case["tags"][1] for case in cases if case["expected"] == "direct")
    assert kinds["names-repo"] >= 25 and kinds["general"] >= 10 and kinds["off-topic"] >= 10, kinds
    named = {case["repo"] for case in cases if case["expected"] == "direct" and case["repo"]}
    assert named == set(eval_specs), named
    # Off-topic requests that sound like searches ("Find ...", "Look up ...") are in the set on purpose.
    search_like = [case for case in cases if case["tags"][1:2] == ["off-topic"]
                   and re.match(r"(find|search|look up|show me)\b", case["question"], re.I)]
    assert len(search_like) >= 4, len(search_like)


def test_eval_repos_are_never_training_sources(cases, eval_specs, eval_set):
    specs = repos.load_manifest(paths.REPO_MANIFEST)
    training = {spec.name for spec in specs if spec.role in ("train", "phase5")}
    assert eval_specs, f"configs/repos.toml has no role = {SETS[eval_set][1]!r} repositories"
    asked = {case["repo"] for case in cases if case["repo"]}
    assert asked <= set(eval_specs), asked - set(eval_specs)
    assert not (asked & training), asked & training


def _training_questions() -> set[str]:
    """User questions of every training example file present, plus the curated question lists."""
    questions = set()
    for path in sorted(paths.DATA.glob(f"*/{paths.EXAMPLES_FILE}")):
        for row in read_jsonl(path):
            for message in row.get("messages", []):
                if message.get("role") == "user" and isinstance(message.get("content"), str):
                    questions.add(message["content"].strip().lower())
    for path in sorted((ROOT / "tooltrain" / "resources").glob("*.jsonl")):
        questions.update(str(row.get("question", "")).strip().lower() for row in read_jsonl(path))
    return questions


def test_no_eval_question_is_a_training_question(cases):
    training = _training_questions()
    leaked = [case["id"] for case in cases if case["question"].strip().lower() in training]
    assert not leaked, f"eval questions also in the training data: {leaked}"


def test_the_two_sets_ask_about_different_repositories():
    specs = repos.load_manifest(paths.REPO_MANIFEST)
    tuning, holdout = ({s.name for s in specs if s.role == SETS[name][1]} for name in ("unseen_repos", "holdout_repos"))
    assert tuning and holdout and not tuning & holdout


@pytest.fixture(scope="module")
def repos_root(eval_specs, eval_set, tmp_path_factory) -> Path:
    """The set's repos at their pins: the project's own trees when they are (only read), else the pinned
    releases fetched by the clone script from the package index into a temp folder (no git host)."""
    _, role, root, _ = SETS[eval_set]
    if all(repos.at_pin(spec, root) for spec in eval_specs.values()):
        return root
    root, downloads = tmp_path_factory.mktemp(f"{eval_set}_repos"), tmp_path_factory.mktemp("downloads")
    proc = subprocess.run([sys.executable, "-m", "scripts.clone_popular_repos", "--role", role, "--index-only",
                           "--repos-root", str(root), "--download-dir", str(downloads)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"fetching the eval repos failed:\n{proc.stdout}\n{proc.stderr}"
    missing = [name for name, spec in eval_specs.items() if repos.at_pin(spec, root) is None]
    assert not missing, f"eval repos not at their pins: {missing}"
    return root


@pytest.mark.slow
def test_every_check_holds_in_the_real_repos(cases, repos_root):
    problems = []
    for case in cases:
        where, check = case["id"], case["check"]
        try:
            if case["expected"] == "grep":
                must_find, in_file = check["must_find"], check["in_file"]
                text = tools.read(repos_root, in_file)
                if not any(must_find in line for line in text.splitlines()):
                    problems.append(f"{where}: {must_find!r} is not on any line of {in_file}")
                    continue
                # The grep tool, searching the whole repo for the literal, reaches that file.
                hits = tools.grep(repos_root, regex.escape(must_find), case["repo"])
                if not any(hit.path == in_file and must_find in hit.text for hit in hits):
                    problems.append(f"{where}: grep over {case['repo']} misses {must_find!r} in {in_file}")
            elif case["expected"] == "read":
                if not tools.read(repos_root, check["path"]).strip():
                    problems.append(f"{where}: {check['path']} is empty")
        except tools.ToolError as err:
            problems.append(f"{where}: {err}")
    assert not problems, "\n".join(problems)

