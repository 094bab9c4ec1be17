"""The workspace map, the views training rows show repositories through, and the grep intents the map
made necessary (annotated constants, relative imports, decorators defined vs used, several names)."""

import random
from collections import Counter

import pytest

from tests.fixture_repos import make_repos
from tooltrain import workspace
from tooltrain.data.extract import extract_repos
from tooltrain.data.generate import (Candidate, Draw, RowOptions, Verifier, grep_candidates, identifier_words,
                                real_arguments, render)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    make_repos(root)
    return root


def test_the_map_shows_folders_packages_and_top_level_files(root):
    layouts = workspace.scan_roots([root])
    assert [layout.folder for layout in layouts] == ["bolts", "gadgets"]  # hidden folders and files are not repos
    gadgets = layouts[1]
    assert gadgets.packages == ("src/gadgets",) and gadgets.files == ("README.md",)  # pyproject.toml goes unsaid
    assert gadgets.line() == "- gadgets/: gadgets/src/gadgets/ README.md"
    (root / "bolts" / "CHANGES.rst").write_text("1.0\n")
    assert workspace.scan_repo(root, "bolts").line() == "- bolts/: bolts/src/bolts/ README.md CHANGES.rst"
    (root / "bolts" / "CHANGES.rst").unlink()
    text = workspace.render_map(layouts)
    assert text.splitlines()[0] == workspace.HEADER and len(text.splitlines()) == 3


def test_a_folder_in_two_roots_is_the_first_roots(root, tmp_path):
    (tmp_path / "gadgets" / "gadgets").mkdir(parents=True)
    (tmp_path / "gadgets" / "gadgets" / "__init__.py").write_text("")
    first = workspace.scan_roots([tmp_path, root])
    assert [(l.folder, l.packages) for l in first] == [("gadgets", ("gadgets",)), ("bolts", ("src/bolts",))]


def test_views_rename_and_relayout_and_map_back(root):
    layout = workspace.scan_repo(root, "gadgets")
    view = workspace.View(layout, "gadgets-1.0", swap_src=True)
    assert view.shown.line() == "- gadgets-1.0/: gadgets-1.0/gadgets/ README.md"
    for real, shown in [("gadgets/src/gadgets/hinge.py", "gadgets-1.0/gadgets/hinge.py"),
                        ("gadgets/README.md", "gadgets-1.0/README.md"), ("gadgets", "gadgets-1.0"),
                        ("gadgets/src/gadgets", "gadgets-1.0/gadgets")]:
        assert view.to_view(real) == shown and view.to_real(shown) == real
    with pytest.raises(ValueError, match="not under"):
        view.to_real("gadgets/README.md")
    flat = workspace.View(workspace.RepoLayout("lib", ("lib",), ()), "lib", swap_src=True)
    assert flat.to_view("lib/lib/core.py") == "lib/src/lib/core.py" and not flat.identity
    assert all(alias != "gadgets" for alias in workspace.aliases("gadgets", "1.0"))


def test_identifier_words():
    assert identifier_words("CaseInsensitiveDict") == "case insensitive dict"
    assert identifier_words("should_strip_auth") == "should strip auth"
    assert identifier_words("HTTPError") == "http error"
    assert identifier_words("MAX_RANGE") == "max range"
    assert identifier_words("Flask") is None


@pytest.fixture(scope="module")
def candidates(root):
    facts = extract_repos(root, ["gadgets"], workers=1).files
    return grep_candidates(facts)


def test_new_grep_intents_are_extracted_and_verified_on_the_real_tree(root, candidates):
    verifier = Verifier(root)
    good = Counter(c.intent for c in candidates if verifier.check(c) is None)
    for intent in ("class_def", "method_def", "async_def", "usage", "decorator", "decorator_def", "import",
                   "relative_import", "import_name", "subclass", "raise", "string", "constant", "constants_multi",
                   "classes_multi"):
        assert good[intent], intent
    annotated = [c for c in candidates if "annotated-constant" in c.traits]
    assert annotated and all(c.call[1]["pattern"].endswith(r"\s*[:=]") for c in annotated)
    relative = [c for c in candidates if c.intent == "relative_import"]
    assert {c.call[1]["pattern"] for c in relative} == {r"from \.core import"}


def test_targets_are_the_repositories_own_code(candidates):
    # usages of builtins (`hash`), subclasses of builtins (ValueError), stdlib imports (json) are not targets
    assert not [c for c in candidates if c.intent == "usage" and c.fields["name"] in {"hash", "dumps"}]
    assert not [c for c in candidates if c.intent == "subclass" and "ValueError" in c.fields["base"]]
    assert not [c for c in candidates if c.intent == "import" and c.fields["module"].split(".")[0] in
                {"json", "collections"}]
    assert {c.fields["name"] for c in candidates if c.intent == "decorator_def"} >= {"register_hinge"}


