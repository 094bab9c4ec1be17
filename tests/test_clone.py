"""Step 19.1: both fetch routes, pins, safety of extraction. Everything local, no network."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import git
import pytest

from scripts.clone_popular_repos import main
from tooltrain.data import repos

UNREACHABLE = "file:///nonexistent/repo.git"
SDIST_FILES = {  # 3 *.py; the .pyi and .pyc must not count
    "pyproject.toml": "[project]\nname = 'demo'\n",
    "src/demo/__init__.py": "",
    "src/demo/core.py": "def f():\n    return 1\n",
    "src/demo/core.pyi": "def f() -> int: ...\n",
    "src/demo/core.pyc": "",
    "tests/test_core.py": "def test_f():\n    pass\n",
}


@pytest.fixture(autouse=True)
def no_index(monkeypatch):
    """The package index is never reached from tests: the index route only finds cached archives."""

    def offline(spec, download_dir):
        raise repos.FetchError(f"pip download {spec.pypi}=={spec.version} failed: no network in tests")

    monkeypatch.setattr(repos, "pip_download", offline)


def write_manifest(path: Path, **entries: dict) -> Path:
    lines = []
    for name, keys in entries.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def entry(git_url: str = UNREACHABLE, version: str = "1.0", **extra) -> dict:
    return {"git": git_url, "tag": f"v{version}", "pypi": "demo", "version": version, "role": "train", **extra}


def make_sdist(folder: Path, name: str = "demo", version: str = "1.0", files: dict = SDIST_FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return archive


def make_zip(path: Path, members: dict[str, str], symlinks: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text)
        for member in symlinks:
            info = zipfile.ZipInfo(member)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../../outside")
    return path


def run(tmp_path: Path, manifest: Path, *extra: str) -> int:
    root, downloads = tmp_path / "repos", tmp_path / "downloads"
    return main(["--manifest", str(manifest), "--repos-root", str(root), "--download-dir", str(downloads), *extra])


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- manifest


def test_manifest_loads_and_selects(tmp_path):
    path = write_manifest(tmp_path / "m.toml", a=entry(), b=entry(role="phase5"),
                          c=entry(role="eval", dist="wheel"))
    specs = repos.load_manifest(path)
    assert specs[2] == repos.RepoSpec("c", UNREACHABLE, "v1.0", "demo", "1.0", "eval", "wheel")
    assert specs[0].dist == "sdist"
    names = lambda **kw: [s.name for s in repos.select(specs, **kw)]  # noqa: E731
    assert names() == ["a", "b"]
    assert names(role="eval") == ["c"]
    assert names(role="all") == ["a", "b", "c"]
    assert names(only=["c", "a", "c"]) == ["c", "a"]
    with pytest.raises(repos.ManifestError, match="unknown repo.*nope"):
        repos.select(specs, only=["nope"])


@pytest.mark.parametrize("keys, error", [
    (entry(role="test"), r"\[a\]: role must be one of train, phase5, eval"),
    (entry(dist="egg"), r"\[a\]: dist must be one of sdist, wheel"),
    ({k: v for k, v in entry().items() if k != "tag"}, r"\[a\]: missing key\(s\) tag"),
    (entry(branch="main"), r"\[a\]: unknown key\(s\) branch"),
    (entry(version=3), r"\[a\]: version must be a non-empty string"),
])
def test_bad_manifest_entry(tmp_path, keys, error):
    with pytest.raises(repos.ManifestError, match=error):
        repos.load_manifest(write_manifest(tmp_path / "m.toml", a=keys))


def test_bad_manifest_file(tmp_path, capsys):
    (tmp_path / "m.toml").write_text("[a\ngit = ")
    with pytest.raises(repos.ManifestError, match="not valid TOML"):
        repos.load_manifest(tmp_path / "m.toml")
    assert run(tmp_path, tmp_path / "m.toml") == 2
    assert "m.toml: not valid TOML" in capsys.readouterr().err
    with pytest.raises(repos.ManifestError, match="manifest not found"):
        repos.load_manifest(tmp_path / "missing.toml")


# --------------------------------------------------------------------------- route 1: git


def make_origin(origin: Path) -> git.Commit:
    """A local git repository tagged v1.0 (one commit after the tag); returns the tagged commit."""
    repo = git.Repo.init(origin)
    me = git.Actor("Test", "test@example.com")
    for name in ("pyproject.toml", "pkg/__init__.py", "pkg/a.py"):
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        (origin / name).write_text("# at the tag\n")
    repo.index.add(["pyproject.toml", "pkg/__init__.py", "pkg/a.py"])
    tagged = repo.index.commit("release", author=me, committer=me)
    repo.create_tag("v1.0")
    (origin / "pkg/later.py").write_text("# after the tag\n")
    repo.index.add(["pkg/later.py"])
    repo.index.commit("after", author=me, committer=me)
    return tagged


def test_git_route_clones_the_tag(tmp_path, capsys):
    origin = tmp_path / "origin"
    tagged = make_origin(origin)
    manifest = write_manifest(tmp_path / "m.toml", demo=entry(git_url=origin.as_uri()))
    assert run(tmp_path, manifest) == 0
    out = capsys.readouterr().out
    assert f"demo: git clone {origin.as_uri()} at v1.0 -> commit {tagged.hexsha[:12]}" in out
    root = tmp_path / "repos"
    assert listing(root / "demo") == ["pkg", "pkg/__init__.py", "pkg/a.py", "pyproject.toml"]
    pin = json.loads((root / ".pins/demo.json").read_text())
    assert (pin["route"], pin["commit"], pin["archive"], pin["python_files"]) == ("git", tagged.hexsha, None, 2)
    assert json.loads((root / "manifest.json").read_text())["totals"] == {"repos": 1, "python_files": 2}
    assert out.splitlines()[-1].split() == ["total", "2", "(1", "repos)"]


# --------------------------------------------------------------------------- route 2: package index


def test_sdist_fallback_when_git_unreachable(tmp_path, capsys):
    archive = make_sdist(tmp_path / "downloads")
    assert run(tmp_path, write_manifest(tmp_path / "m.toml", demo=entry())) == 0
    out = capsys.readouterr().out
    assert "demo: git clone failed (" in out
    assert "-> sdist demo-1.0.tar.gz from the package index (cached)" in out
    tree = tmp_path / "repos" / "demo"
    assert (tree / "pyproject.toml").is_file()  # the sdist's demo-1.0/ folder is stripped
    assert repos.count_python_files(tree) == 3
    pin = json.loads((tmp_path / "repos/.pins/demo.json").read_text())
    assert pin["route"] == "sdist" and pin["archive"] == "demo-1.0.tar.gz" and pin["commit"] is None
    assert pin["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert pin["python_files"] == 3


def test_index_only_never_contacts_the_git_host(tmp_path, capsys):
    origin = tmp_path / "origin"
    make_origin(origin)  # a clone would work: --index-only must not make one
    make_sdist(tmp_path / "downloads")
    manifest = write_manifest(tmp_path / "m.toml", demo=entry(git_url=origin.as_uri()),
                              broken=entry() | {"pypi": "broken"})
    assert run(tmp_path, manifest, "--index-only") == 1
    out, err = capsys.readouterr()
    assert "demo: git not tried (--index-only) -> sdist demo-1.0.tar.gz from the package index (cached)" in out
    assert "error: broken: package index (--index-only): pip download broken==1.0 failed: no network in tests" in err
    pin = json.loads((tmp_path / "repos/.pins/demo.json").read_text())
    assert (pin["route"], pin["commit"], pin["python_files"]) == ("sdist", None, 3)


def test_downloader_fills_an_empty_cache(tmp_path, capsys):
    source = make_sdist(tmp_path / "elsewhere")
    calls = []

    def downloader(spec, download_dir):
        calls.append(spec.name)
        download_dir.mkdir(parents=True, exist_ok=True)
        return Path(source.rename(download_dir / source.name))

    spec = repos.load_manifest(write_manifest(tmp_path / "m.toml", demo=entry()))
    [outcome] = repos.fetch_repos(spec, tmp_path / "repos", tmp_path / "downloads", downloader=downloader)
    assert (outcome.status, outcome.python_files, calls) == ("fetched", 3, ["demo"])
    assert outcome.message.endswith("-> sdist demo-1.0.tar.gz from the package index")
    # The archive is now cached: a forced rerun does not call the downloader again.
    repos.fetch_repos(spec, tmp_path / "repos", tmp_path / "downloads", force=True, downloader=downloader)
    assert calls == ["demo"]


def test_wheel_route(tmp_path):
    make_zip(tmp_path / "downloads/demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "", "demo/core.py": "x = 1\n", "demo-1.0.dist-info/METADATA": "Name: demo\n"})
    make_sdist(tmp_path / "downloads")  # present but not asked for
    assert run(tmp_path, write_manifest(tmp_path / "m.toml", demo=entry(dist="wheel"))) == 0
    assert listing(tmp_path / "repos/demo") == [
        "demo", "demo-1.0.dist-info", "demo-1.0.dist-info/METADATA", "demo/__init__.py", "demo/core.py"]
    pin = json.loads((tmp_path / "repos/.pins/demo.json").read_text())
    assert (pin["route"], pin["archive"], pin["python_files"]) == ("wheel", "demo-1.0-py3-none-any.whl", 2)


def test_pip_command(tmp_path):
    sdist, wheel = (repos.RepoSpec("x", UNREACHABLE, "v1", "x-y", "1.0", "train", dist) for dist in repos.DISTS)
    assert repos.pip_command(sdist, tmp_path)[2:] == [
        "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(tmp_path), "x-y==1.0"]
    assert repos.pip_command(wheel, tmp_path)[5:9] == ["--only-binary", ":all:", "--python-version", "3.14"]
    assert [repos.archive_matches(sdist, f) for f in ("x_y-1.0.tar.gz", "X.Y-1.0.zip", "x_y-1.0.1.tar.gz")] == [
        True, True, False]
    assert [repos.archive_matches(wheel, f) for f in ("x_y-1.0-py3-none-any.whl", "x_y-1.0.tar.gz")] == [True, False]


# --------------------------------------------------------------------------- pins


def test_skip_at_pin_and_force(tmp_path, capsys):
    make_sdist(tmp_path / "downloads")
    manifest = write_manifest(tmp_path / "m.toml", demo=entry())
    assert run(tmp_path, manifest) == 0
    stray = tmp_path / "repos/demo/stray.py"
    stray.write_text("")
    capsys.readouterr()

    assert run(tmp_path, manifest) == 0
    out = capsys.readouterr().out
    assert "demo: already at pin (sdist 1.0), skipped" in out and "git clone failed" not in out
    assert stray.exists()

    assert run(tmp_path, manifest, "--force") == 0
    assert "from the package index (cached)" in capsys.readouterr().out
    assert not stray.exists() and repos.count_python_files(tmp_path / "repos/demo") == 3

    # A new pin in the manifest is not "already at pin".
    make_sdist(tmp_path / "downloads", version="2.0", files={"pyproject.toml": "", "a.py": ""})
    assert run(tmp_path, write_manifest(manifest, demo=entry(version="2.0"))) == 0
    assert "-> sdist demo-2.0.tar.gz" in capsys.readouterr().out
    assert listing(tmp_path / "repos/demo") == ["a.py", "pyproject.toml"]


# --------------------------------------------------------------------------- failures


def good_and_corrupt(downloads: Path, kind: str) -> tuple[Path, bytes, bytes]:
    """An archive with its good bytes and a corrupt version of them."""
    if kind == "tar":
        files = {f"pkg/m{i}.py": hashlib.sha512(bytes([i])).hexdigest() * 400 for i in range(8)}
        archive = make_sdist(downloads, files=files)
        good = archive.read_bytes()
        return archive, good, good[: len(good) * 2 // 3]  # truncated download
    archive = make_zip(downloads / "demo-1.0-py3-none-any.whl",
                       {"demo/a.py": "A" * 999, "demo/b.py": "B" * 999, "demo/c.py": ""})
    good = archive.read_bytes()
    return archive, good, good.replace(b"B" * 999, b"C" * 999)  # bad CRC after a.py is written


@pytest.mark.parametrize("kind, dist, python_files", [("tar", "sdist", 8), ("zip", "wheel", 3)])
def test_corrupt_archive_leaves_nothing(tmp_path, capsys, kind, dist, python_files):
    archive, good, corrupt = good_and_corrupt(tmp_path / "downloads", kind)
    archive.write_bytes(corrupt)
    manifest = write_manifest(tmp_path / "m.toml", demo=entry(dist=dist))
    assert run(tmp_path, manifest) == 1
    err = capsys.readouterr().err
    assert "error: demo: both routes failed: git clone failed (" in err
    assert f"package index: {archive}: corrupt or unreadable archive" in err
    assert listing(tmp_path / "repos") == ["manifest.json"]

    # With a good tree in place, a corrupt archive on --force keeps the old tree whole.
    archive.write_bytes(good)
    assert run(tmp_path, manifest) == 0
    archive.write_bytes(corrupt)
    assert run(tmp_path, manifest, "--force") == 1
    assert repos.count_python_files(tmp_path / "repos/demo") == python_files
    assert sorted(p.name for p in (tmp_path / "repos").iterdir()) == [".pins", "demo", "manifest.json"]


@pytest.mark.parametrize("kind, member, reason", [
    ("tar", "../evil.py", "'..' in path"),
    ("tar", "/tmp/abs_evil.py", "absolute path"),
    ("tar", "demo-1.0/link", "outside the destination"),  # symlink to ../../etc/passwd
    ("zip", "../evil.py", "'..' in path"),
    ("zip", "/tmp/abs_evil.py", "absolute path"),
    ("zip", "link", "symlink"),
])
def test_unsafe_archive_is_refused(tmp_path, capsys, kind, member, reason):
    downloads = tmp_path / "downloads"
    if kind == "tar":
        archive = make_sdist(downloads)
        with tarfile.open(archive, "w:gz") as tf:  # rewrite it: good members, then the bad one
            for name in ("demo-1.0/pyproject.toml", "demo-1.0/ok.py", member):
                info = tarfile.TarInfo(name)
                if name.endswith("link"):
                    info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
                tf.addfile(info, io.BytesIO(b""))
        spec = entry()
    else:
        links = (member,) if reason == "symlink" else ()
        make_zip(downloads / "demo-1.0-py3-none-any.whl",
                 {"demo/ok.py": "", **({} if links else {member: ""})}, symlinks=links)
        spec = entry(dist="wheel")
    assert run(tmp_path, write_manifest(tmp_path / "m.toml", demo=spec)) == 1
    err = capsys.readouterr().err
    assert f"refused member {member!r} (" in err and reason in err and "error: demo: both routes failed" in err
    assert listing(tmp_path / "repos") == ["manifest.json"]
    assert not (tmp_path / "evil.py").exists() and not Path("/tmp/abs_evil.py").exists()


def test_both_routes_fail_others_kept(tmp_path, capsys):
    make_sdist(tmp_path / "downloads")
    manifest = write_manifest(tmp_path / "m.toml", demo=entry(),
                              broken=entry() | {"pypi": "broken", "role": "phase5"})
    assert run(tmp_path, manifest) == 1
    out, err = capsys.readouterr()
    assert "error: broken: both routes failed: git clone failed (" in err
    assert "package index: pip download broken==1.0 failed: no network in tests" in err
    assert "FAILED: broken" in err
    assert "-> sdist demo-1.0.tar.gz" in out
    assert sorted(p.name for p in (tmp_path / "repos").iterdir()) == [".pins", "demo", "manifest.json"]
    assert repos.count_python_files(tmp_path / "repos/demo") == 3
    manifest_json = json.loads((tmp_path / "repos/manifest.json").read_text())
    assert [r["name"] for r in manifest_json["repos"]] == ["demo"]
    assert manifest_json["totals"] == {"repos": 1, "python_files": 3}
