"""Guided decoding: while the model writes a tool call's `path`, only tokens that keep it a real path.

The workspace's paths go into a character trie: for `read` its text files, for `grep` those and its
folders (with or without a trailing slash). Once the text of a call has reached `"path`, each next
token must keep the rest (`": "`, then the value) on the way to one of those paths, or close a complete
one with `"`; after the closing quote anything goes again. The allowed tokens are found by walking the
path trie and a trie of the vocabulary's token strings together, so a step costs what the few allowed
tokens cost, not the 49k of the vocabulary.

Guidance only removes tokens that cannot end in a real path, so wherever the greedy call's path was
already real the guided output is the greedy output, token for token (a test checks it). `processor`
has mlx-lm's logits-processor signature, so the same guard works with `mlx_lm.generate`.

Where the model's own path is not real, it is first resolved if it names exactly one real path
(`resolve_path`: `rich/tree.py` -> `rich/rich/tree.py`); only if it does not is the call decoded again
under the guard. `guided_output` is that whole flow, the same in the benchmark and in `make ask`.

A grep call whose pattern finds nothing (or does not compile) can be decoded again (`decide_searching`):
each retry keeps the model's tokens up to the least certain token of the pattern, puts the runner-up
there and lets the model go on; the first call that finds something is kept, at most RETRIES times.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from .. import tools, workspace
from .scoring import read_output

END = ""  # the key marking a complete path in a trie node
FREE = "free"  # the value is closed: no constraint on what follows
# Before the value: the key's closing quote, optional spaces, a colon, optional spaces, the opening quote.
KEY_QUOTE, COLON, OPEN, VALUE = "key-quote", "colon", "open", "value"
NAME = re.compile(r'"name"\s*:\s*"(grep|read)"')


def folders_under(roots) -> dict[str, Path]:
    """The repository folders under the repos roots (workspace.repo_folders), by name (the first root holding
    a name wins)."""
    folders: dict[str, Path] = {}
    for root in map(Path, roots):
        for name in workspace.repo_folders(root):
            folders.setdefault(name, root / name)
    return folders


def workspace_paths(folders: dict[str, Path]) -> dict[str, set[str]]:
    """{"read": text files, "grep": text files and the folders holding them} of each workspace folder, as
    paths starting with the folder's name: the files the tools read (tools.text_files). `read` also opens the
    top-level text files that have no suffix (CHANGELOG, NEWS, TODO; the map shows some), which grep skips."""
    files, folders_seen, bare = set(), set(), set()
    for name, top in folders.items():
        bare.update(f"{name}/{file}" for file in bare_text_files(top))
        for path in tools.text_files(top, top):
            relative = Path(name, path.relative_to(top))
            files.add(relative.as_posix())
            for parent in relative.parents[:-1]:  # the last parent is "."
                folders_seen.update((parent.as_posix(), parent.as_posix() + "/"))
    return {"read": set(filter(_plain, files | bare)), "grep": set(filter(_plain, files | folders_seen))}


def bare_text_files(top: Path) -> list[str]:
    """The names of the files directly in `top` with no suffix (not hidden, not links) that `tools.read` opens."""
    names = []
    for entry in sorted(top.iterdir()) if top.is_dir() else []:
        if entry.suffix or entry.name.startswith(".") or entry.is_symlink() or not entry.is_file():
            continue
        try:
            tools.read(top, entry.name)
        except tools.ToolError:
            continue
        names.append(entry.name)
    return names


def _plain(path: str) -> bool:
    """A path JSON writes as it is (no escapes), so its characters are the tokens' characters."""
    return '"' not in path and "\\" not in path and path.isprintable()


def build_trie(words) -> dict:
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[END] = True
    return trie


class _VocabNode:
    __slots__ = ("children", "ids", "_under")

    def __init__(self):
        self.children: dict[str, _VocabNode] = {}
        self.ids: list[int] = []  # tokens whose text ends here
        self._under: list[int] | None = None

    def under(self) -> list[int]:
        """Every token at or below this node (memoized)."""
        if self._under is None:
            self._under = [*self.ids, *(i for child in self.children.values() for i in child.under())]
        return self._under


def vocabulary_trie(tokenizer) -> _VocabNode:
    """The tokens' texts in a trie; special tokens and partial UTF-8 pieces are never path text."""
    root = _VocabNode()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id in range(len(tokenizer.get_vocab())):
        text = tokenizer.decode([token_id])
        if token_id in special or not text or "\ufffd" in text:
            continue
        node = root
        for ch in text:
            node = node.children.setdefault(ch, _VocabNode())
        node.ids.append(token_id)
    return root


