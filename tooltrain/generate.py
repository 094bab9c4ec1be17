"""Turn extracted facts into verified grep / read / direct training examples.

Every grep candidate is run through the real grep tool over its repository and
kept only if it hits its source line (and is specific enough to be useful);
every read path is opened with the real read tool; every direct answer is a
cleaned docstring of the repository or a curated answer. Candidates are drawn
round-robin over repositories and intents with an explicit `random.Random`, so
one seed gives byte-identical output.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path

from . import templates, tools
from .docstrings import clean_docstring
from .extract import FileFacts
from .io import read_jsonl

RESOURCES = Path(__file__).parent / "resources"
# Hand-written direct answers: Python concepts, how-tos, off-topic requests; conceptual questions naming a
# library; requests about the world phrased like searches ("Find me a flight ...").
CURATED_DIRECT = [RESOURCES / "general_qa.jsonl", RESOURCES / "library_qa.jsonl", RESOURCES / "world_qa.jsonl"]
LABELS = ("grep", "read", "direct")
# A definition that greps to more lines than this is too vague to teach; usages may be broader.
MAX_HITS = {"usage": 60, "decorator": 60, "import": 60, "subclass": 60, "raise": 60}
MAX_HITS_DEFAULT = 20
REGEX_SPECIAL = set(".^$*+?{}[]\\|()")
# Folder names that mark tests, docs, tutorials, typing checks and tooling rather than library code.
NOT_SOURCE_DIR = re.compile(r"tests?|testing|\w*_tests?|docs?|docs_src|examples?|typing[-_]\w+|bench\w*|scripts?|"
                            r"changelog\.d")
COMMON_DECORATORS = {"property", "staticmethod", "classmethod", "abstractmethod", "overload", "wraps"}


class PoolTooSmall(ValueError):
    """More examples were asked for than the candidate pool can supply."""


@dataclass
class Candidate:
    label: str
    intent: str
    repo: str
    key: str  # what the example is about: symbol qualname, module, file path, curated id
    fields: dict
    source: dict
    call: tuple[str, dict] | None = None  # (tool name, arguments)
    answer: str | None = None
    domain: str = "python"


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


def question_fields(repo: str, **extra) -> dict:
    return {"repo": repo, "Repo": templates.DISPLAY_NAMES.get(repo, repo), **extra}


def _source(repo: str, path: str | None, symbol: str | None, line: int | None) -> dict:
    return {"repo": repo, "path": path, "symbol": symbol, "line": line}


def grep_candidates(facts: list[FileFacts]) -> list[Candidate]:
    """Every grep question the facts support, with the pattern that should find its line."""
    out: list[Candidate] = []

    def add(intent, f, key, line, pattern, **extra):
        out.append(Candidate("grep", intent, f.repo, key, question_fields(f.repo, **extra),
                             _source(f.repo, f.path, key, line), ("grep", {"pattern": pattern, "path": f.repo})))

    for f in facts:
        source_file = is_source_file(f.path)
        for s in f.symbols:
            if not (source_file and _good_name(s.name)):
                continue
            if s.kind == "class":
                add("class_def", f, s.qualname, s.line, rf"class {s.name}\b", name=s.name)
                for base in s.bases:
                    if base not in ("object", "Exception", "Generic", "Protocol") and len(base) >= 4:
                        add("subclass", f, f"{base}<-{s.qualname}", s.line, rf"class \w+\(.*\b{re.escape(base)}\b", base=base)
            elif s.kind == "function":
                add("function_def", f, s.qualname, s.line, rf"def {s.name}\b", name=s.name)
            elif s.kind == "method":
                add("method_def", f, s.qualname, s.line, rf"def {s.name}\b", name=s.name, owner=s.owner)
            elif s.kind == "async_function":
                add("async_def", f, s.qualname, s.line, rf"async def {s.name}\b", name=s.name)
            for deco, line in s.decorators:
                if deco.rsplit(".", 1)[-1] not in COMMON_DECORATORS and len(deco) >= 4:
                    add("decorator", f, f"@{deco}", line, rf"@{re.escape(deco)}\b", name=deco)
        if not source_file:
            continue
        for name, line in f.calls:
            if _good_name(name) and len(name) >= 6:
                add("usage", f, f"{name}()", line, rf"\b{name}\(", name=name)
        for module, line in f.imports:
            if len(module) >= 4:
                add("import", f, f"import {module}", line, rf"(from|import) {re.escape(module)}\b", module=module)
        for exc, line in f.raises:
            if len(exc) >= 5 and exc[0].isupper():
                add("raise", f, f"raise {exc}", line, rf"raise {re.escape(exc)}\b", exc=exc)
        for text, line in f.strings:
            if fragment := literal_fragment(text):
                add("string", f, f"'{fragment}'", line, fragment, text=fragment)
        for name, line in f.constants:
            add("constant", f, f"{f.module}.{name}", line, rf"{name} =", name=name)
    return out


DOC_SUFFIXES = (".md", ".rst", ".toml", ".txt", ".cfg", ".ini")


def document_files(repos_root: Path, repo: str) -> list[str]:
    """Sorted repos-root-relative paths of a repository's prose and config files (README, docs, pyproject)."""
    base = Path(repos_root) / repo
    found = []
    for path in base.rglob("*"):
        rel = path.relative_to(repos_root)
        if path.suffix in DOC_SUFFIXES and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


