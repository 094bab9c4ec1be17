"""The workspace map: what the model is told about the folders its tool paths start with.

A coding agent knows its working tree; a model that is not told has to recall paths
(`marshallaway` for marshmallow, `rich/table.py` for `rich/rich/table.py`). The map
gives one line per repository of the repos root:

    - flask/ code flask/src/flask/ files README.md pyproject.toml CHANGES.rst docs/ tests/

its folder, its package folder(s) as full tool paths, and a few top-level files and
folders people ask for (README, changelog, build config, docs, tests). A line costs
about 25 tokens; the benchmark's 13-repo training root about 330. It goes in a system
message of its own after the system-and-tools prompt, so that prompt stays a prefix
every row and question shares (prompt cache, shared-prefix loss).

Training rows show their repository through a `View`: under another folder name (an
alias such as `flask-3.1.3` or `Flask-main`) and/or with the other package layout
(`src/flask/` shown flat, `fastapi/` shown under `src/`), so that only the map tells
the path. `View.to_real` maps every path the row's call uses back to the real tree,
where the call is run to verify it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

# Folder names that hold tests, docs, examples and tooling, not a package people import.
NOT_PACKAGE = re.compile(r"tests?|testing|\w*_tests?|docs?|docs_src|examples?|typing[-_]\w+|bench\w*|scripts?|"
                         r"changelog\.d|build|dist|\w+\.(dist|egg)-info")
# Top-level entries people ask for by name, in the order the map lists them (at most MAX_FILES files,
# MAX_DIRS folders: a longer line costs every question tokens and tells the model little more).
FILE_ORDER = (re.compile(r"README(\.\w+)?", re.I), re.compile(r"pyproject\.toml"), re.compile(r"setup\.(py|cfg)"),
              re.compile(r"(CHANGES|CHANGELOG|HISTORY|NEWS)(\.\w+)?", re.I))
DIR_ORDER = ("docs", "doc", "tests", "test", "examples")
MAX_PACKAGES, MAX_FILES, MAX_DIRS = 3, 4, 2
HEADER = "Workspace folders (tool paths start with one of them):"


@dataclass(frozen=True)
class RepoLayout:
    """One repository as the map shows it; paths relative to the repository folder."""

    folder: str
    packages: tuple[str, ...]  # e.g. ("src/flask",) or ("fastapi",)
    files: tuple[str, ...]  # top-level files shown, e.g. ("README.md", "pyproject.toml")
    dirs: tuple[str, ...]  # top-level folders shown, e.g. ("docs", "tests")

    def line(self) -> str:
        parts = [f"- {self.folder}/"]
        if self.packages:
            parts.append("code " + " ".join(f"{self.folder}/{p}/" for p in self.packages))
        shown = [*self.files, *(f"{d}/" for d in self.dirs)]
        if shown:
            parts.append("files " + " ".join(shown))
        return " ".join(parts)


def _is_package(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / "__init__.py").is_file() \
        and not NOT_PACKAGE.fullmatch(path.name) and not path.name.startswith(".")


def scan_repo(root: Path, folder: str) -> RepoLayout:
    """The layout of `root/folder`: packages at its top or under `src/`, and the top-level entries people ask for."""
    base = Path(root) / folder
    entries = sorted(os.listdir(base))
    packages = [name for name in entries if _is_package(base / name)]
    if (base / "src").is_dir():
        packages += [f"src/{name}" for name in sorted(os.listdir(base / "src")) if _is_package(base / "src" / name)]
    stem = folder.lower().replace("-", "_")
    packages.sort(key=lambda p: (Path(p).name.lower() != stem, Path(p).name.startswith("_"), p))
    files = []
    for pattern in FILE_ORDER:
        files += [name for name in entries if pattern.fullmatch(name) and (base / name).is_file() and name not in files]
    dirs = [name for name in DIR_ORDER if name in entries and (base / name).is_dir()]
    return RepoLayout(folder, tuple(packages[:MAX_PACKAGES]), tuple(files[:MAX_FILES]), tuple(dirs[:MAX_DIRS]))


def repo_folders(root: Path) -> list[str]:
    """The repository folders of a repos root, sorted (hidden folders such as `.pins` are not repositories)."""
    return sorted(name for name in os.listdir(root) if not name.startswith(".") and (Path(root) / name).is_dir())


def scan_roots(roots: list[Path]) -> list[RepoLayout]:
    """Every repository of the given repos roots; a folder in two roots is the first root's (as the tools resolve it)."""
    layouts, seen = [], set()
    for root in roots:
        if not Path(root).is_dir():
            continue
        for folder in repo_folders(root):
            if folder not in seen:
                seen.add(folder)
                layouts.append(scan_repo(root, folder))
    return layouts


def render_map(layouts: list[RepoLayout]) -> str:
    return "\n".join([HEADER, *(layout.line() for layout in layouts)])


def map_message(layouts: list[RepoLayout]) -> dict:
    """The map as the chat message that follows the system-and-tools prompt."""
    return {"role": "system", "content": render_map(layouts)}


# ----------------------------------------------------------------------------------- views for training


def _swap_src(package: str) -> str:
    return package[len("src/"):] if package.startswith("src/") else f"src/{package}"


@dataclass(frozen=True)
class View:
    """How one training row shows a real repository: its folder name and whether its src layout is swapped."""

    real: RepoLayout
    folder: str
    swap_src: bool = False

    @property
    def shown(self) -> RepoLayout:
        packages = tuple(_swap_src(p) for p in self.real.packages) if self.swap_src else self.real.packages
        return replace(self.real, folder=self.folder, packages=packages)

    @property
    def identity(self) -> bool:
        return self.folder == self.real.folder and not self.swap_src

    def _convert(self, path: str, to_view: bool) -> str:
        src, dst = (self.real, self.shown) if to_view else (self.shown, self.real)
        head, _, rest = path.partition("/")
        if head != src.folder:
            raise ValueError(f"{path!r} is not under {src.folder}/")
        for old, new in zip(src.packages, dst.packages):
            if rest == old or rest.startswith(old + "/"):
                rest = new + rest[len(old):]
                break
        return f"{dst.folder}/{rest}" if rest else dst.folder

    def to_view(self, real_path: str) -> str:
        """A repos-root-relative path of the real tree as this view shows it."""
        return self._convert(real_path, to_view=True)

    def to_real(self, shown_path: str) -> str:
        """A path written against this view, in the real tree (where calls are run)."""
        return self._convert(shown_path, to_view=False)


def aliases(folder: str, version: str | None) -> list[str]:
    """Other names a checkout of `folder` commonly has: release archives, branch zips, forks, renamed clones."""
    names = [f"{folder}-main", f"{folder}-master", f"{folder}_src", f"{folder}-dev", f"python-{folder}",
             f"{folder}2", f"{folder}-repo", f"my-{folder}"]
    if version:
        names += [f"{folder}-{version}", f"{folder}-v{version}"]
    return [name for name in names if name != folder]


def swappable(layout: RepoLayout) -> bool:
    """A layout whose packages can be shown the other way (all under src/, or all at the top)."""
    return bool(layout.packages) and len({p.startswith("src/") for p in layout.packages}) == 1