class PathGuard:
    """The constraint for one workspace and tokenizer: `allowed(text)` gives the token ids allowed next
    after the generated `text` (None: no constraint here), `processor` masks logits accordingly."""

    def __init__(self, tokenizer, folders: dict[str, Path], vocab: _VocabNode | None = None):
        self.tokenizer = tokenizer
        self.paths = workspace_paths(folders)
        self.tries = {tool: build_trie(words) for tool, words in self.paths.items()}
        self.vocab = vocab if vocab is not None else vocabulary_trie(tokenizer)

    def state(self, text: str):
        """Where the call's text stands, (phase, path-trie node), while its path is being written; else None."""
        start = text.rfind("<tool_call>")
        body = text[start:] if start >= 0 else text
        if start < 0 and not body.lstrip().startswith("{"):
            return None  # prose, not a call
        key = body.rfind('"path')
        if key < 0:
            return None
        name = NAME.search(body)
        state = (KEY_QUOTE, self.tries[name.group(1) if name else "grep"])
        for ch in body[key + len('"path'):]:
            state = step(state, ch)
            if state is None or state == FREE:
                return None
        return state

    def allowed(self, text: str) -> list[int] | None:
        """The token ids that may follow `text` (None: any); a token passes if each of its characters does."""
        state = self.state(text)
        if state is None:
            return None
        out, stack = [], [(state, self.vocab)]
        while stack:
            here, node = stack.pop()
            for ch, child in node.children.items():
                nxt = step(here, ch)
                if nxt is None:
                    continue
                if nxt == FREE:
                    out.extend(child.under())
                    continue
                out.extend(child.ids)
                stack.append((nxt, child))
        return out

    def accepts(self, tokens: list[int]) -> bool:
        """Whether guided decoding would have let every one of these generated tokens through."""
        for index, token in enumerate(tokens):
            allowed = self.allowed(self.tokenizer.decode(tokens[:index]))
            if allowed and token not in allowed:
                return False
        return True

    def resolve(self, raw: str) -> str | None:
        """`raw` with its call's path made the real path it names (`resolve_path`), when the path is not real
        and names exactly one; else None."""
        reading = read_output(raw)
        arguments = (reading.tool_call or {}).get("arguments") or {}
        path = arguments.get("path")
        if reading.decision not in self.paths or not isinstance(path, str) or path in self.paths[reading.decision]:
            return None
        real = resolve_path(path, self.paths[reading.decision])
        quoted = json.dumps(path)
        return None if real is None or quoted not in raw else raw.replace(quoted, json.dumps(real), 1)

    def processor(self, prompt_length: int = 0):
        """An mlx-lm logits processor (tokens, logits) -> logits: tokens after `prompt_length` are the
        generated text; disallowed tokens get -inf."""
        import mlx.core as mx
        import numpy as np

        def process(tokens, logits):
            generated = tokens[prompt_length:]
            ids = generated.tolist() if hasattr(generated, "tolist") else list(generated)
            allowed = self.allowed(self.tokenizer.decode(ids))
            if not allowed:
                return logits
            mask = np.full(logits.shape[-1], -np.inf, dtype=np.float32)
            mask[np.array(allowed)] = 0.0
            return logits + mx.array(mask)

        return process


