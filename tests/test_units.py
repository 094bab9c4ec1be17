"""Small units of the data pipeline: extraction, tools confinement, docstrings, splits, atomic writes."""

import random

import pytest

from tests.fixture_repos import SYNTAX_ERRORS, make_repos
from tooltrain import tools
from tooltrain.data.docstrings import clean_docstring
from tooltrain.data.extract import extract_repos
from tooltrain.io import MalformedJSONL, read_jsonl, write_jsonl
from tooltrain.data.split import SplitError, grouped_split


@pytest.fixture
def repos(tmp_path):
    make_repos(tmp_path)
    return tmp_path


def test_extraction_finds_symbols_and_counts_skips(repos):
    (repos / "gadgets" / "huge.py").write_text("x = 1\n" * 200_000)
    result = extract_repos(repos, ["gadgets"], workers=1)
    assert result.scanned == 16
    assert dict(result.skipped) == {"binary": 1, "not_utf8": 1, "syntax_error": SYNTAX_ERRORS, "huge": 1}
    facts = next(f for f in result.files if f.path == "gadgets/src/gadgets/hinge.py")
    kinds = {(s.kind, s.name) for s in facts.symbols}
    assert {("class", "HingePart"), ("method", "assemble_hinge"), ("async_function", "fetch_hinge_parts"),
            ("function", "build_hinge_report")} <= kinds
    part = next(s for s in facts.symbols if s.name == "HingePart")
    assert part.bases == ("HingeBase",) and part.qualname == "gadgets.hinge.HingePart"
    assemble = next(s for s in facts.symbols if s.name == "assemble_hinge")
    assert assemble.owner == "HingePart" and assemble.decorators[0][0] == "register_hinge"
    assert ("HingeError", 34) in facts.raises and ("gadgets.core", 6) in facts.imports
    assert facts.strings == [("No pieces were given for assembly of hinge", 34)]


def test_parallel_extraction_matches_serial(repos):
    serial = extract_repos(repos, ["gadgets", "bolts"], workers=1)
    parallel = extract_repos(repos, ["gadgets", "bolts"], workers=2)
    assert serial.files == parallel.files


def test_grep_finds_lines_and_read_opens_files(repos):
    hits = tools.grep(repos, r"class HingePart\b", "gadgets")
    assert [(h.path, h.line) for h in hits] == [("gadgets/src/gadgets/hinge.py", 28)]
    assert tools.read(repos, "gadgets/README.md").startswith("# gadgets")


@pytest.mark.parametrize("path", ["/etc/passwd", "../secret", "gadgets/../../x", "~/x", "", "gadgets/a\x00b",
                                  "gadgets/" + "x" * 5000])
def test_paths_outside_the_root_are_refused(repos, path):
    with pytest.raises(tools.ToolError):
        tools.read(repos, path)
    with pytest.raises(tools.ToolError):
        tools.grep(repos, "x", path)


