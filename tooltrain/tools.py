"""The two tools (grep, read): their specs as the model sees them, and their confined execution.

Paths are relative to a repos root: `grep(pattern, path="flask")` searches
`<root>/flask`, `read(path="flask/src/flask/app.py")` opens one file. Nothing
outside the root is ever touched: absolute paths, `..` and symlinks that leave
the root are refused. A grep call runs under one time limit for all its files
(the `regex` module's `timeout` inside a file, a deadline across files) and
stops at a cap on hits, so a catastrophic regex from a model cannot hang the caller.

Every reader of repository files (these tools, the AST pass, the HTML examples,
guided decoding, the workspace map) goes through `text_files` and `read_bytes`:
only regular files whose real path stays inside the root, never more than
MAX_FILE_BYTES + 1 bytes read, never blocking on a FIFO or a device.
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex

LABELS = ("grep", "read", "direct")  # what the model does with a question: call grep, call read, or answer

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
REGEX_TIMEOUT_S = 2.0  # for a whole grep call, over all its files
MAX_HITS = 1000  # grep stops here and says so (Hits.capped)
COUNTED_REPEAT = regex.compile(r"\{(\d+)(?:,\d*)?\}")  # a{3} or a{3,5}: the minimum count, as written
MAX_UNROLLED = 100_000  # ((ab){300}){300} compiles in 0.4 s and 70 MB


class ToolError(ValueError):
    """A tool call that cannot run: bad path, escape attempt, bad or slow regex."""


class Refused(ToolError):
    """A file no reader may read; `reason` is the short name skips are counted by."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Hit:
    path: str  # relative to the repos root, '/'-separated
    line: int  # 1-based
    text: str


class Hits(list):
    """Grep's matching lines in file order; `capped` when more lines matched than the cap kept."""

    capped = False


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


def inside(path: Path, root: Path) -> bool:
    """Whether the real path of `path` (links followed) is under `root`; a loop or a bad name is not."""
    try:
        return Path(root).resolve() in Path(path).resolve(strict=True).parents
    except (OSError, RuntimeError, ValueError):
        return False


def check_file(path: Path, root: Path) -> Path:
    """The real path of `path` if readers may read it: a regular file inside `root`, at most MAX_FILE_BYTES;
    else Refused: a link leaving the root, a loop, a FIFO, a device, a folder, a huge file."""
    root = Path(root).resolve()
    try:
        real = Path(path).resolve(strict=True)
        info = real.stat()
    except (OSError, RuntimeError, ValueError) as err:
        raise Refused("not_a_file", f"not a file ({type(err).__name__})") from None
    if real != root and root not in real.parents:
        raise Refused("outside_root", "a link leaving the root")
    if not stat.S_ISREG(info.st_mode):
        raise Refused("not_a_file", "not a file")
    if info.st_size > MAX_FILE_BYTES:
        raise Refused("huge", f"file is larger than {MAX_FILE_BYTES} bytes")
    return real


def readable(path: Path, root: Path) -> bool:
    """Whether `check_file` lets `path` through (a regular file inside `root`, not huge)."""
    try:
        check_file(path, root)
        return True
    except Refused:
        return False


def read_bytes(path: Path, root: Path) -> bytes:
    """The bytes of a file `check_file` lets through, reading at most MAX_FILE_BYTES + 1: opened without
    following a link or waiting for a writer, and checked again once open (it may have changed since)."""
    real = check_file(path, root)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Refused("not_a_file", "not a file")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise Refused("unreadable", f"unreadable file ({err.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise Refused("huge", f"file is larger than {MAX_FILE_BYTES} bytes")
    return data


def read_text(path: Path, root: Path) -> str:
    """`read_bytes` as UTF-8 text; Refused("not_utf8") otherwise."""
    try:
        return read_bytes(path, root).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not_utf8", "not a UTF-8 text file") from None


def _walk(folder: Path, skip_dirs) -> Iterator[Path]:
    """Every file under `folder` in walk order (sorted, a folder's files before its subfolders); hidden names
    and `skip_dirs` left out, linked folders not entered (so no loops)."""
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip_dirs)
        yield from (Path(here) / name for name in sorted(names) if not name.startswith("."))


