"""AST extraction: what each Python file of a repository defines, imports, raises and says.

Files are parsed in parallel across cores; a file that cannot be parsed (syntax
error, newer-Python syntax such as t-strings, not UTF-8, binary, huge) is skipped
and counted by reason, never fatal. Files are found and read the way the tools
read them (tools.text_files, tools.read_bytes): a FIFO, a device, a link loop or a
link leaving the repository is skipped and counted too (not_a_file, outside_root).
Output order follows the sorted file list, so the same tree always gives the same
facts.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import tools

SKIP_DIRS = {"__pycache__", "node_modules", "venv", "build", "dist"}  # hidden folders (.git, .venv) too


@dataclass(frozen=True)
class Symbol:
    kind: str  # "class" | "function" | "async_function" | "method"
    name: str
    qualname: str  # dotted, module included: flask.app.Flask.route
    line: int
    owner: str | None = None  # class name for methods
    decorators: tuple[tuple[str, int], ...] = ()  # (dotted name, line)
    bases: tuple[str, ...] = ()
    docstring: str | None = None
    nested: bool = False  # defined inside a function (a local helper such as `wrapper`)


@dataclass
class FileFacts:
    repo: str
    path: str  # relative to the repos root: flask/src/flask/app.py
    module: str
    docstring: str | None = None
    symbols: list[Symbol] = field(default_factory=list)
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module, line): absolute imports
    relative_imports: list[tuple[str, int]] = field(default_factory=list)  # (".module", line)
    imported_names: list[tuple[str, str, int]] = field(default_factory=list)  # (name, from module, line), one-line
    raises: list[tuple[str, int]] = field(default_factory=list)  # (exception name, line)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (callee name, line)
    strings: list[tuple[str, int]] = field(default_factory=list)  # (message text, line)
    constants: list[tuple[str, int, bool]] = field(default_factory=list)  # (UPPER_NAME, line, annotated?)


@dataclass
class Extraction:
    files: list[FileFacts]
    skipped: Counter  # reason -> count
    scanned: int


def dotted_name(node: ast.AST) -> str | None:
    """`a.b.c` for Name/Attribute chains (a call's func for decorators like @app.get(...))."""
    if isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def module_name(relative: str) -> str:
    """Dotted module name from a repo-relative path, dropping a `src/` layout prefix."""
    parts = list(Path(relative).with_suffix("").parts)
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class _Visitor(ast.NodeVisitor):
    def __init__(self, facts: FileFacts):
        self.facts = facts
        self.scope: list[tuple[str, str]] = []  # (kind, name)

    def _qualname(self, name: str) -> str:
        return ".".join([self.facts.module, *(n for _, n in self.scope), name]).lstrip(".")

    def _definition(self, node, kind: str) -> None:
        owner = self.scope[-1][1] if self.scope and self.scope[-1][0] == "class" else None
        if kind != "class" and owner:
            kind = "method"
        decorators = tuple(
            (name, dec.lineno) for dec in node.decorator_list if (name := dotted_name(dec))
        )
        bases = tuple(b for b in (dotted_name(base) for base in getattr(node, "bases", [])) if b)
        nested = any(scope_kind == "function" for scope_kind, _ in self.scope)
        self.facts.symbols.append(
            Symbol(kind, node.name, self._qualname(node.name), node.lineno, owner, decorators, bases,
                   ast.get_docstring(node), nested)
        )
        self.scope.append(("class" if kind == "class" else "function", node.name))
        self.generic_visit(node)
        self.scope.pop()

    def visit_ClassDef(self, node):
        self._definition(node, "class")

    def visit_FunctionDef(self, node):
        self._definition(node, "function")

    def visit_AsyncFunctionDef(self, node):
        self._definition(node, "async_function")

    def visit_Import(self, node):
        self.facts.imports.extend((alias.name, node.lineno) for alias in node.names)

    def visit_ImportFrom(self, node):
        if not node.module:
            return
        module = "." * node.level + node.module
        (self.facts.relative_imports if node.level else self.facts.imports).append((module, node.lineno))
        if node.lineno == getattr(node, "end_lineno", node.lineno):  # names on the `from` line itself
            self.facts.imported_names.extend((alias.name, module, node.lineno) for alias in node.names)

    def visit_Raise(self, node):
        if node.exc is not None and (name := dotted_name(node.exc)):
            self.facts.raises.append((name, node.lineno))
            if isinstance(node.exc, ast.Call) and node.exc.args:
                first = node.exc.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.lineno == first.end_lineno:
                    self.facts.strings.append((first.value, first.lineno))
        self.generic_visit(node)

    def visit_Call(self, node):
        name = dotted_name(node.func)
        if name and node.lineno == getattr(node.func, "end_lineno", node.lineno):
            self.facts.calls.append((name.rsplit(".", 1)[-1], node.lineno))
        self.generic_visit(node)

    def _constant(self, target, line: int, annotated: bool) -> None:
        if not self.scope and isinstance(target, ast.Name) and target.id.isupper() and len(target.id) > 3:
            self.facts.constants.append((target.id, line, annotated))

    def visit_Assign(self, node):
        for target in node.targets:
            self._constant(target, node.lineno, annotated=False)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):  # NAME: Final = ... (a value is what makes it a constant)
        if node.value is not None:
            self._constant(node.target, node.lineno, annotated=True)
        self.generic_visit(node)


def parse_file(repos_root: str, repo: str, relative: str) -> FileFacts | str:
    """Facts of one file, or the reason it was skipped."""
    try:
        raw = tools.read_bytes(Path(repos_root) / relative, Path(repos_root) / repo)
    except tools.Refused as err:
        return err.reason
    if b"\x00" in raw:
        return "binary"
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        tree = ast.parse(source, filename=relative)
    except SyntaxError:
        return "syntax_error"
    except (ValueError, RecursionError, MemoryError):
        return "unparsable"
    facts = FileFacts(repo, relative, module_name(relative.split("/", 1)[1]), ast.get_docstring(tree))
    _Visitor(facts).visit(tree)
    return facts


def python_files(repos_root: Path, repo: str, skipped: Counter | None = None) -> list[str]:
    """Sorted repos-root-relative paths of the .py files of one repository the tools would read; the ones
    refused (a FIFO, a device, a link loop or leaving the repository, huge) counted by reason in `skipped`."""
    base = Path(repos_root) / repo
    found = tools.text_files(base, base, suffixes={".py"}, skip_dirs=SKIP_DIRS, skipped=skipped)
    return sorted(path.relative_to(repos_root).as_posix() for path in found)


def _parse_task(task: tuple[str, str, str]):
    return parse_file(*task)


def extract_repos(repos_root: Path, repos: list[str], workers: int | None = None) -> Extraction:
    """Parse every Python file of `repos` (in this order), in parallel."""
    refused = Counter()
    tasks = [(str(repos_root), repo, rel) for repo in repos for rel in python_files(repos_root, repo, refused)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(tasks) > 50:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_parse_task, tasks, chunksize=64))
    else:
        results = [_parse_task(task) for task in tasks]
    files = [r for r in results if isinstance(r, FileFacts)]
    skipped = refused + Counter(r for r in results if isinstance(r, str))
    return Extraction(files, skipped, len(tasks) + refused.total())