def resolve_path(path: str, real: set[str]) -> str | None:
    """The one real path `path` stands for, or None when none or several fit. Within the repository it names
    (its folder, the folder holding a package of that name, or the one folder name close to it: `marshallow`),
    the real path ending with the longest tail of it (`rich/tree.py` -> `rich/rich/tree.py`, `dateutil/tz/tz.py`
    -> `python-dateutil/src/dateutil/tz/tz.py`), or when only another repository has a path ending with a tail of
    a folder and a file, that one (`jinja2/src/requests/utils.py` -> `requests/src/requests/utils.py`); else the
    file named like it but for the extension in the same folder (`README.md` -> `README.rst`). A tail that fits
    several paths ends the search: no guessing."""
    real = {r.rstrip("/") for r in real}
    parts = [part for part in path.strip().split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    repos = sorted({r.split("/")[0] for r in real})
    folders = {r.rsplit("/", 1)[0] for r in real if "/" in r}
    if parts[0] in repos:
        repo, rest = parts[0], parts[1:]
    elif len(owners := [r for r in repos if f"{r}/{parts[0]}" in folders or f"{r}/src/{parts[0]}" in folders]) == 1:
        repo, rest = owners[0], parts
    elif len(close := difflib.get_close_matches(parts[0], repos, n=2, cutoff=0.8)) == 1:
        repo, rest = close[0], parts[1:]
    else:
        return None
    if not rest:
        return repo if repo in real else None
    pool = [r for r in real if r.startswith(repo + "/")]
    for start in range(len(rest)):
        tail = "/".join(rest[start:])
        hits = [r for r in pool if r.endswith("/" + tail)]
        if not hits and len(rest) - start > 1:  # a folder and a file that only another repository has
            hits = [r for r in real if r.endswith("/" + tail)]
        if hits:
            return hits[0] if len(hits) == 1 else None
    folder, stem = "/".join([repo, *rest[:-1]]), rest[-1].split(".")[0]
    hits = [r for r in pool if r.rsplit("/", 1)[0] == folder and r.rsplit("/", 1)[1].split(".")[0] == stem]
    return hits[0] if len(hits) == 1 else None


def step(state, ch: str):
    """The state after one more character, None when no real path can follow."""
    if state == FREE:
        return FREE
    phase, node = state
    if phase == KEY_QUOTE:
        return (COLON, node) if ch == '"' else None
    if phase == COLON:
        return (OPEN, node) if ch == ":" else state if ch == " " else None
    if phase == OPEN:
        return (VALUE, node) if ch == '"' else state if ch == " " else None
    if ch == '"':  # in the value, at trie node `node`
        return FREE if END in node else None
    child = node.get(ch)
    return None if child is None else (VALUE, child)


# ----------------------------------------------------------------------------------- retrying a search

PATTERN_VALUE = re.compile(r'"pattern"\s*:\s*"((?:[^"\\]|\\.)*)')
RETRIES = 3


def grep_finds(raw: str, folders: dict[str, Path]) -> bool:
    """False only for a grep call whose pattern does not compile or finds nothing under its path."""

    reading = read_output(raw)
    if reading.decision != "grep":
        return True
    if reading.tool_call is None:  # a grep call that could not be read finds nothing
        return False
    arguments = reading.tool_call.get("arguments") or {}
    path = arguments.get("path")
    folder = folders.get(path.split("/")[0]) if isinstance(path, str) else None
    if folder is None:
        return False
    try:
        return bool(tools.grep(folder.parent, arguments.get("pattern"), path, max_hits=1))
    except tools.ToolError:
        return False


def pattern_tokens(tokenizer, ids: list[int]) -> list[int]:
    """The positions of the tokens that write (part of) a grep call's pattern value."""
    text = tokenizer.decode(ids)
    match = PATTERN_VALUE.search(text)
    if match is None:
        return []
    low, high = match.span(1)
    ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    return [i for i, end in enumerate(ends) if end > low and (ends[i - 1] if i else 0) < high]


def guided_output(first: dict, guard: PathGuard, folders: dict[str, Path], redecode) -> dict:
    """What guided decoding answers, given the unguided output `first`: `first` itself when the guard lets
    every token through and its grep finds something (guided decoding would write the same); else `first`
    with its path resolved (`PathGuard.resolve`, "resolved_from": the model's own call) when that path's
    grep finds something; else `redecode()` (decoding again, guided, with retries), its time added to
    the first decode's."""
    if guard.accepts(first["ids"]) and grep_finds(first["raw"], folders):
        return first
    if (fixed := guard.resolve(first["raw"])) is not None and grep_finds(fixed, folders):
        return {**first, "raw": fixed, "resolved_from": first["raw"]}
    out = redecode()
    if "gen_time_s" in first:
        out = {**out, "gen_time_s": out["gen_time_s"] + first["gen_time_s"],
               "time_to_decision_s": first["time_to_decision_s"]}
    return out


def decide_searching(decider, question: str, folders: dict[str, Path], tries: int = RETRIES,
                     forced: list[int] = ()) -> dict:
    """`decider.decide`, and when its grep finds nothing (or its pattern does not compile), up to `tries`
    more decodes: each forces, at the next least certain token of the pattern, the token that came second
    there, and decodes on. The first call that finds something is kept ("retries": decodes after the
    first, "first_raw": the model's own call); when none does, the model's own call. Times add up.
    `forced`: the answer's first tokens, given (as in `Decider.decide`)."""
    first = decider.decide(question, forced=forced, runners_up=True)
    if grep_finds(first["raw"], folders):
        return {**first, "retries": 0}
    runners = first["runners_up"]
    ranked = sorted((runners[i][1], i) for i in pattern_tokens(decider.tokenizer, first["ids"])
                    if runners[i][0] is not None)[:tries]
    spent = first["gen_time_s"]
    for attempt, (_, index) in enumerate(ranked, 1):
        out = decider.decide(question, forced=first["ids"][:index] + [runners[index][0]])
        spent += out["gen_time_s"]
        if grep_finds(out["raw"], folders):
            return {**out, "retries": attempt, "first_raw": first["raw"], "gen_time_s": spent,
                    "time_to_decision_s": first["time_to_decision_s"], "passes": first["passes"] + out["passes"]}
    return {**first, "retries": len(ranked), "gen_time_s": spent}