def text_files(folder: Path, root: Path, suffixes=TEXT_SUFFIXES, skip_dirs=(),
               skipped: Counter | None = None) -> Iterator[Path]:
    """The files at or under `folder` that readers read: a suffix of `suffixes`, found by `_walk`, and let
    through by `check_file` against `root`; files refused are counted by reason in `skipped`."""
    root, folder = Path(root).resolve(), Path(folder)
    walked = folder.is_dir()
    if walked and folder.resolve() != root and root not in folder.resolve().parents:
        return  # a folder outside the root holds nothing to read
    for path in _walk(folder, skip_dirs) if walked else [folder]:
        if path.suffix.lower() not in suffixes:
            continue
        if walked and _plain_file(path):  # its folders are inside `root` and none is a link: nothing to resolve
            yield path
            continue
        try:
            check_file(path, root)
        except Refused as err:
            if skipped is not None:
                skipped[err.reason] += 1
            continue
        yield path


def _plain_file(path: Path) -> bool:
    """A regular file, not a link, at most MAX_FILE_BYTES (one lstat; anything else gets the full check)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES


@lru_cache(maxsize=64)
def _corpus(target: Path, root: Path) -> tuple[tuple[str, str], ...]:
    """Every searchable UTF-8 text file at or under `target`, as (relative path, text); cached per target."""
    files = []
    for path in text_files(target, root):
        try:
            files.append((path.relative_to(root).as_posix(), read_text(path, root)))
        except Refused:
            continue
    return tuple(files)


def compile_pattern(pattern: str) -> regex.Pattern:
    """The pattern compiled, or a ToolError. The regex module unrolls counted repeats as it compiles, outside
    any timeout (`(a{1000}){5000}` takes seconds and GBs), so the product of their minimum counts is bounded."""
    if not isinstance(pattern, str) or not pattern:
        raise ToolError("pattern must be a non-empty string")
    unrolled = 1
    for count in COUNTED_REPEAT.findall(pattern):
        unrolled *= int(count) if len(count) < 10 else 10**10
        if unrolled > MAX_UNROLLED:
            raise ToolError(f"regular expression repeats too much (counts multiply past {MAX_UNROLLED:,}): "
                            f"{pattern[:80]!r}")
    try:
        return regex.compile(pattern, regex.MULTILINE)
    except (regex.error, OverflowError, RecursionError) as err:
        raise ToolError(f"invalid regular expression {pattern!r}: {err}") from None


def grep(root: Path, pattern: str, path: str, max_hits: int = MAX_HITS, timeout: float = REGEX_TIMEOUT_S) -> Hits:
    """Lines under `root/path` matching `pattern`, in file order, one hit per matching line; at most
    `max_hits` (`capped` if more match). `timeout` bounds the whole call, over all its files."""
    root = Path(root).resolve()
    target = resolve_inside(root, path)
    compiled = compile_pattern(pattern)
    deadline = time.monotonic() + timeout
    hits = Hits()
    for rel, text in _corpus(target, root):
        try:
            # The regex module's own timeout stops a runaway match inside a file; the deadline spans the files.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            line_no, counted, last_hit = 1, 0, 0
            for match in compiled.finditer(text, timeout=remaining):
                if not match.group(0) and pattern in ("^", "$"):
                    continue
                line_no += text.count("\n", counted, match.start())
                counted = match.start()
                if line_no == last_hit:
                    continue
                if len(hits) == max_hits:
                    hits.capped = True
                    return hits
                last_hit = line_no
                start = text.rfind("\n", 0, match.start()) + 1
                end = text.find("\n", match.start())
                hits.append(Hit(rel, line_no, text[start : end if end != -1 else len(text)]))
        except TimeoutError:
            raise ToolError(f"regular expression took longer than {timeout}s: {pattern!r}") from None
    return hits


def read(root: Path, path: str) -> str:
    """The text of one file under `root`; folders, FIFOs, devices, binary and huge files are refused."""
    root = Path(root).resolve()
    target = resolve_inside(root, path)
    try:
        return read_text(target, root)
    except Refused as err:
        raise ToolError(f"{err}: {path!r}") from None


def tool_call(name: str, **arguments) -> dict:
    """An assistant message holding one tool call, arguments as a JSON object (never a string)."""
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}


def question_of(row: dict) -> str:
    """The question of a chat row (its user message)."""
    return next(m["content"] for m in row["messages"] if m["role"] == "user")
