"""Wall time of every stage of a `make` run, in data/timings.json, and the table `make phase7` ends with.

Each stage's recipe in the Makefile runs under a wrapper, the `$(TIMED)` prefix:

    python -m tooltrain.timing run data/repos/manifest.json -- .venv/bin/python -m scripts.clone_popular_repos

A wrapper rather than a call inside each script: it times exactly what make runs (imports, pip, mlx.launch
around training, a recipe that is not Python at all) with no change to any script, and the stage is make's own
name for it, the target. It runs the command as a child and exits with the child's exit code (128 + N for a
death by signal N; 127 when the command does not exist). Only then does it record the stage: `done` with its
seconds, or `failed` with its seconds and exit code, so a failed stage is never counted as done. Recording
never fails a stage: a timings file that cannot be read is started afresh and one that cannot be written is a
note on stderr. A recipe with several timed commands (the venv) sums them into its stage.

A run is one `make` invocation: the Makefile sets TOOLTRAIN_RUN once (kept when already set, so sub-makes and
a caller who sets it share one run) and every recipe inherits it. `make phase7` ends with `summary` and
phase7's stage targets: the stages this run timed, in the order they started, then the others as `up to
date` (make skipped them, so this run has no time for them: a second `make phase7` says so instead of showing
the first run's times), and the run's wall time from the first start to the last end. `make timings` prints
the last run's table again. The file keeps the last 10 runs under their ids, older ones are dropped; it is
written atomically, under a lock so that stages `make -j` runs side by side all land (shares may then add up
to more than 100%).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import paths
from .io import MalformedJSONL, read_json, write_json

TIMINGS = paths.DATA / "timings.json"
RUN_VAR = "TOOLTRAIN_RUN"
KEEP_RUNS = 10


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def load(path: Path) -> dict:
    """The timings file's data; a missing one is empty, so is an unreadable one (with a note)."""
    if not path.exists():
        return {"runs": {}}
    try:
        data = read_json(path)
    except (OSError, MalformedJSONL) as err:
        note(f"{err}; starting {path} afresh")
        return {"runs": {}}
    if not well_formed(data):
        note(f"{path} does not hold the runs this module writes; starting it afresh")
        return {"runs": {}}
    return data


def well_formed(data) -> bool:
    """{"runs": {id: {"stages": {name: {"status", "start", "end", "seconds", ...}}, ...}}} as written here."""
    def stage_ok(stage) -> bool:
        return isinstance(stage, dict) and stage.get("status") in ("done", "failed") and all(
            isinstance(stage.get(key), (int, float)) for key in ("start", "end", "seconds"))
    runs = data.get("runs") if isinstance(data, dict) else None
    return isinstance(runs, dict) and all(
        isinstance(run, dict) and isinstance(run.get("stages"), dict) and all(map(stage_ok, run["stages"].values()))
        and isinstance(run.get("up_to_date", []), list) for run in runs.values())


@contextmanager
def updating(path: Path) -> Iterator[dict]:
    """The timings file's data to change in place, written back atomically, one writer at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)  # the lock: its folder, so no lock file is left behind
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        data = load(path)
        yield data
        runs = data["runs"]
        for old in list(runs)[:-KEEP_RUNS]:
            del runs[old]
        write_json(path, data)
    finally:
        os.close(folder)


def run_record(data: dict, run: str) -> dict:
    """This run's record, made (as the newest run) when it is first seen."""
    return data["runs"].setdefault(run, {"stages": {}})


def record(path: Path, run: str, stage: str, start: float, seconds: float, code: int) -> None:
    """Add one finished command to its stage in this run: done when it exited 0, else failed with its code."""
    start, seconds = round(start, 3), round(seconds, 3)
    try:
        with updating(path) as data:
            stages = run_record(data, run)["stages"]
            entry = stages.setdefault(stage, {"status": "done", "start": start, "seconds": 0.0})
            entry["seconds"] = round(entry["seconds"] + seconds, 3)
            entry["end"] = round(start + seconds, 3)
            if code:
                entry.update(status="failed", exit=code)
    except OSError as err:
        note(f"the time of {stage} was not recorded: {err}")


