"""`make ask`: a trained model pointed at your own code. One question, one routing decision, one tool
call run for real inside your folders, and the tool's result (it does not yet read the result and answer
from it). With guided decoding a call's path that does not exist is resolved to the one real path it names,
or else the call is decoded again with its path held to real ones, and a grep that finds nothing is retried
(tooltrain.eval.guided.guided_output).

The workspace is one or several folders; the model sees their map (tooltrain.workspace) exactly as in
training and the benchmark, and a call's path must start with one of those folders. Each call runs with
the project's confined tools rooted at that folder, so nothing outside it is read. The model is loaded
once and what every question shares (system prompt, tools, map) is prefilled once, as in the benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import tools, workspace
from .decoding import Decider, context_messages
from .guided import PathGuard, decide_searching, guided_output
from .scoring import read_output

MAX_QUESTION_CHARS = 4000  # a question longer than this is not a question (and would crowd the context)
GREP_SHOWN = 20
READ_LINES = 20


class AskError(ValueError):
    """Input `ask` cannot work with: a missing or empty folder, an overlong or binary question."""


class Workspace:
    """The folders a question is about, each under its own name; every tool call is confined to one of them."""

    def __init__(self, folders: list[Path]):
        if not folders:
            raise AskError("give at least one folder (REPO=path/to/code)")
        self.folders: dict[str, Path] = {}
        for folder in map(Path, folders):
            if not folder.is_dir():
                raise AskError(f"{folder}: no such folder")
            real = folder.resolve()
            if real.name in self.folders:
                raise AskError(f"{folder}: two workspace folders are both named {real.name!r}")
            if next(tools.text_files(real, real), None) is None:
                raise AskError(f"{folder}: holds no text files the tools can read")
            self.folders[real.name] = real
        self.layouts = [workspace.scan_repo(path.parent, name) for name, path in self.folders.items()]

    def map_text(self) -> str:
        return workspace.render_map(self.layouts)

    def _locate(self, path) -> tuple[str, Path, str]:
        """(folder name, its real path, the rest of `path`); a ToolError unless `path` starts with a folder."""
        if not isinstance(path, str) or not path.strip():
            raise tools.ToolError("path must be a non-empty string")
        head, _, rest = path.strip().strip("/").partition("/")
        if head not in self.folders:
            raise tools.ToolError(f"path must start with a workspace folder ({', '.join(self.folders)}): {path!r}")
        return head, self.folders[head], rest or "."

    def run(self, call: dict | None) -> dict:
        """The result of one tool call: grep hits (capped, with the total) or the start of a file; or an error."""
        if call is None:
            return {"error": "the tool call could not be read"}
        name, arguments = call.get("name"), call.get("arguments") or {}
        try:
            head, root, rest = self._locate(arguments.get("path"))
            if name == "grep":
                hits = tools.grep(root, arguments.get("pattern"), rest)
                return {"hits": [{"path": f"{head}/{h.path}", "line": h.line, "text": h.text.strip()}
                                 for h in hits[:GREP_SHOWN]],
                        "total": len(hits), "more": hits.capped}
            if name == "read":
                text = tools.read(root, rest)
                return {"path": f"{head}/{rest}", "bytes": len(text.encode()), "lines": text.count("\n") + 1,
                        "head": text.splitlines()[:READ_LINES]}
            return {"error": f"no such tool: {name!r}"}
        except tools.ToolError as err:
            return {"error": str(err)}


def check_question(question: str) -> str:
    question = question.strip()
    if not question:
        raise AskError("empty question")
    if len(question) > MAX_QUESTION_CHARS:
        raise AskError(f"question too long ({len(question)} characters; at most {MAX_QUESTION_CHARS})")
    if "\x00" in question or any("\udc80" <= ch <= "\udcff" for ch in question):
        raise AskError("the question is not UTF-8 text (binary input?)")
    return question


@dataclass
class Answer:
    question: str
    decision: str
    call: dict | None
    raw: str
    result: dict | None
    timings: dict
    first_raw: str | None = None  # guided: the model's own grep call, when it found nothing and a retry did
    resolved_from: str | None = None  # guided: the model's own call, when its path was resolved to a real one

    def record(self) -> dict:
        return {"question": self.question, "decision": self.decision, "call": self.call, "raw": self.raw,
                "result": self.result, "timings": self.timings, "first_raw": self.first_raw,
                "resolved_from": self.resolved_from}

    def text(self) -> str:
        if self.decision == "direct":
            lines = [self.raw.strip()]
        else:
            lines = [f"call: {self.raw.strip()}"]
            if self.first_raw:
                lines.insert(0, f"(the model's own call found nothing: {self.first_raw.strip()}; retried)")
            if self.resolved_from:
                lines.insert(0, f"(the model's own path is not real: {self.resolved_from.strip()}; resolved)")
            result = self.result or {}
            if "error" in result:
                lines.append(f"error: {result['error']}")
            elif "hits" in result:
                total = f"{result['total']}{'+' if result['more'] else ''}"
                lines.append(f"{total} matching lines" + (f" (first {len(result['hits'])})"
                                                          if result["total"] > len(result["hits"]) else ""))
                lines += [f"{h['path']}:{h['line']}: {h['text']}" for h in result["hits"]]
            else:
                lines.append(f"{result['path']} ({result['bytes']} bytes, {result['lines']} lines)")
                lines += [f"  {line}" for line in result["head"]]
        t = self.timings
        lines.append(f"[decided in {t['decision_s']:.2f} s, result in {t['total_s']:.2f} s]")
        return "\n".join(lines)


class Assistant:
    """A loaded model and a workspace: `ask(question)` decides, runs the call, returns the Answer. With
    `guided`, a call's path is a real path of the workspace (resolved, or decoded again held to real ones),
    and a grep that finds nothing is retried (tooltrain.eval.guided.guided_output)."""

    def __init__(self, model, tokenizer, ws: Workspace, max_tokens: int = 256, guided: bool = False):
        self.workspace = ws
        context = context_messages(ws.map_text())
        self.decider = Decider(model, tokenizer, context, max_tokens=max_tokens, max_answer_tokens=None)
        self.steered = Decider(model, tokenizer, context, max_tokens=max_tokens, max_answer_tokens=None,
                               guard=PathGuard(tokenizer, ws.folders)) if guided else None

    def ask(self, question: str) -> Answer:
        question = check_question(question)
        started = time.perf_counter()
        out = self.decider.decide(question)
        if self.steered is not None:
            folders = self.workspace.folders
            out = guided_output(out, self.steered.guard, folders, lambda: decide_searching(self.steered, question, folders))
        reading = read_output(out["raw"])
        result = self.workspace.run(reading.tool_call) if reading.decision in ("grep", "read") else None
        if reading.decision == "invalid":
            result = {"error": "the model called no known tool"}
        timings = {"decision_s": round(out["time_to_decision_s"], 3), "generation_s": round(out["gen_time_s"], 3),
                   "total_s": round(time.perf_counter() - started, 3)}
        return Answer(question, reading.decision, reading.tool_call, out["raw"], result, timings, out.get("first_raw"),
                      out.get("resolved_from"))
