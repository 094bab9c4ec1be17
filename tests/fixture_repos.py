"""Tiny but real repositories for the data tests, written into a temp folder.

`make_repos(root)` writes two repositories: "gadgets" (role train, src layout,
HTML templates, a test folder) and "bolts" (role phase5), plus broken files that
must be skipped and counted, and a manifest naming both.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

MODULE = '''\
"""The {name} module: helpers that assemble and inspect {name} parts for the gadget factory."""

import json
from collections import OrderedDict

from {pkg}.core import registry

{const}_LIMIT = {i}


def register_{name}(func):
    """Register a {name} builder so the factory can find it by name later on."""
    registry[func.__name__] = func
    return func


class {cls}Error(ValueError):
    """Raised when a {name} part cannot be assembled from the given pieces."""


class {cls}Base:
    """Common behaviour of every {name} part: naming, validation and serialisation."""

    def describe_{name}(self):
        return json.dumps(OrderedDict(kind="{name}"))


class {cls}Part({cls}Base):
    """A concrete {name} part that knows how to assemble itself from raw pieces."""

    @register_{name}
    def assemble_{name}(self, pieces):
        if not pieces:
            raise {cls}Error("No pieces were given for assembly of {name}")
        return self.describe_{name}()


async def fetch_{name}_parts(source):
    """Fetch the raw pieces of a {name} part from an asynchronous source."""
    return await source.read()


def build_{name}_report(parts):
    """Build a short textual report that lists every {name} part and its state."""
    return [compute_{name}_checksum(part) for part in parts]


def compute_{name}_checksum(part):
    return hash(part)


from .core import registry as shared_registry

{const}_LABEL: str = "{name}-part"
{const}_UNITS = ("mm", "cm")
{const}_SCALE: float = 1.5
'''

TEMPLATE = """<!doctype html>
<html lang="en">
<head><title>{title}</title></head>
<body>
<header><nav aria-label="Main"><a href="/">Home</a></nav></header>
<main>
<form method="post"><label for="q">Query</label><input id="q" name="q"><button>Go</button></form>
<table><tr><th>Name</th></tr></table>
<img src="logo.png" alt="Logo">
<section><article><textarea name="body"></textarea></article></section>
</main>
</body>
</html>
"""

NAMES = ["sprocket", "flange", "gasket", "spindle", "washer", "bracket", "hinge", "rivet"]


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def _package(repo_dir: Path, pkg: str, names: list[str]) -> None:
    _write(repo_dir / "src" / pkg / "__init__.py", f'"""The {pkg} package."""\n')
    _write(repo_dir / "src" / pkg / "core.py", '"""Core registry shared by every part module."""\n\nregistry = {}\n')
    for i, name in enumerate(names):
        module = MODULE.format(name=name, cls=name.capitalize(), const=name.upper(), pkg=pkg, i=i)
        _write(repo_dir / "src" / pkg / f"{name}.py", module)
    _write(repo_dir / "README.md", f"# {pkg}\n\nParts for the gadget factory.\n")
    _write(repo_dir / "pyproject.toml", f'[project]\nname = "{pkg}"\nversion = "1.0"\n')


BROKEN = {
    "syntax_error.py": "def broken(:\n    pass\n",
    "tstring.py": 'name = "x"\ngreeting = t"Hello {name}"\n',
    "binary.py": b"\x00\x01\x02binary",
    "latin1.py": "caf\u00e9 = 1\n".encode("latin-1"),
}
# Files of BROKEN that do not parse: t-strings are newer syntax only before Python 3.14 (PEP 750).
SYNTAX_ERRORS = 2 if sys.version_info < (3, 14) else 1


def make_repos(root: Path) -> Path:
    """Write the fixture repositories and their manifest under `root`; returns the manifest path."""
    gadgets = root / "gadgets"
    _package(gadgets, "gadgets", NAMES)
    _write(gadgets / "tests" / "test_parts.py", "def test_parts():\n    assert True\n")
    for name in ("index", "search", "list", "detail", "edit", "login"):
        _write(gadgets / "templates" / f"{name}.html", TEMPLATE.format(title=name.capitalize()))
    for name, content in BROKEN.items():
        _write(gadgets / "src" / "gadgets" / "broken" / name, content)
    _package(root / "bolts", "bolts", ["nut", "bolt", "screw", "anchor"])
    manifest = root / "repos.toml"
    manifest.write_text(textwrap.dedent("""\
        [gadgets]
        git = "file:///nonexistent/gadgets.git"
        tag = "1.0"
        pypi = "gadgets"
        version = "1.0"
        role = "train"

        [bolts]
        git = "file:///nonexistent/bolts.git"
        tag = "1.0"
        pypi = "bolts"
        version = "1.0"
        role = "phase5"
        """))
    return manifest
