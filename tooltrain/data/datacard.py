"""Provenance beside every output: a manifest (JSON, written last) and a short data card (markdown)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from ..io import MANIFEST, json_text, sha256_text
from ..tools import question_of


def answer_of(row: dict) -> str:
    """The assistant turn as text: the answer, or the tool call as JSON."""
    message = row["messages"][-1]
    if message.get("tool_calls"):
        return json.dumps(message["tool_calls"][0]["function"], ensure_ascii=False)
    return message.get("content") or ""


def _names_library(row: dict) -> bool:
    """A direct row about a library: a docstring answer of a repository, or a hand-written library answer."""
    return row["source"].get("repo") is not None or str(row["source"].get("intent", "")).startswith("library")


def _lengths(texts: list[str]) -> dict:
    sizes = [len(t) for t in texts] or [0]
    return {"min": min(sizes), "median": statistics.median(sizes), "mean": round(statistics.fmean(sizes), 1),
            "max": max(sizes)}


def summarize(rows: list[dict]) -> dict:
    """Counts per label, repo, domain and intent, distinct question shapes per label, text lengths."""
    shapes: dict[str, set] = {}
    for row in rows:
        shapes.setdefault(row["label"], set()).add(row["source"].get("shape"))
    return {
        "examples": len(rows),
        "per_label": dict(sorted(Counter(r["label"] for r in rows).items())),
        "per_repo": dict(sorted(Counter(str(r["source"]["repo"]) for r in rows).items())),
        "per_domain": dict(sorted(Counter(r["domain"] for r in rows).items())),
        "per_intent": dict(sorted(Counter(f'{r["label"]}/{r["source"].get("intent")}' for r in rows).items())),
        # how questions are phrased and workspaces shown: renamed folders, swapped layouts, no identifier, ...
        "per_trait": dict(sorted(Counter(t for r in rows for t in r["source"].get("traits", [])
                                         if not t.startswith("map:")).items())),
        "map_sizes": dict(sorted(Counter(int(t[4:]) for r in rows for t in r["source"].get("traits", [])
                                         if t.startswith("map:")).items())),
        "direct_naming_a_library": sum(r["label"] == "direct" and _names_library(r) for r in rows),
        "most_tool_rows_about_one_file": max(Counter(r["source"]["path"] for r in rows
                                                     if r["label"] != "direct" and r["source"].get("path")).values(),
                                             default=0),
        "question_shapes_per_label": {label: len(s) for label, s in sorted(shapes.items())},
        "question_chars": _lengths([question_of(r) for r in rows]),
        "answer_chars": {label: _lengths([answer_of(r) for r in rows if r["label"] == label])
                         for label in sorted(shapes)},
    }


def source_versions(repos_root: Path, repos: list[str]) -> dict:
    """What each repository was fetched as (from the clone step's pin files), or null if unknown."""
    versions = {}
    for repo in repos:
        pin = Path(repos_root) / ".pins" / f"{repo}.json"
        versions[repo] = json.loads(pin.read_text()) if pin.exists() else None
    return versions


def _table(title: str, counts: dict) -> str:
    lines = [f"| {title} | examples |", "|---|---:|"]
    lines += [f"| {key} | {value} |" for key, value in counts.items()]
    return "\n".join(lines)


def data_card(title: str, summary: dict, notes: list[str]) -> str:
    parts = [f"# {title}", "", *notes, "", f"Examples: **{summary['examples']}**", ""]
    for key, heading in (("per_label", "label"), ("per_repo", "repo"), ("per_domain", "domain"),
                         ("per_intent", "label/intent"), ("per_trait", "trait (how it is asked and shown)"),
                         ("map_sizes", "repositories in the workspace map")):
        parts += [_table(heading, summary[key]), ""]
    parts += [f"Direct rows that name a library: {summary['direct_naming_a_library']}. "
              f"Most tool rows about one file: {summary['most_tool_rows_about_one_file']}.", ""]
    q = summary["question_chars"]
    parts.append(f"Question length (chars): min {q['min']}, median {q['median']}, mean {q['mean']}, max {q['max']}.")
    for label, a in summary["answer_chars"].items():
        parts.append(f"Answer length for {label} (chars): min {a['min']}, median {a['median']}, max {a['max']}.")
    shapes = ", ".join(f"{label} {n}" for label, n in summary["question_shapes_per_label"].items())
    parts += ["", f"Distinct question shapes: {shapes}.", ""]
    return "\n".join(parts)


def provenance(title: str, manifest: dict, rows: list[dict], notes: list[str], files: dict[str, str]) -> dict[str, str]:
    """A stage folder's files by name: `files`, DATA_CARD.md, and manifest.json with the sha256 of each file
    (written last by `io.publish`: its presence marks the stage complete)."""
    summary = summarize(rows)
    manifest = {**manifest, "files": {name: sha256_text(text) for name, text in files.items()}, "summary": summary}
    return {**files, "DATA_CARD.md": data_card(title, summary, notes), MANIFEST: json_text(manifest)}
