"""HTML examples: grep and read questions about the real templates the sources ship, curated direct answers.

Topics: semantic HTML, forms, tables, navigation and accessibility. Grep patterns
are verified like the Python ones: they must hit a line of an HTML file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from .. import tools
from ..paths import RESOURCES
from . import templates
from .generate import Candidate, Draw, PoolTooSmall, RowOptions, curated_candidates, select

# (feature, tag or attribute test, grep pattern, topic words for the question)
FEATURES = [
    ("form", "<form", r"<form\b", "a <form> element"),
    ("label", "<label", r"<label\b", "<label> elements"),
    ("input", "<input", r"<input\b", "<input> fields"),
    ("textarea", "<textarea", r"<textarea\b", "a <textarea>"),
    ("button", "<button", r"<button\b", "<button> elements"),
    ("table", "<table", r"<table\b", "a <table>"),
    ("nav", "<nav", r"<nav\b", "a <nav> landmark"),
    ("header", "<header", r"<header\b", "a <header> element"),
    ("section", "<section", r"<section\b", "<section> elements"),
    ("main", "<main", r"<main\b", "a <main> element"),
    ("article", "<article", r"<article\b", "<article> elements"),
    ("link", "<a ", r"<a href=", "links (<a href>)"),
    ("alt", "alt=", r"alt=\"", "images with alt text"),
    ("lang", "lang=", r"<html lang=", "a lang attribute on <html>"),
    ("aria", "aria-", r"aria-[a-z]+=", "ARIA attributes"),
    ("title", "<title", r"<title>", "a <title> element"),
]


@dataclass(frozen=True)
class HtmlFile:
    repo: str
    path: str  # repos-root-relative
    lines: tuple[str, ...]


def html_files(repos_root: Path, repos: list[str]) -> list[HtmlFile]:
    """Every .html file of the given repositories the tools read (tools.text_files), sorted, with its lines."""
    found = []
    for repo in repos:
        base = Path(repos_root) / repo
        for path in tools.text_files(base, base, suffixes={".html", ".htm"}):
            try:
                text = tools.read_text(path, base)
            except tools.Refused:
                continue
            found.append(HtmlFile(repo, path.relative_to(repos_root).as_posix(), tuple(text.splitlines())))
    return sorted(found, key=lambda f: f.path)


class _TagLines(HTMLParser):
    """Line numbers of start tags, so a feature's source line is a real element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, int, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, self.getpos()[0], dict(attrs)))


def tag_lines(file: HtmlFile) -> set[int]:
    """Lines where the HTML parser sees a start tag (so text inside comments does not count)."""
    parser = _TagLines()
    parser.feed("\n".join(file.lines))
    return {line for _, line, _ in parser.tags}


def _first_line(file: HtmlFile, needle: str, markup: set[int]) -> int | None:
    """First line holding `needle` that is also a line of markup."""
    for number, line in enumerate(file.lines, 1):
        if needle in line and number in markup:
            return number
    return None


def html_candidates(files: list[HtmlFile]) -> tuple[list[Candidate], list[Candidate]]:
    grep, read = [], []
    for file in files:
        rel = file.path.split("/", 1)[1]
        markup = tag_lines(file)
        for feature, needle, pattern, words in FEATURES:
            line = _first_line(file, needle, markup)
            if line is not None:
                grep.append(Candidate("grep", "html_grep", file.repo, f"{feature}@{file.path}",
                                      {"Repo": templates.spellings(file.repo), "feature": words},
                                      {"repo": file.repo, "path": file.path, "symbol": feature, "line": line},
                                      ("grep", {"pattern": pattern, "path": file.repo}), domain="html"))
        read.append(Candidate("read", "html_read", file.repo, file.path, {"forms": {"full": file.path, "rel": rel}},
                              {"repo": file.repo, "path": file.path, "symbol": None, "line": None},
                              ("read", {"path": file.path}), domain="html"))
    return grep, read


def generate_html_examples(repos_root: Path, repos: list[str], counts: dict[str, int], seed: int,
                           options: RowOptions | None = None) -> list[dict]:
    """Exactly counts[label] HTML examples: verified grep/read over real templates, curated direct answers."""
    draw = Draw(random.Random(seed), repos_root, options)
    files = html_files(repos_root, repos)
    grep_pool, read_pool = html_candidates(files)
    curated = curated_candidates(counts["direct"], domain="html", groups=[([RESOURCES / "html_qa.jsonl"], 1.0)])
    for label, pool in (("grep", grep_pool), ("read", read_pool)):
        if len(pool) < counts[label]:
            raise PoolTooSmall(f"asked for {counts[label]} HTML {label} examples but only {len(pool)} "
                               f"candidates exist in {len(files)} HTML files")
    rows = []
    for label, pool in (("grep", grep_pool), ("read", read_pool)):
        rows.extend(select(pool, counts[label], draw, label))
    return rows + draw.curated(curated)
