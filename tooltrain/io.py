"""JSONL and JSON files: strict reading, atomic writing (temp file + rename); whole folders replaced at once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator


class MalformedJSONL(ValueError):
    """A JSON(L) file or line that cannot be used; names the file (and line)."""


MANIFEST = "manifest.json"


@contextmanager
def _temp_beside(path: Path, mode: str) -> Iterator[tuple]:
    """A temp file beside `path`, as (open file, its path): on disk in full when the block ends, gone if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8", newline=None if "b" in mode else "\n") as f:
            yield f, Path(tmp)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    with _temp_beside(Path(path), mode) as (f, tmp):
        yield f
    os.replace(tmp, path)


def replace_folder(dest: Path, fill: Callable[[Path], Path | None]) -> None:
    """Build a folder beside `dest`, then swap it in: `fill(new)` creates `new` (it does not exist yet)
    and returns the folder to become `dest` (`new` or one inside it; None means `new`). If `fill`
    raises, what it built goes and `dest` is untouched: a half-built folder is never found at `dest`.
    The old folder is moved aside until the new one is in place, then removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        new = staging / "new"
        root = fill(new) or new
        if dest.exists():
            dest.rename(staging / "old")
        Path(root).rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(folders: dict[Path, dict[str, str]]) -> None:
    """Replace the files of one or more stage folders together: {folder: {file name: text}}, each with its manifest.

    Every file is first written in full beside its target, the manifests last. Only then are the old manifests
    removed and the files renamed into place, in the same order. So nothing is replaced before all of its
    replacements exist, and an interrupted run leaves a folder without a manifest: marked incomplete.
    """
    order = [(Path(folder) / name, text) for folder, files in folders.items() for name, text in files.items()]
    order.sort(key=lambda item: item[0].name == MANIFEST)  # stable: the manifests last, in the order given
    staged: list[tuple[Path, Path]] = []
    try:
        for target, text in order:
            with _temp_beside(target, "w") as (f, tmp):
                f.write(text)
            staged.append((tmp, target))
        for folder in folders:
            (Path(folder) / MANIFEST).unlink(missing_ok=True)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def dumps(row: dict) -> str:
    """One canonical JSON line: key order kept, non-ASCII kept, no trailing spaces."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def jsonl_text(rows: Iterable[dict]) -> str:
    """Rows as the text of a JSONL file."""
    return "".join(dumps(row) + "\n" for row in rows)


def json_text(data) -> str:
    """Pretty JSON, keys in the order given."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Atomically write rows as JSONL; returns the number written."""
    count = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            count += 1
    return count


def read_jsonl(path: Path, check: Callable[[dict], str | None] | None = None) -> list[dict]:
    """Read a JSONL file; a blank line is skipped, anything else that is not an object is an error naming file
    and line, and so is a row for which `check` names a problem."""
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedJSONL(f"{path}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise MalformedJSONL(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise MalformedJSONL(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            if check and (problem := check(row)):
                raise MalformedJSONL(f"{path}:{number}: {problem}")
            rows.append(row)
    return rows


def read_json(path: Path):
    """A JSON file's data; text that is not UTF-8 JSON is an error naming the file."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedJSONL(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise MalformedJSONL(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def write_json(path: Path, data) -> None:
    """Atomically write pretty JSON, keys in the order given."""
    write_text(path, json_text(data))


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def sha256_text(text: str) -> str:
    """Hex sha256 of text as a file written here holds it (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(*paths: Path) -> str:
    """The first 16 hex digits of the sha256 of the files' bytes, one after another."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (most processes never draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write a matplotlib figure to `path` as a PNG, atomically, and free it."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    pyplot().close(fig)
