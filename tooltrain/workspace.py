"""The workspace map: what the model is told about the folders its tool paths start with.

A coding agent knows its working tree; a model that is not told has to recall paths
(`marshallaway` for marshmallow, `rich/table.py` for `rich/rich/table.py`). The map
gives one line per repository of the repos root:

    - flask/: flask/src/flask/ README.md CHANGES.rst

its folder, its package folder(s) as full tool paths, and the top-level files whose
names vary from project to project: the README (.md, .rst, .txt) and the changelog
(CHANGES, CHANGELOG, HISTORY, NEWS). Files every project names alike (pyproject.toml,
setup.cfg) and folders (docs/, tests/) are left out: the model can write those paths
from the folder, and every token of the map is a token of every training row (a line
is ~20 tokens, the rows' own text only ~65; a map with 30-token lines made a training
step 1.6x slower). It goes in a system message of its own after the system-and-tools
prompt, so that prompt stays a prefix every row and question shares (prompt cache,
shared-prefix loss).

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

from . import tools

# Folder names that hold tests, docs, examples and tooling, not a package people import.
NOT_PACKAGE = re.compile(r"tests?|testing|\w*_tests?|docs?|docs_src|examples?|typing[-_]\w+|bench\w*|scripts?|"
                         r"changelog\.d|build|dist|\w+\.(dist|egg)-info")
# Top-level files whose names vary, in the order the map lists them (one of each kind).
FILE_KINDS = (re.compile(r"README(\.\w+)?", re.I), re.compile(r"(CHANGES|CHANGELOG|HISTORY|NEWS)(\.\w+)?", re.I))
MAX_PACKAGES = 3
HEADER = "Workspace folders:"


@dataclass(frozen=True)
class RepoLayout:
    """One repository as the map shows it; paths relative to the repository folder."""

    folder: str
    packages: tuple[str, ...]  # e.g. ("src/flask",) or ("fastapi",)
    files: tuple[str, ...]  # top-level files shown, e.g. ("README.rst", "CHANGES.rst")

    def line(self) -> str:
        return " ".join([f"- {self.folder}/:", *(f"{self.folder}/{p}/" for p in self.packages), *self.files])


def _is_package(path: Path, base: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and tools.readable(path / "__init__.py", base) \
        and not NOT_PACKAGE.fullmatch(path.name) and not path.name.startswith(".")


def scan_repo(root: Path, folder: str) -> RepoLayout:
    """The layout of `root/folder`: packages at its top or under `src/`, and the top-level entries people ask for
    (only files the tools read: a link leaving the folder, a FIFO or a device is not shown)."""
    base = Path(root) / folder
    entries = sorted(os.listdir(base))
    packages = [name for name in entries if _is_package(base / name, base)]
    if (base / "src").is_dir():
        packages += [f"src/{name}" for name in sorted(os.listdir(base / "src"))
                     if _is_package(base / "src" / name, base)]
    stem = folder.lower().replace("-", "_")
    packages.sort(key=lambda p: (Path(p).name.lower() != stem, Path(p).name.startswith("_"), p))
    readable = [name for name in entries if tools.readable(base / name, base)]
    files = [next(name for name in readable if kind.fullmatch(name))
             for kind in FILE_KINDS if any(kind.fullmatch(name) for name in readable)]
    return RepoLayout(folder, tuple(packages[:MAX_PACKAGES]), tuple(files))


def repo_folders(root: Path) -> list[str]:
    """The repository folders of a repos root, sorted: not hidden (such as `.pins`), and not a link to a folder
    outside the root (the tools would refuse every path in it)."""
    return sorted(name for name in os.listdir(root) if not name.startswith(".") and (Path(root) / name).is_dir()
                  and tools.inside(Path(root) / name, root))


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


# Checkouts named after their role rather than the project (a monorepo's parts, a renamed clone): the
# question's name then matches only the package folder the map shows, and the folder must be copied.
GENERIC_FOLDERS = ("backend", "server", "core", "lib", "service", "app", "upstream", "vendor", "project", "work",
                   "api", "toolkit", "platform", "engine", "common", "shared")


def aliases(folder: str, version: str | None) -> list[str]:
    """Other names a checkout of `folder` commonly has: release archives, branch zips, forks, renamed clones."""
    names = [f"{folder}-main", f"{folder}-master", f"{folder}_src", f"{folder}-dev", f"python-{folder}",
             f"{folder}2", f"{folder}-repo", f"my-{folder}"]
    if version:
        names += [f"{folder}-{version}", f"{folder}-v{version}"]
    return [name for name in names if name != folder]


# Syllables of invented project names: a user's own checkout ("quorvane", "tellibrix-api") is a name the model
# cannot have seen, so the folder must be copied from the map, token by token.
ONSETS = ("b", "br", "c", "d", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pl", "qu", "r", "s", "st",
          "t", "tr", "v", "w", "z")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y")
CODAS = ("", "", "", "n", "r", "l", "x", "s", "th", "ck", "m")
SUFFIXES = ("", "", "", "", "-api", "-core", "-py", "_utils", "-service", "-lib", "2", "-tools", "_app")


def invented_name(rng) -> str:
    """A pronounceable project name that exists nowhere (2-3 syllables, sometimes a suffix)."""
    stem = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((2, 2, 3))))
    return stem + rng.choice(SUFFIXES)


def swappable(layout: RepoLayout) -> bool:
    """A layout whose packages can be shown the other way (all under src/, or all at the top)."""
    return bool(layout.packages) and len({p.startswith("src/") for p in layout.packages}) == 1