def test_symlink_escape_is_refused(repos, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("password = hunter2\n")
    (repos / "gadgets" / "link.txt").symlink_to(outside / "secret.txt")
    (repos / "gadgets" / "linkdir").symlink_to(outside)
    with pytest.raises(tools.ToolError, match="leaves the repos root"):
        tools.read(repos, "gadgets/link.txt")
    with pytest.raises(tools.ToolError, match="leaves the repos root"):
        tools.grep(repos, "password", "gadgets/linkdir")
    assert tools.grep(repos, "hunter2", "gadgets") == []


def test_catastrophic_regex_is_stopped(repos):
    (repos / "gadgets" / "evil.txt").write_text("a" * 40 + "!\n")
    with pytest.raises(tools.ToolError, match="longer than"):
        tools.grep(repos, r"(a|aa)+$", "gadgets/evil.txt", timeout=0.2)


def test_invalid_regex_is_a_tool_error(repos):
    with pytest.raises(tools.ToolError, match="invalid regular expression"):
        tools.grep(repos, "class (", "gadgets")


def test_docstring_cleaning():
    doc = """Represents a :class:`~flask.Blueprint`, a ``collection`` of routes registered on an app later.

    :param name: the name.
    """
    assert clean_docstring(doc) == "Represents a Blueprint, a `collection` of routes registered on an app later."
    assert clean_docstring(">>> run()\nSomething that is long enough to count as prose here.") is None
    assert clean_docstring("Too short.") is None


def rows_for_split(n_groups: int, size: int) -> list[dict]:
    return [{"id": f"r{g}-{k}", "label": "grep" if g % 2 else "read",
             "source": {"repo": "x", "path": f"x/f{g}.py", "symbol": f"s{g}", "line": k},
             "messages": [{"role": "user", "content": f"question {g} {k} {'z' * g}"}]}
            for g in range(n_groups) for k in range(size)]


def test_grouped_split_is_exact_and_keeps_groups_whole():
    rows = rows_for_split(30, 2)
    train, valid = grouped_split(rows, 12, random.Random(0))
    assert len(valid) == 12 and len(train) == 48
    assert not {r["source"]["path"] for r in train} & {r["source"]["path"] for r in valid}


def test_grouped_split_keeps_fixed_sides_and_fails_clearly():
    rows = rows_for_split(10, 2)
    fixed = {0: "valid", 1: "valid", 2: "train"}
    train, valid = grouped_split(rows, 6, random.Random(1), fixed)
    assert {"r0-0", "r0-1"} <= {r["id"] for r in valid} and "r1-0" in {r["id"] for r in train}
    with pytest.raises(SplitError, match="exactly 5"):
        grouped_split(rows, 5, random.Random(0))
    with pytest.raises(SplitError, match="both sides"):
        grouped_split(rows, 6, random.Random(0), {0: "valid", 1: "train"})


def test_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(target, rows())
    assert read_jsonl(target) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(MalformedJSONL, match="bad.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_wilson_interval_and_exact_mcnemar():
    from tooltrain.stats import mcnemar, wilson

    low, high = wilson(124, 192)  # 64.6% of 192
    assert (round(low, 3), round(high, 3)) == (0.576, 0.71)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) is None
    # 8 cases only the first got right, 2 only the second: exact two-sided p = 2 * P(X <= 2 | n=10, 1/2)
    first = [True] * 8 + [False] * 2 + [True] * 5
    second = [False] * 8 + [True] * 2 + [True] * 5
    result = mcnemar(first, second)
    assert (result["only_first"], result["only_second"]) == (8, 2)
    assert abs(result["p"] - 2 * (1 + 10 + 45) / 1024) < 1e-12
    assert mcnemar([True, False], [True, False])["p"] == 1.0
    with pytest.raises(ValueError, match="same cases"):
        mcnemar([True], [True, False])


def test_the_seeds_table_groups_phases_and_compares_them_seed_by_seed():
    from tooltrain.eval.seeds import format_seed_rows, seed_model_name, seed_rows

    scores = {(5, 0): 0.50, (5, 1): 0.60, (6, 0): 0.70, (6, 1): 0.65, (7, 0): 0.72, (7, 2): 0.80}
    per_model = {seed_model_name(p, s): {"success": v} for (p, s), v in scores.items()}
    per_model["phase7"] = {"success": 0.99}  # not a seed run: left out
    rows = seed_rows({"results": {"unseen_repos": per_model}})
    assert [(r["phase"], r["seeds"]) for r in rows] == [(5, [0, 1]), (6, [0, 1]), (7, [0, 2])]
    five, six, seven = rows
    assert abs(five["mean"] - 0.55) < 1e-12 and abs(five["sd"] - 0.0707107) < 1e-6 and five["change_from_previous"] is None
    assert [round(c, 2) for c in six["changes_by_seed"]] == [0.2, 0.05]  # seed 0: +20 points, seed 1: +5
    assert [round(c, 2) for c in seven["changes_by_seed"]] == [0.02]  # only seed 0 has both phases
    table = format_seed_rows(rows)
    assert "55.0 ± 7.1" in table and "+12.5 (+20.0, +5.0)" in table


def test_make_seeds_reuses_the_main_runs_seed_and_trains_the_others_apart():
    import subprocess

    from tooltrain.paths import PROJECT_ROOT

    out = subprocess.run(["make", "-n", "seeds", "SEEDS=0 3", "SEED=0", "TOOLTRAIN_RUN=dry"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    assert "--seed 3 --adapter-path data/seeds/phase6-seed3" in out and "data/seeds/phase6-seed0" not in out
    assert "phase7-seed0=data/models/smollm2-135m-instruct:adapters_phase7" in out
    assert "phase5-seed3=data/models/smollm2-135m-instruct:data/seeds/phase5-seed3" in out
    assert "scripts.seeds_report data/seeds/benchmark-seeds0-3.json" in out
