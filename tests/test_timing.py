"""Stage timings (tooltrain/timing.py): real tiny commands under the wrapper, and the real Makefile's phase7
with every stage's command replaced by `true` or `false`."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_bad_input_args import project  # noqa: F401  (the fixture: a tmp copy of the project)
from tests.test_data_pipeline import ROOT


def timing(timings: Path, run: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m tooltrain.timing --file timings ARGS` as make run `run` calls it."""
    return subprocess.run([sys.executable, "-m", "tooltrain.timing", "--file", str(timings), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TOOLTRAIN_RUN": run})


def timed(timings: Path, run: str, stage: str, *command: str) -> subprocess.CompletedProcess:
    return timing(timings, run, "run", stage, "--", *command)


def stages(timings: Path, run: str) -> dict:
    return json.loads(timings.read_text())["runs"][run]["stages"]


def rows(table: str) -> dict[str, str]:
    """A printed table's rows: stage -> the rest of its line."""
    return {line.split()[0]: line.split(None, 1)[1] for line in table.splitlines()[2:] if line and line[0] != "("}


def test_a_timed_command_records_its_wall_time(tmp_path):
    timings = tmp_path / "data" / "timings.json"
    done = timed(timings, "r1", "data/x/manifest.json", sys.executable, "-c", "import time; time.sleep(0.3)")
    assert done.returncode == 0, done.stderr
    stage = stages(timings, "r1")["data/x/manifest.json"]
    assert stage["status"] == "done" and 0.3 <= stage["seconds"] < 10
    assert abs(stage["end"] - stage["start"] - stage["seconds"]) < 0.01
    assert timed(timings, "r1", "data/x/manifest.json", "sleep", "0.2").returncode == 0  # a recipe's second command
    again = stages(timings, "r1")["data/x/manifest.json"]
    assert again["start"] == stage["start"] and again["seconds"] >= stage["seconds"] + 0.19
    assert sorted(p.name for p in timings.parent.iterdir()) == ["timings.json"]  # no temp or lock file left


def test_a_failing_command_keeps_its_exit_code_and_is_not_done(tmp_path):
    timings = tmp_path / "timings.json"
    assert timed(timings, "r1", "good", "true").returncode == 0
    good = timings.read_text()
    failed = timed(timings, "r1", "bad", "sh", "-c", "echo oops >&2; exit 3")
    assert failed.returncode == 3 and failed.stderr == "oops\n"
    assert timed(timings, "r1", "killed", "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    missing = timed(timings, "r1", "missing", "no-such-command-here")
    assert missing.returncode == 127 and "error: cannot run no-such-command-here" in missing.stderr
    recorded = stages(timings, "r1")
    assert recorded["good"] == json.loads(good)["runs"]["r1"]["stages"]["good"]
    assert {name: (s["status"], s.get("exit")) for name, s in recorded.items()} == {
        "good": ("done", None), "bad": ("failed", 3), "killed": ("failed", 143), "missing": ("failed", 127)}
    summary = timing(timings, "r1", "summary", "good", "bad", "later")
    table = rows(summary.stdout)
    assert table["bad"].endswith("failed (exit 3)") and table["later"].endswith("up to date")


def test_the_summary_shows_only_this_runs_stages(tmp_path):
    timings = tmp_path / "timings.json"
    assert timed(timings, "first", "a", "sleep", "0.2").returncode == 0
    assert timed(timings, "first", "b", "true").returncode == 0
    assert timed(timings, "second", "b", "sleep", "0.1").returncode == 0
    summary = timing(timings, "second", "summary", "a", "b")
    assert summary.returncode == 0, summary.stderr
    table = rows(summary.stdout)
    assert summary.stdout.startswith("stage timings of run second")
    assert table["a"].split() == ["-", "-", "up", "to", "date"]  # timed by the first run only
    seconds = stages(timings, "second")["b"]["seconds"]
    assert table["b"].split() == [f"{seconds:.1f}", "100.0%"] and table["total"].split()[2] == f"{seconds:.1f}"
    shown = timing(timings, "third", "show")  # the last run, not the caller's
    assert shown.stdout == summary.stdout
    first = rows(timing(timings, "third", "show", "--run-id", "first").stdout)
    assert set(first) == {"a", "b", "total"} and "up to date" not in first["a"]


def test_an_unusable_timings_file_never_fails_a_stage(tmp_path):
    timings = tmp_path / "timings.json"
    timings.write_text("{not json")
    done = timed(timings, "r1", "a", "true")
    assert done.returncode == 0 and "starting" in done.stderr
    assert stages(timings, "r1")["a"]["status"] == "done"
    blocked = tmp_path / "a-file" / "timings.json"  # its folder cannot be made
    blocked.parent.write_text("")
    for code in (0, 4):
        proc = timed(blocked, "r1", "a", "sh", "-c", f"exit {code}")
        assert proc.returncode == code and "note: the time of a was not recorded" in proc.stderr


FUSED = "data/models/phase5-fused-8bit/provenance.json"
BENCH = "benchmark_all_phases.log"


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """The real Makefile, each stage's script replaced by `PY` (true or false)."""
    return subprocess.run(["make", "--no-print-directory", f"PYTHON={sys.executable}", *args], cwd=folder,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def age(folder: Path, *targets: str) -> None:
    for target in targets:
        os.utime(folder / target, (946684800, 946684800))  # 2000-01-01: older than every prerequisite


def test_make_phase7_times_what_it_runs_and_says_up_to_date_for_the_rest(project):  # noqa: F811
    for folder in ("data/models/phase5-fused-8bit", "data/eval_repos", "data/holdout_repos"):
        (project / folder).mkdir(parents=True)
    assert make(project, "-t", "phase7").returncode == 0
    age(project, FUSED, BENCH)  # out of date: these two rerun
    first = make(project, "phase7", "PY=true")
    assert first.returncode == 0, first.stderr
    timings = json.loads((project / "data" / "timings.json").read_text())["runs"]
    (run, record), = timings.items()
    assert list(record["stages"]) == [FUSED, BENCH]
    assert all(stage["status"] == "done" for stage in record["stages"].values())
    table = rows(first.stdout[first.stdout.index("stage timings"):])
    assert [name for name, rest in table.items() if not rest.endswith("up to date")] == [FUSED, BENCH, "total"]
    assert len(table) == 19 and {".venv/.installed", "adapters_phase7/training_record.json"} <= set(table)

    assert make(project, "-t", "phase7").returncode == 0
    second = make(project, "phase7", "PY=true")  # everything up to date: nothing of the first run is shown
    second_table = rows(second.stdout)
    assert set(second_table) == set(table)
    assert all(second_table[name].endswith("up to date") for name in table if name != "total")
    assert second_table["total"].split()[2:4] == ["0.0", "-"]
    assert make(project, "timings").stdout == second.stdout

    age(project, FUSED)
    failed = make(project, "phase7", "PY=false")
    assert failed.returncode == 2 and "stage timings" not in failed.stdout
    runs = json.loads((project / "data" / "timings.json").read_text())["runs"]
    assert len(runs) == 3 and list(runs)[0] == run  # the earlier runs kept under their ids
    newest = list(runs.values())[-1]["stages"]
    assert list(newest) == [FUSED] and (newest[FUSED]["status"], newest[FUSED]["exit"]) == ("failed", 1)
    shown = make(project, "timings").stdout
    assert rows(shown)[FUSED].endswith("failed (exit 1)") and "ended before its summary" in shown
