"""JSONL and JSON files: strict reading, atomic writing (temp file + rename)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


class MalformedJSONL(ValueError):
    """A JSONL line that is not one JSON object; names the file and line."""


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8", newline=None if "b" in mode else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(row: dict) -> str:
    """One canonical JSON line: key order kept, non-ASCII kept, no trailing spaces."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Atomically write rows as JSONL; returns the number written."""
    count = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a blank line is skipped, anything else that is not an object is an error."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise MalformedJSONL(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise MalformedJSONL(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def write_json(path: Path, data) -> None:
    """Atomically write pretty, key-sorted-as-given JSON."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
