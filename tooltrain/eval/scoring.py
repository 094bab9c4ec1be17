"""Eval cases, reading a model's output as a decision, checking its tool call for real, and the metrics.

An eval case (DESIGN.md): `{"id", "question", "repo", "expected", "check"}`; `check` is
`{"must_find", "in_file"}` for grep, `{"path"}` for read, `{}` for direct. A model's output
is a tool call in the chat template's `<tool_call>{...}</tool_call>` form, a bare JSON
call (Qwen2.5-Coder is known to drop the tags), or a plain answer. A grep call counts
as valid when, run by the project's confined grep tool, it hits a line of `in_file`
holding `must_find` and is specific (at most GREP_MAX_HITS lines); a read call when its
path resolves to the expected file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import tools
from ..io import read_jsonl
from ..stats import wilson
from ..tools import LABELS, question_of

INVALID = "invalid"  # a tool call that names no known tool, or cannot be read at all
TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"
GREP_MAX_HITS = 100  # a pattern matching more lines than this does not locate anything
CHECK_KEYS = {"grep": {"must_find", "in_file"}, "read": {"path"}, "direct": set()}


class EvalFileError(ValueError):
    """An eval file that cannot be used: malformed line, unknown label, bad check; names file and line."""


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    repo: str | None
    expected: str
    check: dict = field(default_factory=dict)


def load_cases(path: Path) -> list[Case]:
    """The cases of one eval file, every line checked; the first bad one is an EvalFileError."""
    path = Path(path)
    if not path.exists():
        raise EvalFileError(f"{path}: no such eval file")
    try:
        rows = read_jsonl(path)
    except ValueError as err:
        raise EvalFileError(str(err)) from None
    cases, seen = [], set()
    for number, row in enumerate(rows, 1):
        where = f"{path}: case {number} ({row.get('id', 'no id')})"
        missing = {"id", "question", "expected"} - set(row)
        if missing:
            raise EvalFileError(f"{where}: missing {', '.join(sorted(missing))}")
        if row["expected"] not in LABELS:
            raise EvalFileError(f"{where}: unknown label {row['expected']!r} (expected one of {', '.join(LABELS)})")
        check = row.get("check") or {}
        if set(check) != CHECK_KEYS[row["expected"]]:
            raise EvalFileError(f"{where}: a {row['expected']} case needs check keys "
                                f"{sorted(CHECK_KEYS[row['expected']])}, has {sorted(check)}")
        if row["id"] in seen:
            raise EvalFileError(f"{where}: duplicate id")
        seen.add(row["id"])
        cases.append(Case(str(row["id"]), str(row["question"]), row.get("repo"), row["expected"], dict(check)))
    return cases


# ----------------------------------------------------------------------------------- reading outputs


@dataclass(frozen=True)
class Reading:
    """What a model's output amounts to."""

    decision: str  # grep | read | direct | invalid
    tool_call: dict | None  # {"name", "arguments"} when one could be read
    form: str  # tagged | bare | embedded | malformed | text


_NAME = re.compile(r'"name"\s*:\s*"([^"]*)"')
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*(?:```)?$", re.S)
_FENCE_OPEN = re.compile(r"^`{1,3}(?:json|jso|js|j)?\s*")  # a code fence that may still open a JSON call


def _call_from(obj) -> dict | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):  # some models send the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    call = {"name": obj["name"], "arguments": arguments}
    return call if isinstance(arguments, dict) and _writable(call) else None


def _writable(obj) -> bool:
    """Whether a call read from a model's JSON is text UTF-8 can hold: a `\\udc80` escape gives a lone
    surrogate, which no predictions file can be written with, so such a call counts as unreadable."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _first_json_object(text: str):
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except json.JSONDecodeError:
        return None


def _tagged_call(body: str) -> dict | None:
    """The call inside `<tool_call>` tags, read by mlx-lm's own JSON tool parser."""
    from mlx_lm.tool_parsers.json_tools import parse_tool_call

    try:
        return _call_from(parse_tool_call(body))
    except (json.JSONDecodeError, ValueError):
        return None