def test_rows_follow_the_map_and_questions_never_name_the_folder(root, candidates):
    draw = Draw(random.Random(3), root, RowOptions(alias_rate=1.0, swap_rate=1.0, rename_rate=0.0, per_file_cap=100))
    rows = [row for cand in candidates if (row := draw.take(cand)) is not None][:40]
    assert len(rows) == 40
    for row in rows:
        view = row["source"]["view"]
        assert view is not None and view["folder"] != "gadgets" and view["swap_src"]
        shown = row["messages"][-1]["tool_calls"][0]["function"]["arguments"]["path"]
        assert shown.split("/")[0] == view["folder"] and f"- {view['folder']}/" in row["messages"][1]["content"]
        assert view["folder"] not in row["messages"][2]["content"]
        assert real_arguments(row, root)["path"].split("/")[0] == "gadgets"
        assert {"alias", "swapped-layout"} <= set(row["source"]["traits"])


def test_a_renamed_checkout_is_named_by_the_question_and_copied_into_the_call(root, candidates):
    """A checkout with an invented name: the question names it, the map shows it, the call's path starts
    with it and maps back to the real tree; a full path (which would give the real folder) is never asked."""
    draw = Draw(random.Random(4), root, RowOptions(rename_rate=1.0, per_file_cap=100))
    rows = [row for cand in candidates if cand.call and (row := draw.take(cand)) is not None][:40]
    assert len(rows) == 40
    named = 0
    for row in rows:
        folder = row["source"]["view"]["folder"]
        assert folder not in draw.layouts and f"- {folder}/" in row["messages"][1]["content"]
        assert row["messages"][-1]["tool_calls"][0]["function"]["arguments"]["path"].split("/")[0] == folder
        assert real_arguments(row, root)["path"].split("/")[0] == "gadgets"
        assert "path:full" not in row["source"]["traits"]
        if "renamed" in row["source"]["traits"]:
            named += 1
            assert folder in row["messages"][2]["content"]
    assert named >= 10


def test_a_hand_written_direct_row_shows_the_library_it_names(root):
    """A direct answer about a library in the workspace shows that library in its map, as a tool row
    shows its own repository: the library being in the map must not be the cue to search it."""
    draw = Draw(random.Random(5), root, RowOptions(per_file_cap=100))
    for question, shown in [("Why would Gadgets register a hinge twice?", "gadgets"),
                            ("What is a bolt in bolts' vocabulary?", "bolts")]:
        cand = Candidate("direct", "library_concept", None, question, {"question": question},
                         {"repo": None, "path": "x", "symbol": "x", "line": None}, answer="An answer.")
        for _ in range(5):  # shown under its own folder name or an alias, like a tool row's repository
            row = draw.curated([cand])[0]
            folder = (row["source"]["view"] or {}).get("folder", shown)
            assert f"- {folder}/" in row["messages"][1]["content"], row["messages"][1]["content"]
    assert draw.named_layout("What is a Python decorator?") is None
    assert draw.named_layout("How do gadgets-extra plugins load?") is None  # another project's name


def test_paraphrased_questions_do_not_contain_the_identifier(root):
    cand = Candidate("grep", "class_def", "gadgets", "gadgets.hinge.HingePart",
                     {"Repo": ["gadgets"], "name": "HingePart", "words": "hinge part"},
                     {"repo": "gadgets", "path": "gadgets/src/gadgets/hinge.py", "symbol": "x", "line": 28},
                     ("grep", {"pattern": r"class HingePart\b", "path": "gadgets"}))
    questions = [render(cand, random.Random(seed), RowOptions(words_rate=1.0)) for seed in range(10)]
    assert all("HingePart" not in q and "hinge part" in q and "no-identifier" in traits for q, _, traits in questions)


def test_intent_turns_give_an_intent_more_of_its_repositorys_turns(root):
    """Without turns every intent of a repository takes one turn a cycle; an intent given three takes three,
    spread over the cycle, so the rows drawn lean to it while its candidates last."""
    from tooltrain.data.generate import intent_order, select

    assert intent_order(["a", "b", "c"], {}) == ["a", "b", "c"]
    assert intent_order(["a", "b", "c"], {"b": 3}) == ["b", "a", "b", "c", "b"]
    facts = extract_repos(root, ["bolts", "gadgets"], workers=1).files
    pool = grep_candidates(facts)
    drawn = {}
    for turns in ((), (("usage", 3),)):  # usage sorts last: one turn in 16 intents
        options = RowOptions(per_file_cap=100, intent_turns=turns)
        rows = select(list(pool), 16, Draw(random.Random(0), root, options), "grep")
        drawn[turns] = Counter(row["source"]["intent"] for row in rows)["usage"]
    assert drawn[()] <= 1 and drawn[(("usage", 3),)] >= 2, drawn
