"""Turn extracted facts into verified grep / read / direct training examples.

Every grep candidate is run through the real grep tool over its repository and
kept only if it hits its source line (and is specific enough to be useful);
every read path is opened with the real read tool; every direct answer is a
cleaned docstring of the repository or a hand-written answer. Candidates are
drawn round-robin over repositories and intents with an explicit `random.Random`,
so one seed gives byte-identical output.

Each row carries a workspace map (tooltrain.workspace) of its repository and a
few others, in random order; its repository is often shown under another folder
name or with the other package layout, and the row's call is written against
what the map shows (and maps back to the real call that was verified). Questions
name repositories the way people do ("Flask", "flask"), never by the folder, so
the map is the only place the path can come from.
"""

from __future__ import annotations

import builtins
import json
import math
import random
import re
import string
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from itertools import cycle
from pathlib import Path

from .. import tools, workspace
from ..io import read_jsonl
from ..paths import RESOURCES
from ..tools import LABELS
from . import templates
from .docstrings import clean_docstring
from .extract import FileFacts

# Hand-written direct answers. Library ones name a training library (many with code in the question):
# a small model calls grep on anything that names a library; these teach it not to.
LIBRARY_QA = [RESOURCES / "library_qa.jsonl", RESOURCES / "library_code_qa.jsonl"]
# Python concepts, how-tos and off-topic requests; requests about the world phrased like searches.
OTHER_QA = [RESOURCES / "general_qa.jsonl", RESOURCES / "world_qa.jsonl"]
LIBRARY_SHARE = 0.45  # of the curated direct rows, the share that names a library
# A definition that greps to more lines than this is too vague to teach; usages may be broader.
MAX_HITS = {"usage": 60, "decorator": 60, "import": 60, "relative_import": 60, "import_name": 60, "subclass": 60,
            "raise": 60}
MAX_HITS_DEFAULT = 20
REGEX_SPECIAL = set(".^$*+?{}[]\\|()")
# Folder names that mark tests, docs, tutorials, typing checks and tooling rather than library code.
NOT_SOURCE_DIR = re.compile(r"tests?|testing|\w*_tests?|docs?|docs_src|examples?|typing[-_]\w+|bench\w*|scripts?|"
                            r"changelog\.d")
# Names no one greps a code base for: builtins and the methods of builtin types (`append`, `items`, ...).
BUILTIN_NAMES = frozenset(dir(builtins)) | {n for t in (str, bytes, dict, list, set, tuple, int, object) for n in dir(t)}
STDLIB = frozenset(sys.stdlib_module_names)
ACCESSOR_DECORATORS = {"setter", "getter", "deleter"}
# Decorators of the standard library: a repository that reuses the name is not defining the decorator people mean.
STDLIB_DECORATORS = {"contextmanager", "asynccontextmanager", "dataclass", "wraps", "cache", "lru_cache",
                     "cached_property", "total_ordering", "singledispatch", "overload", "final", "override",
                     "abstractmethod", "runtime_checkable"}
PATH_FORM_WEIGHTS = {"full": 0.3, "rel": 0.35, "nosrc": 0.2, "module": 0.15, "file": 0.15}
GENERIC_FILES = {"__init__.py", "conftest.py", "index.rst", "index.md", "conf.py", "__main__.py", "utils.py"}


class PoolTooSmall(ValueError):
    """More examples were asked for than the candidate pool can supply."""


