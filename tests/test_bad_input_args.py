"""Bad arguments and bad stage inputs: one clear line and a non-zero exit, never a traceback, and the good
files already there are left byte-identical. Also the Makefile's variables as prerequisites."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixture_repos import make_repos
from tests.test_data_pipeline import ROOT, build_all, run_script
from tooltrain.io import publish


def snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every file under `folders` with its bytes (and so the names: no temp file may be left beside them)."""
    return {p: p.read_bytes() for folder in folders for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def refused(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    build_all(work / "repos", make_repos(work / "repos"), work / "data")
    return work


@pytest.fixture
def data(built, tmp_path):
    """A copy of the built data sets to spoil."""
    shutil.copytree(built / "data", tmp_path / "data")
    return tmp_path / "data"


# --------------------------------------------------------------------------- arguments


def generator(name: str, built: Path, data: Path, *args) -> subprocess.CompletedProcess:
    """A generator run over the fixture repos, writing where the built data sets are."""
    out = {"generate_repo_examples": ["--out", data / "repos_examples"],
           "generate_html_examples": ["--out", data / "html_examples"],
           "generate_phase5_data": ["--examples-out", data / "phase5_examples", "--out", data / "phase5_format"]}
    return run_script(name, "--repos-root", built / "repos", "--manifest", built / "repos" / "repos.toml",
                      *out[name], "--seed", 3, *args, check=False)


@pytest.mark.parametrize("name, args, code, message", [
    ("generate_repo_examples", ["--grep", "-5"], 2, "argument --grep: must be 0 or more, not -5"),
    ("generate_html_examples", ["--read", "-1"], 2, "argument --read: must be 0 or more, not -1"),
    ("generate_phase5_data", ["--per-file-cap", "0"], 2, "argument --per-file-cap: must be 1 or more, not 0"),
    ("generate_phase5_data", ["--direct", "3", "--curated-direct", "5"], 1,
     "--curated-direct 5 is more than --direct 3"),
    ("generate_repo_examples", ["--grep", "0", "--read", "0", "--direct", "0", "--curated-direct", "0"], 1,
     "--grep, --read and --direct are all 0: nothing to generate"),
    ("generate_html_examples", ["--grep", "0", "--read", "0", "--direct", "0"], 1,
     "--grep, --read and --direct are all 0: nothing to generate"),
    ("generate_repo_examples", ["--role", "tests"], 2, "argument --role: invalid choice: 'tests'"),
    ("generate_repo_examples", ["--role", "eval"], 1, "repos.toml has no repositories of role 'eval'"),
    # A split that cannot be made: the examples are not replaced either (they were, before the split failed).
    ("generate_phase5_data", ["--grep", "10", "--read", "5", "--direct", "5", "--curated-direct", "2",
                              "--valid", "400"], 1, "error: cannot put 400 of 20 rows in valid"),
])
def test_generator_arguments_that_make_no_sense_change_nothing(built, data, name, args, code, message):
    before = snapshot(data)
    refused(generator(name, built, data, *args), code, message)
    assert snapshot(data) == before


def test_merge_valid_below_zero_is_refused(data):
    refused(run_script("merge_phase6_data", "--data-dir", data, "--valid", -1, check=False), 2,
            "argument --valid: must be 0 or more, not -1")


def test_negative_iters_trains_nothing(tmp_path):
    proc = run_script("train_adapter", "-c", ROOT / "configs" / "lora_phase5.yaml", "--iters", -3,
                      "--adapter-path", tmp_path / "adapters", check=False)
    refused(proc, 1, f"error: {ROOT / 'configs' / 'lora_phase5.yaml'}: iters must be a positive whole number, not -3")
    assert not (tmp_path / "adapters").exists()


# --------------------------------------------------------------------------- merge inputs


def row3(edit):
    """A spoiler that edits the third row of a file."""
    def spoil(path: Path) -> None:
        lines = path.read_text().splitlines()
        row = json.loads(lines[2])
        edit(row)
        lines[2] = json.dumps(row)
        path.write_text("\n".join(lines) + "\n")
    return spoil


EXAMPLES = Path("repos_examples") / "training_examples.jsonl"
KEPT_EXAMPLES = Path("phase5_examples") / "training_examples.jsonl"
SPLIT = Path("phase5_format") / "split.json"


@pytest.mark.parametrize("file, spoil, message", [
    (EXAMPLES, row3(lambda r: r.pop("messages")), ":3: row has no 'messages'"),
    (EXAMPLES, row3(lambda r: r.pop("tools")), ":3: row has no 'tools'"),
    (EXAMPLES, row3(lambda r: r.pop("id")), ":3: row has no 'id'"),
    (KEPT_EXAMPLES, row3(lambda r: r.pop("source")), ":3: row has no 'source'"),
    (EXAMPLES, row3(lambda r: r.update(label="search")),
     ":3: unknown label 'search' (expected one of grep, read, direct)"),
    (EXAMPLES, row3(lambda r: r.update(messages=[])),
     ":3: 'messages' is not a conversation with a user question and an assistant answer"),
    (EXAMPLES, lambda f: f.write_bytes(f.read_bytes() + b'{"id": "caf\xe9"}\n'), ":43: not UTF-8 text"),
    (EXAMPLES, lambda f: f.write_text(""), " holds no examples: run the stage that writes it again"),
    (SPLIT, lambda f: f.write_text('{"train": []}\n'), ': expected {"train": [ids], "valid": [ids]}'),
    (SPLIT, lambda f: f.write_text('["a"]\n'), ': expected {"train": [ids], "valid": [ids]}'),
    (SPLIT, lambda f: f.write_text('{"train": '), ": not valid JSON (Expecting value, line 1)"),
])
def test_bad_merge_input_is_named_and_changes_nothing(data, file, spoil, message):
    spoil(data / file)
    before = snapshot(data)
    refused(run_script("merge_phase6_data", "--data-dir", data, "--valid", 10, check=False), 1,
            f"error: {data / file}{message}")
    assert snapshot(data) == before


def test_in_distribution_eval_names_a_bad_split(data, tmp_path):
    (data / "phase7_format" / "split.json").write_text('{"train": []}\n')
    proc = run_script("make_in_distribution_eval", "--data-dir", data, "--out", tmp_path / "eval.jsonl", check=False)
    refused(proc, 1, f'error: {data / "phase7_format" / "split.json"}: expected {{"train": [ids], "valid": [ids]}}')
    assert not (tmp_path / "eval.jsonl").exists()


# --------------------------------------------------------------------------- writing a stage


def stage_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "stage"
    folder.mkdir()
    for name, text in {"train.jsonl": "old train\n", "valid.jsonl": "old valid\n", "manifest.json": "{}\n"}.items():
        (folder / name).write_text(text)
    return folder


def test_a_stage_that_fails_while_writing_replaces_nothing(tmp_path):
    folder = stage_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(OSError):  # the second file cannot be written: its name is too long
        publish({folder: {"train.jsonl": "new train\n", "v" * 300: "x", "manifest.json": '{"new": 1}\n'}})
    assert snapshot(folder) == before


def test_a_stage_that_fails_while_renaming_is_left_without_a_manifest(tmp_path):
    folder = stage_folder(tmp_path)
    (folder / "valid.jsonl").unlink()
    (folder / "valid.jsonl").mkdir()  # nothing can be renamed over a folder
    with pytest.raises(OSError):
        publish({folder: {"train.jsonl": "new train\n", "valid.jsonl": "new valid\n", "manifest.json": "{}\n"}})
    assert sorted(p.name for p in folder.iterdir()) == ["train.jsonl", "valid.jsonl"]  # incomplete: make redoes it


def test_a_stage_puts_every_file_in_place_and_its_manifest_last(tmp_path):
    folder = stage_folder(tmp_path)
    publish({folder: {"manifest.json": '{"new": 1}\n', "train.jsonl": "new train\n", "valid.jsonl": "new valid\n"}})
    assert {p.name: p.read_text() for p in folder.iterdir()} == {
        "train.jsonl": "new train\n", "valid.jsonl": "new valid\n", "manifest.json": '{"new": 1}\n'}
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert mtimes["manifest.json"] >= max(mtimes.values())


# --------------------------------------------------------------------------- doctor


def model_folder(tmp_path: Path, config: str) -> Path:
    """A model folder whose only fault is its config.json (a tokenizer and an empty, valid weights file)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    return folder


@pytest.mark.parametrize("config, message", [
    ("garbage", "config.json is not valid JSON: Expecting value"),
    ('{"model_type": "llama", "quantization": 4}', "config.json: 'quantization' has no whole number 'bits'"),
])
def test_doctor_names_a_garbage_config(tmp_path, config, message):
    folder = model_folder(tmp_path, config)
    proc = subprocess.run([sys.executable, "-m", "scripts.doctor", "--model", str(folder), "--repeats", "1",
                           "--no-child"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"model         {folder} (unusable: {folder / 'config.json'}" in proc.stdout and message in proc.stdout


def test_doctor_refuses_zero_repeats():
    proc = run_script("doctor", "--repeats", 0, check=False)
    refused(proc, 2, "argument --repeats: must be 1 or more, not 0")


# --------------------------------------------------------------------------- Makefile variables


@pytest.fixture
def project(tmp_path):
    """The tracked project files in a tmp copy, with every data target made (`make -t`) at the default SEED."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.split("\0"):
        if name and (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    for folder in ("repos", "repos_examples", "phase5_format", "html_examples", "phase6_format", "phase7_format",
                   "models/smollm2-135m-instruct", "eval"):
        (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    (tmp_path / "data" / "repos" / "manifest.json").touch()
    make(tmp_path, "-t", "data", "adapters_phase5/training_record.json")
    return tmp_path


def make(folder: Path, *args: str, **env: str) -> list[str]:
    """The commands `make` runs (or with -n would run) that call a script."""
    proc = subprocess.run(["make", *args], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if "-m scripts." in line]


DATA_STAGES = ["generate_html_examples", "generate_phase5_data", "generate_repo_examples", "merge_phase6_data",
               "merge_phase7_data"]


def stages(commands: list[str]) -> list[str]:
    return sorted(c.split("-m scripts.")[1].split()[0] for c in commands)


def test_a_new_seed_remakes_the_data_once(project):
    assert make(project, "-n", "data") == []
    commands = make(project, "-n", "data", SEED="1")  # from the environment, as the README shows it
    assert stages(commands) == DATA_STAGES and all(c.endswith("--seed 1") for c in commands)
    make(project, "-t", "data", SEED="1")
    assert make(project, "-n", "data", SEED="1") == []
    assert stages(make(project, "-n", "data")) == DATA_STAGES  # back to seed 0: remade again


def test_a_new_model_retrains(project):
    target = "adapters_phase5/training_record.json"
    assert make(project, "-n", target) == []
    assert stages(make(project, "-n", target, "MODEL=other/model")) == ["train_adapter"]
    make(project, "-t", target, "MODEL=other/model")
    assert make(project, "-n", target, "MODEL=other/model") == []
