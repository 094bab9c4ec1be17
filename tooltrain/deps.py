"""The project files an entry script runs, for the Makefile's prerequisites.

A stage must rerun when any code it runs changes, and a hand-kept list of modules drifts as
imports change. Here the list is derived: from each entry file, every `tooltrain` module it
imports (at the top or inside a function: a lazy import still runs), followed transitively,
plus the package's resource files those modules name. Only the standard library is used, so
make can call it with any Python 3.11+ before the project's environment exists.

    python -m tooltrain.deps scripts/train_adapter.py     # prints the files, one line, sorted
    python -m tooltrain.deps --make ENTRY...              # `code/ENTRY := files` lines for make to include
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tooltrain"


def _module_file(name: str) -> Path | None:
    """The file of project module `name` (`tooltrain.x` -> tooltrain/x.py, a package -> its __init__)."""
    if name.split(".")[0] not in (PACKAGE, "scripts"):
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path) -> set[str]:
    """Every module name `path` imports, absolute, with the parent packages it runs on the way."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".") if node.level else []
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {".".join(n.split(".")[:k]) for n in names for k in range(1, n.count(".") + 2)}


def _resources(path: Path) -> set[Path]:
    """The package's resource files whose names appear in `path`'s text."""
    text = path.read_text()
    return {f for f in (ROOT / PACKAGE / "resources").glob("*") if f.name in text}


def code_files(*entries: str | Path) -> list[str]:
    """Every project file the entries run or read as code data, relative to the root, sorted."""
    todo = [Path(e) if Path(e).is_absolute() else ROOT / e for e in entries]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.suffix == ".py":
            todo.extend(f for f in map(_module_file, _imported(path)) if f)
            todo.extend(_resources(path))
    return sorted(str(p.relative_to(ROOT)) for p in seen)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--make"]:
        for entry in argv[1:]:
            print(f"code/{entry} := {' '.join(code_files(entry))}")
    else:
        print(" ".join(code_files(*argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