@dataclass
class RowOptions:
    """How rows present the workspace. The defaults are the project's; `with_map=False` is the ablation."""

    with_map: bool = True
    alias_rate: float = 0.4  # the row's own repository under another folder name (never when the question
    swap_rate: float = 0.15  # gives a full path) ... with the other package layout (src/ vs flat)
    generic_share: float = 0.35  # of the other names, a generic one ("backend/", "lib/") unrelated to the project
    # Off: an adapter trained with 0.25 / 0.2 and the wider `others` ((0, 15), (1, 25), (2, 25), (3, 20),
    # (5, 10), (12, 5)) did no better on the unseen set, paired (75.0% vs 72.9%, p = 0.64; README):
    invented_share: float = 0.0  # ... an invented one ("quorvane-api/") no model has seen
    rename_rate: float = 0.0  # a tool row's repository is a checkout with an invented name, and the question
    # names the checkout by it ("In quorvane-api, where is ...?"), as people name their own projects
    other_alias_rate: float = 0.3  # the map's other repositories
    words_rate: float = 0.35  # a definition asked for in words, not by its identifier
    style_rate: float = 0.2  # lowercase start; no final question mark (each)
    per_file_cap: int = 4  # grep (read) rows about one file, so a small repository's few files are not drilled
    # how many other repositories the map shows: (count, weight percent). Mostly a few (each line costs every
    # training step ~20 tokens), sometimes many: the eval workspaces have 4 and 13.
    others: tuple = ((0, 40), (1, 30), (2, 15), (3, 8), (5, 4), (12, 3))
    # (intent, turns per cycle) pairs: how often a repository's turn goes to that intent; unnamed intents
    # take one turn (empty: every intent alike). What people ask for most gets most: with one turn each, a
    # quarter of the grep rows asked who imports what, and raise and usage questions failed (README).
    intent_turns: tuple = (("usage", 3), ("raise", 3), ("decorator", 3), ("subclass", 2), ("string", 2),
                           ("class_def", 2), ("function_def", 2), ("method_def", 2), ("constant", 2))


@dataclass
class Candidate:
    label: str
    intent: str
    repo: str | None  # None for hand-written answers
    key: str  # what the example is about: symbol qualname, module, file path, curated id
    fields: dict  # the question's placeholders; a list value is a choice made when rendering
    source: dict
    call: tuple[str, dict] | None = None  # (tool name, arguments) on the real tree
    answer: str | None = None
    domain: str = "python"
    traits: tuple[str, ...] = ()  # what the target itself exercises (annotated constant, relative import, ...)


@dataclass
class Selection:
    rows: list[dict]
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    available: dict = field(default_factory=dict)  # label -> candidates before verification


def is_source_file(path: str) -> bool:
    """True for library code, False for tests, docs, tutorials and scripts."""
    parts = path.split("/")[1:-1]
    return not any(NOT_SOURCE_DIR.fullmatch(part) for part in parts)


def _good_name(name: str) -> bool:
    return len(name) >= 4 and not name.startswith("_") and not name.startswith("test")


