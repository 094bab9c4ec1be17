"""The two tools (grep, read): their specs as the model sees them, and their confined execution.

Paths are relative to a repos root: `grep(pattern, path="flask")` searches
`<root>/flask`, `read(path="flask/src/flask/app.py")` opens one file. Nothing
outside the root is ever touched: absolute paths, `..` and symlinks that leave
the root are refused. A pattern runs with a time limit (the `regex` module's
`timeout`), so a catastrophic regex from a model cannot hang the caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex

SYSTEM_PROMPT = (
    "You are a coding assistant for the Python repositories in the workspace. "
    "To locate code whose file is unknown, call grep. "
    "To see a file the user names, call read. "
    "For general, conceptual or unrelated questions, answer directly without tools."
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "grep",
            "description": "Search files under a path for a regular expression; returns matching lines.",
            "parameters": {
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Python regular expression"},
                    "path": {"type": "string", "description": "repository or folder, e.g. flask"},
                },
                "required": ["pattern", "path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read",
            "description": "Read one file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "file path, e.g. flask/src/flask/app.py"},
                },
                "required": ["path"],
            },
        },
    },
]

TEXT_SUFFIXES = frozenset(
    ".py .pyi .md .rst .txt .toml .cfg .ini .yml .yaml .json .html .htm .jinja .j2 .css .js .sh .in".split()
)
MAX_FILE_BYTES = 1_000_000
REGEX_TIMEOUT_S = 2.0


class ToolError(ValueError):
    """A tool call that cannot run: bad path, escape attempt, bad or slow regex."""


@dataclass(frozen=True)
class Hit:
    path: str  # relative to the repos root, '/'-separated
    line: int  # 1-based
    text: str


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths, `..` and symlink escapes."""
    if not isinstance(relative, str) or not relative.strip():
        raise ToolError("path must be a non-empty string")
    relative = relative.strip()
    if "\x00" in relative:
        raise ToolError(f"NUL byte in path: {relative!r}")
    if os.path.isabs(relative) or relative.startswith(("~", "\\")):
        raise ToolError(f"absolute paths are not allowed: {relative!r}")
    if ".." in Path(relative).parts:
        raise ToolError(f"'..' is not allowed in paths: {relative!r}")
    root = Path(root).resolve()
    try:
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise ToolError(f"path leaves the repos root: {relative!r}")
        if not target.exists():
            raise ToolError(f"no such file or folder: {relative!r}")
    except (OSError, RuntimeError, ValueError) as err:  # too long a name, a symlink loop: a bad call, not a crash
        if isinstance(err, ToolError):
            raise
        raise ToolError(f"unusable path {relative[:80]!r}: {type(err).__name__}: {err}") from None
    return target


def is_text_file(path: Path) -> bool:
    """A file the tools read: a known text suffix, a file, at most MAX_FILE_BYTES."""
    return path.suffix.lower() in TEXT_SUFFIXES and path.is_file() and path.stat().st_size <= MAX_FILE_BYTES


@lru_cache(maxsize=64)
def _corpus(folder: Path, root: Path) -> tuple[tuple[str, str], ...]:
    """Every searchable text file under `folder` (sorted), as (relative path, text); cached per folder."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                resolved = path.resolve()
                if root not in resolved.parents:
                    continue
            text = _read_text(path)
            if text is None:
                continue
            files.append((path.relative_to(root).as_posix(), text))
    return tuple(files)


def compile_pattern(pattern: str) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise ToolError("pattern must be a non-empty string")
    try:
        return regex.compile(pattern, regex.MULTILINE)
    except (regex.error, OverflowError, RecursionError) as err:
        raise ToolError(f"invalid regular expression {pattern!r}: {err}") from None


def grep(root: Path, pattern: str, path: str, max_hits: int | None = None, timeout: float = REGEX_TIMEOUT_S) -> list[Hit]:
    """Lines under `root/path` matching `pattern`, in file order; one hit per matching line."""
    root = Path(root).resolve()
    target = resolve_inside(root, path)
    compiled = compile_pattern(pattern)
    if target.is_file():
        files = [(target.relative_to(root).as_posix(), _read_text(target))]
    else:
        files = _corpus(target, root)
    hits: list[Hit] = []
    for rel, text in files:
        if text is None:
            continue
        try:
            matches = list(compiled.finditer(text, timeout=timeout))
        except TimeoutError:
            raise ToolError(f"regular expression took longer than {timeout}s: {pattern!r}") from None
        seen_lines = set()
        for match in matches:
            if not match.group(0) and pattern in ("^", "$"):
                continue
            line_no = text.count("\n", 0, match.start()) + 1
            if line_no in seen_lines:
                continue
            seen_lines.add(line_no)
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.start())
            hits.append(Hit(rel, line_no, text[start : end if end != -1 else len(text)]))
            if max_hits is not None and len(hits) >= max_hits:
                return hits
    return hits


def _read_text(path: Path) -> str | None:
    if not is_text_file(path):
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def read(root: Path, path: str) -> str:
    """The text of one file under `root`; folders, binary and huge files are refused."""
    target = resolve_inside(Path(root), path)
    if not target.is_file():
        raise ToolError(f"not a file: {path!r}")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"file is larger than {MAX_FILE_BYTES} bytes: {path!r}")
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"not a UTF-8 text file: {path!r}") from None


def tool_call(name: str, **arguments) -> dict:
    """An assistant message holding one tool call, arguments as a JSON object (never a string)."""
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}
