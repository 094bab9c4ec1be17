"""Fetch the pinned source repositories into `data/repos/<name>/`.

Route 1 is a shallow gitpython clone at the pinned tag. When that fails (no
network to the git host, most often) route 2 takes the same pinned release
from the package index with `pip download`: the sdist, or for `dist = "wheel"`
the pure-Python wheel. Both routes land a plain source tree (no `.git`, no
sdist top folder) so later stages see one shape. Archives are extracted with
path-traversal checks and a cap on what they expand to, into a staging folder
that is renamed into place only when complete. What each repo got is recorded
in `data/repos/.pins/<name>.json`; `data/repos/manifest.json` is written last.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

import git
from tqdm import tqdm

from .. import paths
from ..io import replace_folder, sha256_file, write_json

ROLES = ("train", "phase5", "eval", "holdout")
DEFAULT_ROLES = ("train", "phase5")
DISTS = ("sdist", "wheel")
PINS_DIR = ".pins"
MANIFEST_JSON = "manifest.json"
# svcs-di and tdom declare Python >= 3.14; their wheels are pure Python, so ask as 3.14.
WHEEL_PYTHON = "3.14"
# The fields that decide what gets fetched; `role` may change without a refetch.
SOURCE_FIELDS = ("git", "tag", "pypi", "version", "dist")
# A repo name becomes a folder name: no separators, no leading dot.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# A source release expands to a few MB (the largest here, 10 MB in 1,500 files): far past that is an archive bomb.
MAX_EXTRACTED_BYTES = 200_000_000
MAX_MEMBERS = 50_000


class ManifestError(ValueError):
    """The repo manifest is missing, not TOML, or has a bad entry."""


class FetchError(RuntimeError):
    """One route could not produce the repo; the message says why."""


class ArchiveError(FetchError):
    """An archive is corrupt, truncated, or has members that would land outside the target."""


@dataclass(frozen=True)
class RepoSpec:
    """One pinned repository from `configs/repos.toml`."""

    name: str
    git: str
    tag: str
    pypi: str
    version: str
    role: str
    dist: str = "sdist"

    def source(self) -> dict:
        return {key: getattr(self, key) for key in SOURCE_FIELDS}


# --------------------------------------------------------------------------- manifest


def load_manifest(path: Path) -> list[RepoSpec]:
    """Read and validate the manifest; any problem is a ManifestError naming the file and entry."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            tables = tomllib.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ManifestError(f"{path}: not valid TOML ({err})") from None
    if not tables:
        raise ManifestError(f"{path}: no repositories listed")
    return [_spec(path, name, table) for name, table in tables.items()]


def _spec(path: Path, name: str, table) -> RepoSpec:
    where = f"{path}: [{name}]"
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: expected a table of keys, got {type(table).__name__}")
    if not NAME_RE.match(name):
        raise ManifestError(f"{where}: a name must be letters, digits, '.', '_' or '-' (it becomes a folder)")
    known = {f.name for f in fields(RepoSpec)} - {"name"}
    required = known - {"dist"}
    if unknown := sorted(set(table) - known):
        raise ManifestError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    if missing := sorted(required - set(table)):
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{where}: {key} must be a non-empty string, got {value!r}")
    spec = RepoSpec(name=name, **table)
    if spec.role not in ROLES:
        raise ManifestError(f"{where}: role must be one of {', '.join(ROLES)}, got {spec.role!r}")
    if spec.dist not in DISTS:
        raise ManifestError(f"{where}: dist must be one of {', '.join(DISTS)}, got {spec.dist!r}")
    return spec


def select(specs: list[RepoSpec], only: list[str] | None = None, role: str | None = None) -> list[RepoSpec]:
    """Repos named by `only` (any role), else those of `role` ("all", one role, default train+phase5)."""
    if only:
        by_name = {spec.name: spec for spec in specs}
        if unknown := [name for name in only if name not in by_name]:
            raise ManifestError(f"unknown repo(s) {', '.join(unknown)}; the manifest has {', '.join(by_name)}")
        return [by_name[name] for name in dict.fromkeys(only)]
    roles = ROLES if role == "all" else (role,) if role else DEFAULT_ROLES
    return [spec for spec in specs if spec.role in roles]


# --------------------------------------------------------------------------- counting, pins


def count_python_files(folder: Path) -> int:
    """Number of `*.py` files under `folder` (symlinked folders are not followed)."""
    return sum(1 for p in Path(folder).rglob("*.py") if p.is_file())


def pin_path(repos_root: Path, name: str) -> Path:
    return Path(repos_root) / PINS_DIR / f"{name}.json"