def run_command(path: Path, run: str, stage: str, command: list[str]) -> int:
    """Run a command as `stage`, record it, return its exit code."""
    start, clock = time.time(), time.perf_counter()
    try:
        child = subprocess.Popen(command)
    except OSError as err:
        print(f"error: cannot run {command[0]}: {err.strerror}", file=sys.stderr)
        code = 127 if isinstance(err, FileNotFoundError) else 126
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the child too: it decides, we record
        code = child.wait()
        code = 128 - code if code < 0 else code
    record(path, run, stage, start, time.perf_counter() - clock, code)
    return code


def finish(path: Path, run: str, stages: list[str]) -> dict:
    """Mark the run summarised: the given stages it did not time were up to date. Returns its record."""
    def close(data: dict) -> dict:
        entry = run_record(data, run)
        entry["up_to_date"] = [stage for stage in dict.fromkeys(stages) if stage not in entry["stages"]]
        return entry
    try:
        with updating(path) as data:
            return close(data)
    except OSError as err:
        note(f"{path} was not updated: {err}")
        return close(load(path))


def table(run: str, entry: dict, path: Path) -> str:
    """The run's stages as a table: seconds, share of the run's wall time, then its total."""
    timed = sorted(entry["stages"].items(), key=lambda item: item[1]["start"])
    wall = max((s["end"] for _, s in timed), default=0.0) - min((s["start"] for _, s in timed), default=0.0)
    width = max([len(name) for name in entry["stages"]] + [len(name) for name in entry.get("up_to_date", [])] + [24])
    lines = [f"stage timings of run {run} ({path})", f"{'stage':{width}}  {'seconds':>8}  {'share':>6}"]
    for name, stage in timed:
        share = f"{100 * stage['seconds'] / wall:5.1f}%" if wall else "-"
        failed = f"  failed (exit {stage.get('exit')})" if stage["status"] == "failed" else ""
        lines.append(f"{name:{width}}  {stage['seconds']:8.1f}  {share:>6}{failed}")
    lines += [f"{name:{width}}  {'-':>8}  {'-':>6}  up to date" for name in entry.get("up_to_date", [])]
    lines.append(f"{'total (wall time)':{width}}  {wall:8.1f}  {'100.0%' if wall else '-':>6}  {wall / 60:.1f} min")
    if "up_to_date" not in entry:
        lines.append("(this run ended before its summary: stopped by a failure, or a goal other than phase7)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tooltrain.timing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=TIMINGS, help=f"the timings file (default {TIMINGS})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a stage's command and record its wall time under $TOOLTRAIN_RUN")
    r.add_argument("stage", help="the stage's name (the Makefile gives its target)")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    s = sub.add_parser("summary", help="end $TOOLTRAIN_RUN: print its table; stages it did not time are up to date")
    s.add_argument("stages", nargs="*", help="every stage of the goal")
    w = sub.add_parser("show", help="print a run's table again (default: the last run)")
    w.add_argument("--run-id", help="which run (the ids are the keys of the file's runs)")
    args = ap.parse_args(argv)

    if args.cmd == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            ap.error("run needs a command after --")
        run = os.environ.get(RUN_VAR) or time.strftime("%Y%m%dT%H%M%S-") + str(os.getpid())
        return run_command(args.file, run, args.stage, command)
    if args.cmd == "summary":
        if not os.environ.get(RUN_VAR):
            ap.error(f"summary needs ${RUN_VAR} (the Makefile sets it once per make)")
        print(table(os.environ[RUN_VAR], finish(args.file, os.environ[RUN_VAR], args.stages), args.file))
        return 0
    runs = load(args.file)["runs"]
    run = args.run_id or next(reversed(runs), None)
    if run not in runs:
        print(f"error: {args.file} holds no run {run!r}" if run else f"error: {args.file} holds no run yet",
              file=sys.stderr)
        return 1
    print(table(run, runs[run], args.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