def read_candidates(facts: list[FileFacts], documents: list[str] = ()) -> list[Candidate]:
    """A read question per non-trivial Python file and per document; structure questions only for source."""
    out = []
    for path in documents:
        repo, rel = path.split("/", 1)
        out.append(Candidate("read", "read_file", repo, path, question_fields(repo, rel=rel, full=path),
                             _source(repo, path, None, None), ("read", {"path": path})))
    for f in facts:
        rel = f.path.split("/", 1)[1]
        if Path(rel).name == "__init__.py" and not f.symbols:
            continue
        intent = "read_structure" if f.symbols and is_source_file(f.path) and len(f.symbols) >= 2 else "read_file"
        out.append(Candidate("read", intent, f.repo, f.path, question_fields(f.repo, rel=rel, full=f.path),
                             _source(f.repo, f.path, None, None), ("read", {"path": f.path})))
    return out


def direct_candidates(facts: list[FileFacts]) -> list[Candidate]:
    """Conceptual questions about public classes, functions and modules, answered by their cleaned docstrings."""
    out = []
    for f in facts:
        if not is_source_file(f.path):
            continue
        public_module = not any(part.startswith("_") for part in f.module.split("."))
        if f.docstring and f.module and public_module and (answer := clean_docstring(f.docstring)):
            out.append(Candidate("direct", "module_concept", f.repo, f.module, question_fields(f.repo, module=f.module),
                                 _source(f.repo, f.path, f.module, 1), answer=answer))
        for s in f.symbols:
            if s.kind in ("class", "function", "async_function") and _good_name(s.name) and s.docstring:
                if answer := clean_docstring(s.docstring):
                    out.append(Candidate("direct", "symbol_concept", f.repo, s.qualname, question_fields(f.repo, name=s.name),
                                         _source(f.repo, f.path, s.qualname, s.line), answer=answer))
    return out