def read_pin(repos_root: Path, name: str) -> dict | None:
    """The recorded pin, or None if absent or unreadable (then the repo is simply fetched again)."""
    try:
        pin = json.loads(pin_path(repos_root, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return pin if isinstance(pin, dict) else None


def at_pin(spec: RepoSpec, repos_root: Path) -> dict | None:
    """The pin if the repo folder exists and was fetched from exactly this manifest entry."""
    pin = read_pin(repos_root, spec.name)
    if pin and (Path(repos_root) / spec.name).is_dir() and {k: pin.get(k) for k in SOURCE_FIELDS} == spec.source():
        return pin
    return None


# --------------------------------------------------------------------------- placing a tree


def _single_top_folder(folder: Path) -> Path:
    """An sdist wraps everything in `name-version/`; its content is the project root."""
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


# --------------------------------------------------------------------------- route 1: git


def clone(spec: RepoSpec, dest: Path) -> str:
    """Shallow-clone `spec.git` at `spec.tag` into `dest`; returns the commit. Raises git.CommandError."""
    commit = ""

    def fill(target: Path) -> Path:
        nonlocal commit
        # No credential prompt: an unreachable or private URL must fail, not wait for input.
        repo = git.Repo.clone_from(spec.git, target, depth=1, branch=spec.tag, env={"GIT_TERMINAL_PROMPT": "0"})
        commit = repo.head.commit.hexsha
        repo.close()
        # The sdist route has no history; drop it here too so both routes give the same tree.
        shutil.rmtree(target / ".git")
        return target

    replace_folder(dest, fill)
    return commit


def git_reason(err: git.CommandError) -> str:
    """The line of git's stderr that says what went wrong, without the noise around it."""
    lines = [line.strip().strip("'") for line in str(err.stderr or "").splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("fatal:")]
    reason = (fatal or lines or [f"exit status {err.status}"])[-1].removeprefix("fatal:").strip()
    # "unable to access '<url>': Could not resolve host: github.com" -> the part after the URL.
    return re.sub(r"^unable to access '[^']*': ", "", reason)


# --------------------------------------------------------------------------- route 2: package index


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def archive_matches(spec: RepoSpec, filename: str) -> bool:
    """Is `filename` the sdist (or wheel) of exactly `spec.pypi==spec.version`?"""
    if spec.dist == "wheel":
        parts = filename.removesuffix(".whl").split("-")
        return filename.endswith(".whl") and len(parts) >= 5 and (
            _normalize(parts[0]) == _normalize(spec.pypi) and parts[1] == spec.version
        )
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            return _normalize(filename.removesuffix(suffix)) == _normalize(f"{spec.pypi}-{spec.version}")
    return False


def find_archive(spec: RepoSpec, download_dir: Path) -> Path | None:
    """An already downloaded archive of this release, if the cache has one."""
    if not Path(download_dir).is_dir():
        return None
    found = sorted(p for p in Path(download_dir).iterdir() if p.is_file() and archive_matches(spec, p.name))
    return found[0] if found else None


def pip_command(spec: RepoSpec, download_dir: Path) -> list[str]:
    """`pip download` of the pinned release only: no dependencies, sdist or (pure-Python) wheel."""
    if spec.dist == "wheel":
        formats = ["--only-binary", ":all:", "--python-version", WHEEL_PYTHON]
    else:
        formats = ["--no-binary", ":all:"]
    return [sys.executable, "-m", "pip", "download", "--no-deps", *formats,
            "-d", str(download_dir), f"{spec.pypi}=={spec.version}"]


# A downloader puts the release's archive in the download folder and returns its path.
Downloader = Callable[[RepoSpec, Path], Path]


def pip_download(spec: RepoSpec, download_dir: Path) -> Path:
    """Download the release into `download_dir` with pip; returns the archive. Raises FetchError."""
    Path(download_dir).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(pip_command(spec, download_dir), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise FetchError(f"pip download {spec.pypi}=={spec.version} failed: {lines[-1] if lines else done.returncode}")
    archive = find_archive(spec, download_dir)
    if archive is None:
        raise FetchError(f"pip download {spec.pypi}=={spec.version} saved no {spec.dist} in {download_dir}")
    return archive


def unsafe_member(name: str) -> str | None:
    """Why an archive member name may not be extracted, or None if it is a plain relative path."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in path"
    return None


def check_members(archive: Path, members) -> None:
    """Refuse the archive at the first member that may not be extracted or that takes it past the caps.
    `members` yields (name, size, reason or None) as the headers are read, so a bomb's data is never reached;
    the sizes bound what extraction writes (tarfile writes a member's size; zipfile stops at it)."""
    total = count = 0
    for name, size, reason in members:
        if reason := reason or unsafe_member(name):
            raise ArchiveError(f"{archive}: refused member {name!r} ({reason})")
        total, count = total + size, count + 1
        if total > MAX_EXTRACTED_BYTES or count > MAX_MEMBERS:
            raise ArchiveError(f"{archive}: expands to more than {MAX_EXTRACTED_BYTES:,} bytes or {MAX_MEMBERS:,} "
                               f"files (reached at member {name!r}); refused as an archive bomb")


def extract_archive(archive: Path, target: Path) -> None:
    """Extract a .tar.gz/.zip/.whl into `target` after checking every member. Raises ArchiveError."""
    target.mkdir(parents=True)
    try:
        if archive.name.endswith((".zip", ".whl")):
            with zipfile.ZipFile(archive) as zf:
                # zipfile writes a symlink as a file, but one in a source archive is a red flag.
                check_members(archive, ((info.filename, info.file_size,
                                         "symlink" if stat.S_ISLNK(info.external_attr >> 16) else None)
                                        for info in zf.infolist()))
                zf.extractall(target)
        else:
            with tarfile.open(archive) as tf:
                check_members(archive, ((member.name, member.size, None) for member in tf))
                # filter="data" still guards links and special files that the name check cannot see.
                tf.extractall(target, filter="data")
    except tarfile.FilterError as err:
        raise ArchiveError(f"{archive}: refused member {err.tarinfo.name!r} ({err})") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise ArchiveError(f"{archive}: corrupt or unreadable archive ({err})") from None


def unpack(archive: Path, dest: Path) -> None:
    """Place the archive's project tree at `dest`, all or nothing."""

    def fill(target: Path) -> Path:
        extract_archive(archive, target)
        return _single_top_folder(target)

    replace_folder(dest, fill)


# --------------------------------------------------------------------------- one repo, many repos


@dataclass
class Outcome:
    """What happened to one repo in this run."""

    name: str
    status: str  # "fetched", "skipped" or "failed"
    message: str
    python_files: int = 0


def fetch_repo(spec: RepoSpec, repos_root: Path, download_dir: Path, *, force: bool = False,
               downloader: Downloader | None = None, index_only: bool = False) -> Outcome:
    """Bring one repo to its pin: skip, clone, or fall back to the package index (straight there with
    `index_only`: the git host is not contacted)."""
    repos_root, dest = Path(repos_root), Path(repos_root) / spec.name
    if not force and (pin := at_pin(spec, repos_root)):
        release = pin["tag"] if pin["route"] == "git" else pin["version"]
        message = f"{spec.name}: already at pin ({pin['route']} {release}), skipped"
        return Outcome(spec.name, "skipped", message, pin.get("python_files", 0))
    archive = commit = None
    git_failure = "git not tried (--index-only)"
    if not index_only:
        try:
            commit = clone(spec, dest)
        # CommandError covers a failed clone (GitCommandError) and a missing git program.
        except git.CommandError as err:
            git_failure = f"git clone failed ({git_reason(err)})"
    if commit is not None:
        route, message = "git", f"{spec.name}: git clone {spec.git} at {spec.tag} -> commit {commit[:12]}"
    else:
        try:
            archive = find_archive(spec, download_dir)
            cached = " (cached)" if archive else ""
            archive = archive or (downloader or pip_download)(spec, download_dir)
            unpack(archive, dest)
        except (FetchError, OSError) as index_err:
            routes = "package index (--index-only)" if index_only else \
                f"both routes failed: {git_failure}; package index"
            return Outcome(spec.name, "failed", f"error: {spec.name}: {routes}: {index_err}")
        source = f"{spec.dist} {archive.name} from the package index{cached}"
        route, message = spec.dist, f"{spec.name}: {git_failure} -> {source}"
    pin = {"name": spec.name, "role": spec.role, **spec.source(), "route": route,
           "archive": archive and archive.name, "sha256": archive and sha256_file(archive), "commit": commit,
           "python_files": count_python_files(dest)}
    write_json(pin_path(repos_root, spec.name), pin)
    return Outcome(spec.name, "fetched", message, pin["python_files"])


def write_manifest(repos_root: Path) -> dict:
    """`manifest.json`: every repo present with a pin (not only this run's), plus totals. Written last."""
    repos_root = Path(repos_root)
    pins = [read_pin(repos_root, p.stem) for p in sorted((repos_root / PINS_DIR).glob("*.json"))]
    pins = [pin for pin in pins if pin and (repos_root / pin.get("name", "")).is_dir()]
    manifest = {
        "repos": pins,
        "totals": {"repos": len(pins), "python_files": sum(pin.get("python_files", 0) for pin in pins)},
    }
    write_json(repos_root / MANIFEST_JSON, manifest)
    return manifest


def fetch_repos(specs: list[RepoSpec], repos_root: Path, download_dir: Path = paths.DOWNLOADS, *,
                force: bool = False, downloader: Downloader | None = None, index_only: bool = False) -> list[Outcome]:
    """Fetch each repo (a failure does not stop the others), print routes and counts, write the manifest."""
    outcomes = []
    for spec in tqdm(specs, desc="repos", unit="repo", file=sys.stderr):
        outcome = fetch_repo(spec, repos_root, download_dir, force=force, downloader=downloader, index_only=index_only)
        tqdm.write(outcome.message, file=sys.stderr if outcome.status == "failed" else sys.stdout)
        outcomes.append(outcome)
    write_manifest(repos_root)
    print_counts(outcomes)
    return outcomes


def print_counts(outcomes: list[Outcome]) -> None:
    """The closing table: Python files per repo and the total; failures named again."""
    present = [o for o in outcomes if o.status != "failed"]
    width = max([len(o.name) for o in outcomes] + [5])
    print("Python files per repo:")
    for o in present:
        print(f"  {o.name:<{width}}  {o.python_files:>6}")
    print(f"  {'total':<{width}}  {sum(o.python_files for o in present):>6}  ({len(present)} repos)")
    if failed := [o.name for o in outcomes if o.status == "failed"]:
        print(f"FAILED: {', '.join(failed)} (see the error above)", file=sys.stderr)