def identifier_words(name: str) -> str | None:
    """`CaseInsensitiveDict` -> "case insensitive dict", `should_strip_auth` -> "should strip auth"; None for one word."""
    words = [w.lower() for part in name.split("_") for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", part)]
    return " ".join(words) if len(words) >= 2 and all(len(w) >= 2 for w in words) else None


def literal_fragment(text: str) -> str | None:
    """A grep-able literal piece of a message: no regex metacharacters, no placeholders, 3-8 words."""
    text = re.split(r"[{%]|\\n|\n", text, maxsplit=1)[0].strip().rstrip(".:")
    words = text.split()
    if len(words) < 3:
        return None
    text = " ".join(words[:8])
    if any(ch in REGEX_SPECIAL for ch in text) or not (12 <= len(text) <= 60) or not text[0].isalpha():
        return None
    return text


def _names(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1]


def _source(repo: str | None, path: str | None, symbol: str | None, line: int | None) -> dict:
    return {"repo": repo, "path": path, "symbol": symbol, "line": line}


# ----------------------------------------------------------------------------------- candidates


def grep_candidates(facts: list[FileFacts]) -> list[Candidate]:
    """Every grep question the facts support, with the pattern that should find its line. Targets are the
    repository's own code: usages, decorators, bases and exceptions it defines, imports of non-stdlib modules."""
    out: list[Candidate] = []
    defined_functions, defined_classes = defaultdict(set), defaultdict(set)  # in library code, not tests
    for f in facts:
        for s in f.symbols:
            if is_source_file(f.path) and s.name not in BUILTIN_NAMES | STDLIB_DECORATORS:
                (defined_classes if s.kind == "class" else defined_functions)[f.repo].add(s.name)
    decorator_names = defaultdict(set)

    def add(intent, f, key, line, pattern, traits=(), **extra):
        out.append(Candidate("grep", intent, f.repo, key, {"Repo": templates.spellings(f.repo), **extra},
                             _source(f.repo, f.path, key, line), ("grep", {"pattern": pattern, "path": f.repo}),
                             traits=traits))

    def definition(intent, f, s, pattern, **extra):
        words = identifier_words(s.name)
        add(intent, f, s.qualname, s.line, pattern, name=s.name, **({"words": words} if words else {}), **extra)

    for f in facts:
        if not is_source_file(f.path):
            continue
        own = defined_functions[f.repo] | defined_classes[f.repo]
        classes = [s for s in f.symbols if s.kind == "class" and _good_name(s.name) and not s.nested]
        for s in f.symbols:
            if not _good_name(s.name) or s.nested:
                continue
            if s.kind == "class":
                definition("class_def", f, s, rf"class {s.name}\b")
                for base in s.bases:
                    short = base.rsplit(".", 1)[-1]
                    if short in defined_classes[f.repo] and len(short) >= 4 and short != s.name:
                        add("subclass", f, f"{base}<-{s.qualname}", s.line, rf"class .*\b{re.escape(base)}\b",
                            base=base)
            elif s.kind == "function":
                definition("function_def", f, s, rf"def {s.name}\b")
            elif s.kind == "method":
                definition("method_def", f, s, rf"def {s.name}\b", owner=s.owner)
            elif s.kind == "async_function":
                definition("async_def", f, s, rf"async def {s.name}\b")
            for deco, line in s.decorators:
                short = deco.rsplit(".", 1)[-1]
                if short in ACCESSOR_DECORATORS:
                    continue
                own_decorator = short in own and len(deco) >= 4
                # the repository's own decorators, and another library's by its dotted name (@contextlib.contextmanager)
                if own_decorator or "." in deco and len(deco) >= 8:
                    add("decorator", f, f"@{deco}", line, rf"@{re.escape(deco)}\b", name=deco)
                if own_decorator:  # only those can have their definition asked for
                    decorator_names[f.repo].add(short)
        for first, second in zip(classes, classes[1:]):
            add("classes_multi", f, f"{first.qualname}+{second.name}", first.line, rf"class ({first.name}|{second.name})\b",
                traits=("several-names",), names=_names([first.name, second.name]))
        for name, line in f.calls:
            if name in defined_functions[f.repo] and _good_name(name) and len(name) >= 6 and name not in BUILTIN_NAMES:
                add("usage", f, f"{name}()", line, rf"\b{name}\(", name=name)
        for module, line in f.imports:
            if len(module) >= 4 and module.split(".")[0] not in STDLIB:
                add("import", f, f"import {module}", line, rf"(from|import) {re.escape(module)}\b", module=module)
        for module, line in f.relative_imports:
            if len(module.lstrip(".")) >= 4:
                add("relative_import", f, f"from {module}", line, rf"from {re.escape(module)} import", module=module,
                    traits=("relative-import",))
        for name, module, line in f.imported_names:
            if _good_name(name) and name not in BUILTIN_NAMES and module.split(".")[0] not in STDLIB:
                add("import_name", f, f"import {name}@{f.path}", line, rf"import .*\b{name}\b", name=name, module=module,
                    traits=("relative-import",) if module.startswith(".") else ())
        for exc, line in f.raises:
            if exc.rsplit(".", 1)[-1] in defined_classes[f.repo] and len(exc) >= 5:
                add("raise", f, f"raise {exc}", line, rf"raise {re.escape(exc)}\b", exc=exc)
        for text, line in f.strings:
            if fragment := literal_fragment(text):
                add("string", f, f"'{fragment}'", line, fragment, text=fragment)
        constants = sorted(f.constants, key=lambda c: c[1])
        constants = [c for c in constants if not c[0].startswith("_")]
        for name, line, annotated in constants:
            words = identifier_words(name)
            add("constant", f, f"{f.module}.{name}", line, rf"\b{name}\s*[:=]", name=name,
                traits=("annotated-constant",) if annotated else (), **({"words": words} if words else {}))
        for group in zip(constants, constants[1:], constants[2:]):
            if group[-1][1] - group[0][1] <= 6 and len({c[0] for c in group}) == 3:  # one block of settings
                names = [c[0] for c in group]
                add("constants_multi", f, f"{f.module}.{'+'.join(names)}", group[0][1],
                    rf"\b({'|'.join(names)})\s*[:=]", names=_names(names), traits=("several-names",))
    # Where is the decorator itself defined (vs where is it applied)
    for f in facts:
        if is_source_file(f.path):
            for s in f.symbols:
                if s.kind in ("function", "async_function") and s.name in decorator_names[f.repo] \
                        and _good_name(s.name) and not s.nested:
                    add("decorator_def", f, f"def @{s.qualname}", s.line, rf"def {s.name}\b", name=s.name)
    return out


DOC_SUFFIXES = (".md", ".rst", ".toml", ".txt", ".cfg", ".ini")
TOP_FILE = re.compile(r"(README|CHANGES|CHANGELOG|HISTORY|NEWS)(\.\w+)?|pyproject\.toml|setup\.(cfg|py)", re.I)


def document_files(repos_root: Path, repo: str) -> list[str]:
    """Sorted repos-root-relative paths of a repository's prose and config files (README, docs, pyproject)."""
    base = Path(repos_root) / repo
    found = []
    for path in base.rglob("*"):
        rel = path.relative_to(repos_root)
        top_level = len(rel.parts) == 2 and TOP_FILE.fullmatch(path.name)
        if (path.suffix in DOC_SUFFIXES or top_level) and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


def top_words(name: str) -> list[str] | None:
    """How people name a top-level file ("the README", "changelog"), or None for files not asked for that way."""
    stem = name.split(".")[0].upper() if not name.startswith(("pyproject", "setup")) else name
    return templates.TOP_WORDS.get(stem)


def path_forms(path: str, layout: workspace.RepoLayout | None, basenames: Counter) -> dict[str, str]:
    """The ways a user can point at a file: its full path, repo-relative, without `src/`, module, bare name."""
    repo, rel = path.split("/", 1)
    forms = {"full": path, "rel": rel}
    if rel.startswith("src/") and rel.count("/") >= 2:
        forms["nosrc"] = rel[len("src/"):]
    name = rel.rsplit("/", 1)[-1]
    for package in (layout.packages if layout else ()):
        if rel.startswith(package + "/") and name.endswith(".py") and name != "__init__.py":
            inside = rel[len(package) - len(package.split("/")[-1]):]  # from the package's own folder on
            forms["module"] = inside[: -len(".py")].replace("/", ".")
            break
    if basenames[(repo, name)] == 1 and name not in GENERIC_FILES and "/" in rel:
        forms["file"] = name
    return forms


def read_candidates(facts: list[FileFacts], documents: list[str], layouts: dict[str, workspace.RepoLayout]) -> list[Candidate]:
    """A read question per non-trivial Python file and per document; structure questions only for source;
    top-level files (README, changelog, pyproject) asked for by name."""
    paths = [*documents, *(f.path for f in facts)]
    basenames = Counter((p.split("/", 1)[0], p.rsplit("/", 1)[-1]) for p in paths)
    out = []
    for path in documents:
        repo, rel = path.split("/", 1)
        source, call = _source(repo, path, None, None), ("read", {"path": path})
        if "/" not in rel and (words := top_words(rel)):
            out.append(Candidate("read", "read_top", repo, path, {"Repo": templates.spellings(repo), "top": words},
                                 source, call, traits=("path:top",)))
        else:
            out.append(Candidate("read", "read_file", repo, path, {"forms": path_forms(path, layouts.get(repo), basenames)},
                                 source, call))
    for f in facts:
        rel = f.path.split("/", 1)[1]
        if Path(rel).name == "__init__.py" and not f.symbols:
            continue
        intent = "read_structure" if f.symbols and is_source_file(f.path) and len(f.symbols) >= 2 else "read_file"
        out.append(Candidate("read", intent, f.repo, f.path, {"forms": path_forms(f.path, layouts.get(f.repo), basenames)},
                             _source(f.repo, f.path, None, None), ("read", {"path": f.path})))
    return out


def direct_candidates(facts: list[FileFacts]) -> list[Candidate]:
    """Conceptual questions about public classes, functions and modules, answered by their cleaned docstrings."""
    out = []
    for f in facts:
        if not is_source_file(f.path):
            continue
        spelled = templates.spellings(f.repo)
        public_module = not any(part.startswith("_") for part in f.module.split("."))
        if f.docstring and f.module and public_module and (answer := clean_docstring(f.docstring)):
            out.append(Candidate("direct", "module_concept", f.repo, f.module, {"Repo": spelled, "module": f.module},
                                 _source(f.repo, f.path, f.module, 1), answer=answer))
        for s in f.symbols:
            if s.kind in ("class", "function", "async_function") and _good_name(s.name) and s.docstring and not s.nested:
                if answer := clean_docstring(s.docstring):
                    out.append(Candidate("direct", "symbol_concept", f.repo, s.qualname, {"Repo": spelled, "name": s.name},
                                         _source(f.repo, f.path, s.qualname, s.line), answer=answer))
    return out


def _interleaved(paths: list[Path], from_end: bool) -> list[dict]:
    """Rows of the files, their kinds taken in turn (reversed when `from_end`: another stage's share)."""
    by_kind = defaultdict(list)
    for path in paths:
        for row in read_jsonl(path):
            by_kind[row["kind"]].append({**row, "file": path.name})
    queues = [by_kind[kind][::-1] if from_end else list(by_kind[kind]) for kind in sorted(by_kind)]
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def curated_candidates(count: int, from_end: bool = False, domain: str = "general",
                       groups: list[tuple[list[Path], float]] | None = None) -> list[Candidate]:
    """`count` hand-written question/answer rows, LIBRARY_SHARE of them naming a library; the front of each
    list serves one stage, the back (`from_end`) another, so no answer is used twice."""
    groups = groups or [(LIBRARY_QA, LIBRARY_SHARE), (OTHER_QA, 1 - LIBRARY_SHARE)]
    wanted = [round(count * share) for _, share in groups]
    wanted[-1] = count - sum(wanted[:-1])
    picked = []
    for (paths, _), want in zip(groups, wanted):
        rows = _interleaved(paths, from_end)
        if want > len(rows):
            raise PoolTooSmall(f"asked for {want} curated direct examples from {', '.join(p.name for p in paths)} "
                               f"but they hold {len(rows)}")
        picked.append(rows[:want])
    ordered = [row for batch in zip(*[p + [None] * (max(wanted) - len(p)) for p in picked]) for row in batch if row]
    return [
        Candidate("direct", row["kind"], None, row["id"], {"question": row["question"]},
                  {"repo": None, "path": f"tooltrain/resources/{row['file']}", "symbol": row["id"], "line": None},
                  answer=row["answer"], domain=domain)
        for row in ordered
    ]


def normalise_question(text: str) -> str:
    """Lower-case words only: questions equal under this are near-duplicates."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


class Verifier:
    """Runs candidates' tool calls for real against the repos root."""

    def __init__(self, repos_root: Path):
        self.root = Path(repos_root)

    def check(self, cand: Candidate) -> str | None:
        """None when the candidate is good, else the reason it is dropped."""
        if cand.call is None:
            return None
        name, args = cand.call
        try:
            if name == "read":
                tools.read(self.root, args["path"])
                return None
            limit = MAX_HITS.get(cand.intent, MAX_HITS_DEFAULT)
            hits = tools.grep(self.root, args["pattern"], args["path"], max_hits=limit)
        except tools.ToolError as err:
            return f"{name}_error: {str(err).split(':')[0]}"
        if hits.capped:
            return "grep_too_many_hits"
        if not any(h.path == cand.source["path"] and h.line == cand.source["line"] for h in hits):
            return "grep_misses_source_line"
        return None


# ----------------------------------------------------------------------------------- questions


def placeholders(shape: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(shape) if name}


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = sorted(weights)
    return rng.choices(keys, [weights[k] for k in keys])[0]


def render(cand: Candidate, rng: random.Random, options: RowOptions,
           renamed: str | None = None) -> tuple[str, str, list[str]]:
    """The question text, its shape id and its traits (how it is phrased); `renamed`, the checkout's invented
    name, is how the question names the repository (never with a full path, which would give the real one)."""
    if "question" in cand.fields:
        return cand.fields["question"], f"{cand.intent}/0", []
    fields, traits = dict(cand.fields), list(cand.traits)
    if "forms" in fields:  # a read question: first how the user points at the file
        forms = {k: v for k, v in fields.pop("forms").items() if not (renamed and k == "full")}
        form = _weighted(rng, {k: w for k, w in PATH_FORM_WEIGHTS.items() if k in forms})
        traits.append(f"path:{form}")
        fields["module" if form == "module" else "path"] = forms[form]
        if form != "full":
            fields["Repo"] = templates.spellings(cand.repo)
    if renamed and "Repo" in fields:
        fields["Repo"] = renamed
    fields = {k: (rng.choice(v) if rng.random() < 0.5 else v[0]) if isinstance(v, list) else v for k, v in fields.items()}
    words = "words" in fields and cand.intent in templates.GREP_WORDS and rng.random() < options.words_rate
    if cand.label == "grep":
        lists = {"words": templates.GREP_WORDS[cand.intent]} if words else {"": templates.GREP[cand.intent]}
    elif cand.label == "read":
        keys = {"read_file": ("full", "in_repo", "module"), "read_structure": ("structure", "structure_in_repo"),
                "read_top": ("top",), "html_read": ("html",)}[cand.intent]
        lists = {key: templates.READ[key] for key in keys}
    else:
        lists = {"": templates.DIRECT[cand.intent]}
    if words:
        traits.append("no-identifier")
    # A path that is not self-contained (repo-relative, without src/, a bare name) needs the repository named.
    needs_repo = any(f"path:{form}" in traits for form in ("rel", "nosrc", "file"))
    usable = [(key, i, shape) for key, shapes in lists.items() for i, shape in enumerate(shapes)
              if placeholders(shape) <= set(fields) and (words or "{words}" not in shape)
              and ("{Repo}" in shape or not needs_repo)]
    key, index, shape = rng.choice(usable)
    question = shape.format(**fields)
    if shape.startswith("{Repo}"):
        traits.append("repo-first")
    if "{Repo}'s" in shape:
        traits.append("possessive")
    if renamed and "{Repo}" in shape:
        traits.append("renamed")
    elif fields.get("Repo") and fields["Repo"] != templates.spellings(cand.repo)[0]:
        traits.append("other-spelling")
    if rng.random() < options.style_rate and shape[0].isupper():
        question = question[0].lower() + question[1:]
        traits.append("lowercase-start")
    if rng.random() < options.style_rate and question.endswith(("?", ".")):
        question = question[:-1]
        traits.append("no-final-mark")
    if question[0].islower() and "lowercase-start" not in traits:
        traits.append("lowercase-start")
    return question, f"{cand.intent}/{key + ':' if key else ''}{index}", sorted(set(traits))


# ----------------------------------------------------------------------------------- drawing rows


class Draw:
    """What one stage's drawing shares: randomness, verification, the workspace it shows, what is taken."""

    def __init__(self, rng: random.Random, repos_root: Path, options: RowOptions | None = None):
        self.rng, self.options = rng, options or RowOptions()
        self.verifier = Verifier(repos_root)
        self.layouts = {layout.folder: layout for layout in workspace.scan_roots([Path(repos_root)])}
        self.versions = {name: _pinned_version(Path(repos_root), name) for name in self.layouts}
        self.seen: set[str] = set()
        self.ids: Counter = Counter()
        self.dropped: Counter = Counter()
        self.used: set = set()
        self.per_file: Counter = Counter()

    def take(self, cand: Candidate) -> dict | None:
        """The candidate as a row, or None (already used, file cap, duplicate question, failed verification)."""
        if (cand.label, cand.intent, cand.key) in self.used:
            return None
        path = cand.source.get("path") if cand.call else None  # the cap is on tool rows, per label
        if path and self.per_file[cand.label, path] >= self.options.per_file_cap:
            self.dropped["file_cap"] += 1
            return None
        renamed = self.invented_name() if cand.call and self.options.with_map and self.options.rename_rate \
            and self.rng.random() < self.options.rename_rate else None
        question, shape, traits = render(cand, self.rng, self.options, renamed)
        norm = normalise_question(question)
        if norm in self.seen:
            self.dropped["duplicate_question"] += 1
            return None
        if reason := self.verifier.check(cand):
            self.dropped[reason] += 1
            return None
        self.used.add((cand.label, cand.intent, cand.key))
        self.seen.add(norm)
        if path:
            self.per_file[cand.label, path] += 1
        return self.row(cand, question, shape, traits, renamed)

    def invented_name(self) -> str:
        """An invented checkout name that is no repository's folder."""
        while (name := workspace.invented_name(self.rng)) in self.layouts:
            pass
        return name

    def view(self, layout: workspace.RepoLayout, alias_rate: float, swap_rate: float) -> workspace.View:
        folder = layout.folder
        if self.rng.random() < alias_rate:
            kind = self.rng.random()
            if kind < self.options.generic_share and layout.packages:
                folder = self.rng.choice(workspace.GENERIC_FOLDERS)
            elif kind < self.options.generic_share + self.options.invented_share:
                folder = self.invented_name()
            else:
                folder = self.rng.choice(workspace.aliases(layout.folder, self.versions.get(layout.folder)))
        swap = workspace.swappable(layout) and self.rng.random() < swap_rate
        return workspace.View(layout, folder, swap)

    def workspace_of(self, own: workspace.View | None) -> list[workspace.RepoLayout]:
        """The map's repositories for one row: its own (if any) and a few others, shown in random order."""
        options = self.options
        counts, weights = zip(*options.others)
        others = [layout for name, layout in sorted(self.layouts.items()) if own is None or name != own.real.folder]
        wanted = self.rng.choices(counts, weights)[0] + (own is None)  # a workspace is never empty
        chosen = self.rng.sample(others, min(wanted, len(others)))
        shown = [own.shown] if own else []
        for layout in chosen:
            view = self.view(layout, options.other_alias_rate, options.swap_rate)
            taken = {s.folder for s in shown}
            shown.append(view.shown if view.folder not in taken else layout)
        self.rng.shuffle(shown)
        return shown

    def row(self, cand: Candidate, question: str, shape: str, traits: list[str], renamed: str | None = None) -> dict:
        options, call, view = self.options, cand.call, None
        messages = [{"role": "system", "content": tools.SYSTEM_PROMPT}]
        if options.with_map:
            layout = self.layouts.get(cand.repo) if cand.repo else self.named_layout(question)
            if layout:  # a full path in the question is the workspace's path: the repository is shown as it is
                full = "path:full" in traits
                view = self.view(layout, 0.0 if full else options.alias_rate, 0.0 if full else options.swap_rate)
                if renamed:
                    view = replace(view, folder=renamed)
                traits = sorted({*traits, *(["alias"] if view.folder != layout.folder else []),
                                 *(["swapped-layout"] if view.swap_src else [])})
            shown = self.workspace_of(view)
            messages.append(workspace.map_message(shown))
            traits = sorted({*traits, f"map:{len(shown)}"})
            if call and view:
                name, args = call
                shown_args = {**args, "path": view.to_view(args["path"])}
                assert view.to_real(shown_args["path"]) == args["path"], (args, view)
                call = (name, shown_args)
        messages.append({"role": "user", "content": question})
        messages.append(tools.tool_call(call[0], **call[1]) if call else {"role": "assistant", "content": cand.answer})
        base = f"{cand.repo or 'general'}/{cand.label}/{cand.key}"
        n = self.ids[base]
        self.ids[base] += 1
        source = {**cand.source, "intent": cand.intent, "shape": shape, "traits": traits,
                  "view": None if view is None or view.identity else {"folder": view.folder, "swap_src": view.swap_src}}
        return {"id": f"{base}/{n}", "label": cand.label, "domain": cand.domain, "source": source,
                "messages": messages, "tools": tools.TOOLS}

    def named_layout(self, question: str) -> workspace.RepoLayout | None:
        """The repository a hand-written question names ("How does FastAPI's `Depends` work?"), if it is in this
        workspace: shown in the map like a tool row's own, so a library in the map is no cue to search it."""
        for folder, layout in sorted(self.layouts.items()):
            names = {folder, *templates.spellings(folder)}
            if any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", question, re.IGNORECASE) for name in names):
                return layout
        return None

    def curated(self, cands: list[Candidate]) -> list[dict]:
        """Hand-written rows: no verification, no cap; their questions still count as seen."""
        rows = []
        for cand in cands:
            question, shape, traits = render(cand, self.rng, self.options)
            self.seen.add(normalise_question(question))
            rows.append(self.row(cand, question, shape, traits))
        return rows


def real_arguments(row: dict, repos_root: Path) -> dict:
    """A row's tool-call arguments with its path in the real tree (undoing the row's view, if any)."""
    arguments = dict(row["messages"][-1]["tool_calls"][0]["function"]["arguments"])
    shown = row["source"].get("view")
    if shown:
        view = workspace.View(workspace.scan_repo(Path(repos_root), row["source"]["repo"]), shown["folder"],
                              shown["swap_src"])
        arguments["path"] = view.to_real(arguments["path"])
    return arguments


def _pinned_version(repos_root: Path, name: str) -> str | None:
    pin = repos_root / ".pins" / f"{name}.json"
    return json.loads(pin.read_text()).get("version") if pin.exists() else None


def select(pool: list[Candidate], count: int, draw: Draw, label: str) -> list[dict]:
    """Draw `count` verified examples over repositories, and within each round-robin over intents.

    Repositories take turns in proportion to the square root of their candidates (smooth weighted
    round-robin): a big code base gets more questions than a tiny one, but not all of them."""
    queues: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for cand in pool:
        queues[cand.repo][cand.intent].append(cand)
    for by_intent in queues.values():
        for cands in by_intent.values():
            draw.rng.shuffle(cands)
    turns = dict(draw.options.intent_turns)
    orders = {repo: intent_order(sorted(by_intent), turns) for repo, by_intent in queues.items()}
    intent_cycles = {repo: cycle(order) for repo, order in orders.items()}
    weight = {repo: math.sqrt(sum(map(len, by_intent.values()))) for repo, by_intent in queues.items()}
    credit = {repo: 0.0 for repo in sorted(queues)}
    rows = []
    while len(rows) < count and credit:
        for repo in credit:
            credit[repo] += weight[repo]
        repo = max(credit, key=lambda r: (credit[r], r))
        credit[repo] -= sum(weight[r] for r in credit)
        row = _next_from_repo(queues[repo], intent_cycles[repo], len(orders[repo]), draw)
        if row is None:
            del credit[repo]
        else:
            rows.append(row)
    if len(rows) < count:
        raise PoolTooSmall(
            f"asked for {count} {label} examples but only {len(rows)} could be made "
            f"(available {label} candidates: {len(pool)}; dropped: {dict(draw.dropped)})"
        )
    return rows


def intent_order(intents: list[str], turns: dict[str, int]) -> list[str]:
    """One cycle of intents in which each takes `turns.get(intent, 1)` turns, spread evenly over the cycle
    (the sorted intents themselves when every intent takes one)."""
    slots = [((k + 0.5) / turns.get(intent, 1), intent) for intent in intents for k in range(turns.get(intent, 1))]
    return [intent for _, intent in sorted(slots)]


def _next_from_repo(by_intent: dict[str, list[Candidate]], intents, intents_per_cycle: int, draw: Draw) -> dict | None:
    """The next good example of one repository, cycling intents; None when the repository is exhausted."""
    for _ in range(intents_per_cycle):
        cands = by_intent[next(intents)]
        while cands:
            if (row := draw.take(cands.pop())) is not None:
                return row
    return None


def generate_examples(facts: list[FileFacts], repos_root: Path, counts: dict[str, int], seed: int,
                      curated_direct: int, curated_from_end: bool = False, options: RowOptions | None = None) -> Selection:
    """Exactly counts[label] verified examples per label; `curated_direct` of the direct ones are hand-written."""
    draw = Draw(random.Random(seed), repos_root, options)
    repos = sorted({f.repo for f in facts})
    documents = [path for repo in repos for path in document_files(repos_root, repo)]
    pools = {"grep": grep_candidates(facts), "read": read_candidates(facts, documents, draw.layouts),
             "direct": direct_candidates(facts)}
    curated = curated_candidates(curated_direct, curated_from_end)
    available = {label: len(pool) for label, pool in pools.items()}
    available["direct"] += len(curated)
    short = {label: (counts[label], available[label]) for label in LABELS if counts[label] > available[label]}
    if short:
        detail = ", ".join(f"{label}: asked {asked}, available {have}" for label, (asked, have) in short.items())
        raise PoolTooSmall(f"not enough candidates ({detail})")
    rows = []
    for label in LABELS:
        want = counts[label]
        if label == "direct":
            rows.extend(draw.curated(curated))
            want -= len(curated)
        rows.extend(select(pools[label], want, draw, label))
    return Selection(rows, draw.dropped, available)
