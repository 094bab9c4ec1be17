"""Bad input from a tree or a model never crashes a run: trees that are not plain files (a link loop, a FIFO
named x.py, a .py link to /dev/zero or out of the tree), paths a file system cannot hold, a regex slow over
many files, a flood of hits, an archive bomb. Everything is built in tmp_path."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.fixture_repos import make_repos
from tooltrain import tools, workspace
from tooltrain.data import repos
from tooltrain.eval.ask import Workspace
from tooltrain.data.extract import extract_repos
from tooltrain.eval.guided import folders_under, workspace_paths
from tooltrain.data.html_examples import html_files
from tooltrain.io import read_jsonl, write_jsonl
from tooltrain.eval.scoring import Case, check_call, read_output

ROOT = Path(__file__).resolve().parent.parent
SECRET = "The secret module outside the tree: its docstring must never become a training answer."


class Hung(Exception):
    """Not an OSError (TimeoutError is one), so no reader can take it for an unreadable file."""


@pytest.fixture(autouse=True)
def watchdog():
    """Fail instead of hanging: a reader blocked on a FIFO gets an exception after 30 s."""

    def expired(signum, frame):
        raise Hung("still running after 30 s (blocked on a FIFO or reading a device?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, 30)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def hostile(tmp_path):
    """The fixture repositories plus, in gadgets, every kind of entry that is not a plain file inside it."""
    root = tmp_path / "repos"
    make_repos(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f'"""{SECRET}"""\n\nPASSWORD = "hunter2"\n')
    (outside / "notes.html").write_text("<form>outside</form>\n")
    (outside / "CHANGES.rst").write_text("outside changelog\n")
    gadgets = root / "gadgets"
    (gadgets / "loop_a.py").symlink_to("loop_b.py")  # a link loop
    (gadgets / "loop_b.py").symlink_to("loop_a.py")
    (gadgets / "src" / "cycle").symlink_to("..")  # a folder loop
    os.mkfifo(gadgets / "pipe.py")  # reading it waits for a writer forever
    os.mkfifo(gadgets / "templates" / "pipe.html")
    (gadgets / "zero.py").symlink_to("/dev/zero")  # reading it never ends
    (gadgets / "templates" / "zero.html").symlink_to("/dev/zero")
    (gadgets / "secret.py").symlink_to(outside / "secret.py")  # parsed, its docstring could become an answer
    (gadgets / "templates" / "notes.html").symlink_to(outside / "notes.html")
    (gadgets / "CHANGES.rst").symlink_to(outside / "CHANGES.rst")  # the map would show it
    (gadgets / "HISTORY.md").symlink_to("README.md")  # a link inside the tree is an ordinary file
    return root


# ----------------------------------------------------------------------------------- every reader


def test_extraction_skips_and_counts_what_is_not_a_plain_file_inside_the_tree(hostile):
    result = extract_repos(hostile, ["gadgets"], workers=1)
    assert dict(result.skipped) == {"binary": 1, "not_utf8": 1, "syntax_error": 2,
                                    "not_a_file": 3, "outside_root": 2}  # loop_a, loop_b, pipe; zero, secret
    assert result.scanned == len(result.files) + sum(result.skipped.values())
    docstrings = {f.docstring for f in result.files} | {s.docstring for f in result.files for s in f.symbols}
    assert SECRET not in docstrings and not any("cycle" in f.path for f in result.files)


def test_generation_runs_on_the_hostile_tree_and_its_manifest_counts_the_skips(hostile, tmp_path):
    out = tmp_path / "examples"
    args = ["--repos-root", hostile, "--manifest", hostile / "repos.toml", "--out", out, "--grep", 12, "--read", 4,
            "--direct", 4, "--curated-direct", 2]
    done = subprocess.run([sys.executable, "-m", "scripts.generate_repo_examples", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    skipped = json.loads((out / "manifest.json").read_text())["python_files"]["skipped"]
    assert skipped["not_a_file"] == 3 and skipped["outside_root"] == 2
    assert SECRET not in (out / "training_examples.jsonl").read_text()


def test_grep_and_read_run_over_the_hostile_tree(hostile):
    hits = tools.grep(hostile, r"class HingePart\b|hunter2|PASSWORD", "gadgets")
    assert [(h.path, h.line) for h in hits] == [("gadgets/src/gadgets/hinge.py", 28)]
    assert tools.grep(hostile, "x", "gadgets/pipe.py") == []  # a FIFO is no file to search
    assert tools.read(hostile, "gadgets/HISTORY.md") == tools.read(hostile, "gadgets/README.md")
    with pytest.raises(tools.ToolError, match=r"^not a file: 'gadgets/pipe.py'$"):
        tools.read(hostile, "gadgets/pipe.py")
    for path in ("gadgets/zero.py", "gadgets/secret.py"):
        with pytest.raises(tools.ToolError, match=f"^path leaves the repos root: '{path}'$"):
            tools.read(hostile, path)
    with pytest.raises(tools.ToolError, match="^unusable path 'gadgets/loop_a.py': RuntimeError"):
        tools.read(hostile, "gadgets/loop_a.py")


def test_the_bounded_read_never_blocks_nor_reads_past_the_limit(hostile):
    gadgets = hostile / "gadgets"
    for name, reason in [("pipe.py", "not_a_file"), ("loop_a.py", "not_a_file"), ("zero.py", "outside_root"),
                         ("secret.py", "outside_root")]:
        with pytest.raises(tools.Refused) as refused:
            tools.read_bytes(gadgets / name, gadgets)
        assert refused.value.reason == reason, name
    (gadgets / "big.txt").write_bytes(b"x" * (tools.MAX_FILE_BYTES + 1))
    with pytest.raises(tools.Refused, match="larger than"):
        tools.read_bytes(gadgets / "big.txt", gadgets)


def test_html_guided_paths_ask_and_the_map_see_only_plain_files_inside_the_tree(hostile):
    pages = [f.path for f in html_files(hostile, ["gadgets"])]
    paths = workspace_paths(folders_under([hostile]))
    ask = Workspace([hostile / "gadgets"])
    result = ask.run({"name": "grep", "arguments": {"pattern": "<form", "path": "gadgets/templates"}})
    assert pages == [f"gadgets/templates/{n}.html" for n in ("detail", "edit", "index", "list", "login", "search")]
    assert result["total"] == 6 and not result["more"]
    bad = {"loop_a.py", "loop_b.py", "pipe.py", "zero.py", "secret.py", "CHANGES.rst", "pipe.html", "zero.html",
           "notes.html"}
    assert not {p for p in paths["grep"] if p.rsplit("/", 1)[-1] in bad or "/cycle" in p}
    assert "gadgets/HISTORY.md" in paths["read"]  # the same rule as the tools: a link inside the tree is read
    # The map shows the changelog only when the tools can read it: not the link out of the tree.
    assert workspace.scan_repo(hostile, "gadgets").files == ("README.md", "HISTORY.md")
    assert ask.map_text().splitlines()[1] == "- gadgets/: gadgets/src/gadgets/ README.md HISTORY.md"


def test_a_repository_folder_linked_from_outside_the_root_is_not_a_repository_of_it(hostile, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    make_repos(tmp_path / "elsewhere")
    (hostile / "linked").symlink_to(tmp_path / "elsewhere" / "bolts")
    assert workspace.repo_folders(hostile) == ["bolts", "gadgets"] == sorted(folders_under([hostile]))
    assert list(tools.text_files(hostile / "linked", hostile)) == []  # walked from the link: nothing inside
    with pytest.raises(tools.ToolError, match="leaves the repos root"):
        tools.grep(hostile, "x", "linked")


# ----------------------------------------------------------------------------------- model calls


NUL, LONG = "gadgets/a\x00b.py", "gadgets/" + "x" * 300 + ".py"  # 300 > NAME_MAX (255)


@pytest.mark.parametrize("path, message", [
    (NUL, r"^NUL byte in path: 'gadgets/a\\x00b.py'$"),
    (LONG, r"^unusable path 'gadgets/x+': OSError: \[Errno 36\] File name too long"),
])
def test_paths_a_file_system_cannot_hold_are_invalid_calls_in_tools_scoring_and_ask(hostile, tmp_path, path,
                                                                                    message):
    with pytest.raises(tools.ToolError, match=message):
        tools.read(hostile, path)
    with pytest.raises(tools.ToolError, match=message):
        tools.grep(hostile, "x", path)
    # The benchmark's path: the model's raw text, read, checked for real, and recorded.
    records = []
    for case in (Case("g", "where?", "gadgets", "grep", {"must_find": "x", "in_file": "gadgets/x.py"}),
                 Case("r", "open it", "gadgets", "read", {"path": "gadgets/README.md"})):
        arguments = {"pattern": "x", "path": path} if case.expected == "grep" else {"path": path}
        raw = f"<tool_call>{json.dumps({'name': case.expected, 'arguments': arguments})}</tool_call>"
        reading = read_output(raw)
        valid, detail = check_call(case, reading, hostile)
        assert (reading.decision, valid) == (case.expected, False) and re.match(message, detail)
        records.append({"id": case.id, "tool_call": reading.tool_call, "valid": valid, "detail": detail})
    write_jsonl(tmp_path / "predictions.jsonl", records)
    assert [r["valid"] for r in read_jsonl(tmp_path / "predictions.jsonl")] == [False, False]
    # ask's path: the call is run inside the workspace folder and answered with the error.
    ask = Workspace([hostile / "gadgets"])
    for name in ("grep", "read"):
        assert ask.run({"name": name, "arguments": {"pattern": "x", "path": path}})["error"].startswith(
            ("NUL byte in path", "unusable path"))


def test_a_lone_surrogate_in_a_call_is_an_unreadable_call_that_is_still_recorded(hostile, tmp_path):
    raw = '<tool_call>{"name": "read", "arguments": {"path": "gadgets/\\udc80.py"}}</tool_call>'
    reading = read_output(raw)
    assert (reading.decision, reading.tool_call, reading.form) == ("read", None, "malformed")
    case = Case("r", "open it", "gadgets", "read", {"path": "gadgets/README.md"})
    assert check_call(case, reading, hostile) == (False, "tool call could not be read")
    write_jsonl(tmp_path / "predictions.jsonl", [{"id": "r", "tool_call": reading.tool_call, "raw": raw}])
    assert read_jsonl(tmp_path / "predictions.jsonl")[0]["raw"] == raw


@pytest.mark.parametrize("pattern", [None, 7, ["x"], "", "(a{1000}){1000}", "x{99999999999}", "(?P<", "\\"])
def test_every_pattern_a_model_can_write_is_an_invalid_call(hostile, pattern):
    started = time.monotonic()
    with pytest.raises(tools.ToolError, match="pattern must be|repeats too much|invalid regular expression"):
        tools.grep(hostile, pattern, "gadgets")
    case = Case("g", "where?", "gadgets", "grep", {"must_find": "x", "in_file": "gadgets/x.py"})
    reading = read_output(json.dumps({"name": "grep", "arguments": {"pattern": pattern, "path": "gadgets"}}))
    assert check_call(case, reading, hostile)[0] is False
    assert time.monotonic() - started < 1.0  # (a{1000}){1000} alone compiles for a second and takes 270 MB


# ----------------------------------------------------------------------------------- time and hit limits


def test_the_regex_time_limit_holds_for_the_whole_call_not_per_file(tmp_path):
    (tmp_path / "slow").mkdir()
    for i in range(40):  # each file takes the pattern ~0.1 s, far under the limit; together ~4 s
        (tmp_path / "slow" / f"f{i:02}.txt").write_text("a" * 25 + "!\n")
    started = time.monotonic()
    with pytest.raises(tools.ToolError, match=r"^regular expression took longer than 0.3s: '\(a\|aa\)\+\$'$"):
        tools.grep(tmp_path, r"(a|aa)+$", "slow", timeout=0.3)
    assert time.monotonic() - started < 2.0


def test_grep_caps_its_hits_and_says_so(hostile):
    (hostile / "gadgets" / "many.txt").write_text("needle\n" * 1500 + "needle")
    hits = tools.grep(hostile, "needle", "gadgets")
    assert (len(hits), hits.capped, hits[-1].line) == (tools.MAX_HITS, True, tools.MAX_HITS)
    exact = tools.grep(hostile, "needle", "gadgets", max_hits=1501)
    assert (len(exact), exact.capped) == (1501, False)
    assert tools.grep(hostile, "needle", "gadgets", max_hits=1500).capped
    # The callers read the cap from the tool: ask says "1000+", the benchmark calls the pattern too broad.
    result = Workspace([hostile / "gadgets"]).run({"name": "grep", "arguments": {"pattern": "needle",
                                                                                 "path": "gadgets"}})
    assert (result["total"], result["more"], len(result["hits"])) == (tools.MAX_HITS, True, 20)
    case = Case("g", "where?", "gadgets", "grep", {"must_find": "needle", "in_file": "gadgets/many.txt"})
    reading = read_output(json.dumps({"name": "grep", "arguments": {"pattern": "needle", "path": "gadgets"}}))
    assert check_call(case, reading, hostile) == (False, "pattern too broad (more than 100 matching lines)")


# ----------------------------------------------------------------------------------- archive bombs


def clone_args(tmp_path: Path, dist: str, *extra: str) -> list[str]:
    manifest = tmp_path / "m.toml"
    manifest.write_text('[demo]\ngit = "file:///nonexistent/repo.git"\ntag = "v1.0"\npypi = "demo"\n'
                        f'version = "1.0"\nrole = "train"\ndist = "{dist}"\n')
    return ["--manifest", str(manifest), "--repos-root", str(tmp_path / "repos"),
            "--download-dir", str(tmp_path / "downloads"), *extra]


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("kind, dist", [("tar", "sdist"), ("zip", "wheel")])
@pytest.mark.parametrize("bomb", ["bytes", "files"])
def test_an_archive_bomb_is_refused_and_the_existing_tree_kept(tmp_path, capsys, monkeypatch, kind, dist, bomb):
    from scripts.clone_popular_repos import main

    # Caps scaled down so the bombs stay small and fast: 2 MB of zeros (a few kB packed) against 1 MB, or
    # 60 empty files against 50. The real caps are 200 MB and 50,000 files.
    monkeypatch.setattr(repos, "MAX_EXTRACTED_BYTES", 1_000_000)
    monkeypatch.setattr(repos, "MAX_MEMBERS", 50)
    top = "demo-1.0/" if kind == "tar" else ""
    good = {f"{top}demo/__init__.py": b"", f"{top}demo/core.py": b"def f():\n    return 1\n"}
    bad = ({f"{top}demo/{i}.txt": b"" for i in range(60)} if bomb == "files"
           else {f"{top}demo/big.txt": bytes(2_000_000)})
    name = "demo-1.0.tar.gz" if kind == "tar" else "demo-1.0-py3-none-any.whl"
    write = write_tar if kind == "tar" else write_zip
    archive = write(tmp_path / "downloads" / name, good)
    assert main(clone_args(tmp_path, dist)) == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "repos" / "demo").rglob("*.py")}

    write(archive, {**good, **bad})
    assert archive.stat().st_size < 20_000
    assert main(clone_args(tmp_path, dist, "--force")) == 1
    err = capsys.readouterr().err
    assert (f"error: demo: both routes failed: git clone failed (" in err and
            f"package index: {archive}: expands to more than 1,000,000 bytes or 50 files (reached at member "
            f"'{top}demo/{'48.txt' if bomb == 'files' else 'big.txt'}'); refused as an archive bomb" in err)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "repos" / "demo").rglob("*.py")}
    assert after == before and not list((tmp_path / "repos" / "demo").rglob("*.txt"))
    assert sorted(p.name for p in (tmp_path / "repos").iterdir()) == [".pins", "demo", "manifest.json"]