def curated_candidates(paths: list[Path], count: int, from_end: bool = False, domain: str = "general") -> list[Candidate]:
    """`count` curated question/answer rows, kinds interleaved; the front serves one stage, the back another."""
    by_kind, source = defaultdict(list), {}
    for path in paths:
        for row in read_jsonl(path):
            by_kind[row["kind"]].append(row)
            source[row["id"]] = path.name
    queues = [by_kind[kind][::-1] if from_end else list(by_kind[kind]) for kind in sorted(by_kind)]
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    if count > len(ordered):
        names = ", ".join(path.name for path in paths)
        raise PoolTooSmall(f"asked for {count} curated direct examples but {names} hold {len(ordered)}")
    return [
        Candidate("direct", row["kind"], "general", row["id"], {"question": row["question"]},
                  {"repo": None, "path": f"tooltrain/resources/{source[row['id']]}", "symbol": row["id"], "line": None},
                  answer=row["answer"], domain=domain)
        for row in ordered[:count]
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
            hits = tools.grep(self.root, args["pattern"], args["path"], max_hits=limit + 1)
        except tools.ToolError as err:
            return f"{name}_error: {str(err).split(':')[0]}"
        if not any(h.path == cand.source["path"] and h.line == cand.source["line"] for h in hits):
            return "grep_misses_source_line" if len(hits) <= limit else "grep_too_many_hits"
        if len(hits) > limit:
            return "grep_too_many_hits"
        return None


def render(cand: Candidate, rng: random.Random) -> tuple[str, int]:
    """The question text and the shape index used."""
    if "question" in cand.fields:
        return cand.fields["question"], 0
    shapes = {"grep": templates.GREP, "read": templates.READ, "direct": templates.DIRECT}[cand.label][cand.intent]
    index = rng.randrange(len(shapes))
    return shapes[index].format(**cand.fields), index


def to_row(cand: Candidate, question: str, shape: int, n: int) -> dict:
    if cand.call:
        name, args = cand.call
        answer = tools.tool_call(name, **args)
    else:
        answer = {"role": "assistant", "content": cand.answer}
    return {
        "id": f"{cand.repo}/{cand.label}/{cand.key}/{n}",
        "label": cand.label,
        "domain": cand.domain,
        "source": {**cand.source, "intent": cand.intent, "shape": f"{cand.intent}/{shape}"},
        "messages": [
            {"role": "system", "content": tools.SYSTEM_PROMPT},
            {"role": "user", "content": question},
            answer,
        ],
        "tools": tools.TOOLS,
    }


def select(pool: list[Candidate], count: int, rng: random.Random, verifier: Verifier,
           seen_questions: set, id_counts: Counter, label: str) -> tuple[list[dict], Counter]:
    """Draw `count` verified examples round-robin over repositories, and within each over intents."""
    queues: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for cand in pool:
        queues[cand.repo][cand.intent].append(cand)
    for by_intent in queues.values():
        for cands in by_intent.values():
            rng.shuffle(cands)
    intent_cycles = {repo: cycle(sorted(by_intent)) for repo, by_intent in queues.items()}
    rows, dropped, used_keys = [], Counter(), set()
    active = sorted(queues)
    while len(rows) < count and active:
        for repo in list(active):
            if len(rows) == count:
                break
            row = _next_from_repo(queues[repo], intent_cycles[repo], rng, verifier, seen_questions,
                                  used_keys, id_counts, dropped)
            if row is None:
                active.remove(repo)
            else:
                rows.append(row)
    if len(rows) < count:
        raise PoolTooSmall(
            f"asked for {count} {label} examples but only {len(rows)} could be made "
            f"(available {label} candidates: {len(pool)}; dropped: {dict(dropped)})"
        )
    return rows, dropped


def _next_from_repo(by_intent, intents, rng, verifier, seen_questions, used_keys, id_counts, dropped):
    """The next good example of one repository, cycling intents; None when the repository is exhausted."""
    for _ in range(len(by_intent)):
        intent = next(intents)
        cands = by_intent[intent]
        while cands:
            cand = cands.pop()
            if (cand.label, cand.intent, cand.key) in used_keys:
                continue
            question, shape = render(cand, rng)
            norm = normalise_question(question)
            if norm in seen_questions:
                dropped["duplicate_question"] += 1
                continue
            if reason := verifier.check(cand):
                dropped[reason] += 1
                continue
            used_keys.add((cand.label, cand.intent, cand.key))
            seen_questions.add(norm)
            base = f"{cand.repo}/{cand.label}/{cand.key}"
            n = id_counts[base]
            id_counts[base] += 1
            return to_row(cand, question, shape, n)
    return None


def generate_examples(facts: list[FileFacts], repos_root: Path, counts: dict[str, int], seed: int,
                      curated_direct: int, curated_from_end: bool = False) -> Selection:
    """Exactly counts[label] verified examples per label; `curated_direct` of the direct ones are curated."""
    rng = random.Random(seed)
    verifier = Verifier(repos_root)
    repos = sorted({f.repo for f in facts})
    documents = [path for repo in repos for path in document_files(repos_root, repo)]
    pools = {"grep": grep_candidates(facts), "read": read_candidates(facts, documents),
             "direct": direct_candidates(facts)}
    curated = curated_candidates(CURATED_DIRECT, curated_direct, curated_from_end)
    available = {label: len(pool) for label, pool in pools.items()}
    available["direct"] += len(curated)
    short = {label: (counts[label], available[label]) for label in LABELS if counts[label] > available[label]}
    if short:
        detail = ", ".join(f"{label}: asked {asked}, available {have}" for label, (asked, have) in short.items())
        raise PoolTooSmall(f"not enough candidates ({detail})")
    seen, ids, rows, dropped = set(), Counter(), [], Counter()
    for label in LABELS:
        want = counts[label]
        if label == "direct":
            for cand in curated:
                question, shape = render(cand, rng)
                seen.add(normalise_question(question))
                rows.append(to_row(cand, question, shape, 0))
            want -= len(curated)
        picked, lost = select(pools[label], want, rng, verifier, seen, ids, label)
        rows.extend(picked)
        dropped.update(lost)
    return Selection(rows, dropped, available)