def read_output(text: str) -> Reading:
    """Decide what `text` is: a tagged or bare tool call, a call buried in prose, or a plain answer."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced and fenced.group(1).startswith("{"):
        stripped = fenced.group(1)
    if TAG_OPEN in stripped:
        body = stripped.split(TAG_OPEN, 1)[1]
        closed = TAG_CLOSE in body
        call = _tagged_call(body.split(TAG_CLOSE, 1)[0]) if closed else None
        form = "tagged" if stripped.startswith(TAG_OPEN) else "embedded"
        if call is None:
            form = "malformed"
            name = _NAME.search(body)
            call = None if name is None else {"name": name.group(1), "arguments": None}
        return _reading(call, form)
    if stripped.startswith("{"):
        call = _call_from(_first_json_object(stripped))
        if call is not None:
            return _reading(call, "bare")
        name = _NAME.search(stripped)
        if name:
            return _reading({"name": name.group(1), "arguments": None}, "malformed")
    return Reading("direct", None, "text")


def _reading(call: dict | None, form: str) -> Reading:
    name = call["name"] if call else None
    decision = name if name in ("grep", "read") else INVALID
    return Reading(decision, call if call and call["arguments"] is not None else None, form)


def decided(text: str) -> str | None:
    """The decision as soon as a partial output settles it, else None (more tokens needed)."""
    body = _FENCE_OPEN.sub("", text.lstrip())
    if not body:
        return None
    if body.startswith((TAG_OPEN, "{")):
        name = _NAME.search(body)
        if name is None:
            return None
        return name.group(1) if name.group(1) in ("grep", "read") else INVALID
    return None if TAG_OPEN.startswith(body) else "direct"  # "<tool_c" may still become a call


def finished_call(text: str) -> bool:
    """True once a tool call in `text` is complete (closing tag, or a bare JSON object closed)."""
    stripped = text.strip()
    if TAG_OPEN in stripped:
        return TAG_CLOSE in stripped.split(TAG_OPEN, 1)[1]
    return stripped.startswith("{") and _first_json_object(stripped) is not None


# ----------------------------------------------------------------------------------- checking calls


def check_call(case: Case, reading: Reading, root: Path | None) -> tuple[bool | None, str]:
    """Run the model's call for real when its decision matches a tool case: (valid?, detail).

    None when there is nothing to check (a direct case, or a wrong decision)."""
    if case.expected == "direct" or reading.decision != case.expected:
        return None, ""
    if reading.tool_call is None:
        return False, "tool call could not be read"
    if root is None:
        return False, f"repo folder for {case.repo!r} not found"
    args = reading.tool_call["arguments"]
    try:
        if case.expected == "grep":
            hits = tools.grep(root, args.get("pattern"), args.get("path"), max_hits=GREP_MAX_HITS)
            found = any(h.path == case.check["in_file"] and case.check["must_find"] in h.text for h in hits)
            if hits.capped:
                return False, f"pattern too broad (more than {GREP_MAX_HITS} matching lines)"
            return found, f"{len(hits)} hits" + ("" if found else f", none in {case.check['in_file']}")
        target = tools.resolve_inside(root, args.get("path"))
        expected = tools.resolve_inside(root, case.check["path"])
        return target == expected, "" if target == expected else f"{args.get('path')!r} is another file"
    except tools.ToolError as err:
        return False, str(err)


# ----------------------------------------------------------------------------------- metrics


def metrics(records: list[dict]) -> dict:
    """Decision and argument metrics over scored records ({"expected", "decision", "valid", "form", ...})."""
    n = len(records)
    if not n:
        return {"cases": 0}
    confusion = {e: dict(Counter(r["decision"] for r in records if r["expected"] == e)) for e in LABELS}
    f1s = {}
    for label in LABELS:
        tp = sum(r["expected"] == label and r["decision"] == label for r in records)
        predicted = sum(r["decision"] == label for r in records)
        actual = sum(r["expected"] == label for r in records)
        if actual == 0:
            continue
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual
        f1s[label] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    intervals = {}

    def rate(hits, over, name=None):
        if not over:
            return None
        if name:  # the 95% Wilson interval beside the rate
            intervals[name] = [round(bound, 4) for bound in wilson(sum(hits), len(over))]
        return round(sum(hits) / len(over), 4)

    direct = [r for r in records if r["expected"] == "direct"]
    tool_cases = [r for r in records if r["expected"] != "direct"]
    called = [r for r in records if r["form"] != "text"]
    checked = {label: [r for r in records if r["expected"] == label == r["decision"]] for label in ("grep", "read")}
    summary = {
        "cases": n,
        "accuracy": rate([r["expected"] == r["decision"] for r in records], records, "accuracy"),
        "macro_f1": round(sum(f1s.values()) / len(f1s), 4),
        "f1": {k: round(v, 4) for k, v in f1s.items()},
        "success": rate([r["expected"] == r["decision"] and r["valid"] is not False for r in records], records,
                        "success"),
        "over_call_rate": rate([r["decision"] != "direct" for r in direct], direct, "over_call_rate"),
        "under_call_rate": rate([r["decision"] == "direct" for r in tool_cases], tool_cases, "under_call_rate"),
        "grep_hit_rate": rate([r["valid"] for r in checked["grep"]], checked["grep"], "grep_hit_rate"),
        "read_valid_rate": rate([r["valid"] for r in checked["read"]], checked["read"], "read_valid_rate"),
        "format_adherence": rate([r["form"] == "tagged" for r in called], called, "format_adherence"),
        "confusion": confusion,
    }
    return {**summary, "intervals": intervals}


# ----------------------------------------------------------------------------------- in-distribution set


def case_from_example(example: dict, repos_root: Path) -> dict:
    """An eval case asking an example's own question: a grep must find the example's source line."""
    question = question_of(example)
    source, label = example["source"], example["label"]
    check = {}
    if label == "grep":
        line = tools.read(repos_root, source["path"]).splitlines()[source["line"] - 1].strip()
        check = {"must_find": line, "in_file": source["path"]}
    elif label == "read":  # the real file (the row's own call may name it under a renamed folder)
        check = {"path": source["path"]}
    return {"id": example["id"], "question": question, "repo": source["repo"], "expected": label, "check": check,
            "tags": [label, source.get("intent", "")]}
