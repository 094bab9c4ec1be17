"""Greedy decoding with prompt-lookup drafts: plain greedy output, in fewer forward passes.

Most of a tool call is text the model has already seen or always writes the same way:
the `<tool_call>\\n{"name": ...` scaffold, tool and argument names from the tools block,
symbol and repository names from the question. After each step the last generated tokens
are looked up in that context, the tokens that followed them there are proposed as a
draft, and one forward pass over the draft checks them all: the longest prefix the model
itself would have produced greedily is kept, plus the model's own next token, and the
KV cache is trimmed back over the rest. The output is the greedy output; only the number
of passes changes ("prompt lookup decoding": speculative decoding without a draft model).
On this CPU a pass over 9 tokens costs twice a pass over one (110 vs 55 ms), so drafts are
worth it where they are mostly right: inside a tool call, not in prose.

`Decider` puts this to work on questions: the context they share is prefilled once.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

from ..model import fast_blocks
from ..tools import SYSTEM_PROMPT, TOOLS
from .scoring import decided, finished_call


def lookup_draft(history: list[int], context: list[int], size: int, longest: int = 3) -> list[int]:
    """Up to `size` tokens that followed the latest earlier occurrence in `context` of the last
    n tokens of `history` (n from `longest` down to 1); [] when none occurs."""
    if size <= 0:
        return []
    for n in range(min(longest, len(history)), 0, -1):
        tail = history[-n:]
        for start in range(len(context) - n - 1, -1, -1):
            if context[start:start + n] == tail:
                return context[start + n:start + n + size]
    return []


def greedy_decode(model, cache, prompt: list[int], propose: Callable[[list[int]], list[int]],
                  done: Callable[[list[int]], bool], max_tokens: int, stop_tokens: set[int],
                  guide: Callable[[list[int]], list[int] | None] | None = None,
                  runners_up: list | None = None) -> tuple[list[int], int]:
    """Greedy tokens after `prompt` (the cache holds what precedes it), until a stop token, `done(tokens)`
    or `max_tokens`; returns (tokens, forward passes). `propose(tokens)` gives the draft to check next (the
    first, `propose([])`, is checked in the prompt's own pass);
    `guide(tokens)`, when given, the token ids allowed next (None: all), the greedy pick is the best of them.
    `runners_up`, when given, receives for each token the one that came second, and by how much (logits)."""
    import mlx.core as mx
    from mlx_lm.models.cache import trim_prompt_cache

    def pick(row, history: list[int], unguided: int) -> int:
        allowed = guide(history) if guide is not None else None
        if not allowed or unguided in allowed:
            choice = unguided
        else:
            choice = allowed[mx.argmax(row[mx.array(allowed)]).item()]
        if runners_up is not None:
            runners_up.append(_runner_up(row, choice, allowed))
        return choice

    tokens: list[int] = []
    inputs, draft, passes = list(prompt), propose([])[: max_tokens - 1], 0  # the prompt's pass checks a draft too
    while True:
        logits = model(mx.array(inputs + draft)[None], cache=cache)
        rows = logits[0, len(inputs) - 1:]  # row k: the token after draft[:k]
        predicted = mx.argmax(rows, axis=-1).tolist()
        kept = 0
        while True:
            choice = pick(rows[kept], tokens + draft[:kept], predicted[kept])
            if kept == len(draft) or choice != draft[kept] or draft[kept] in stop_tokens:
                break
            kept += 1
        if len(draft) > kept:
            trim_prompt_cache(cache, len(draft) - kept)
        passes += 1
        ended = False
        for token in [*draft[:kept], choice]:  # `done` sees each token: the run ends where it says, not a draft later
            tokens.append(token)
            if ended := done(tokens):
                break
        if ended or tokens[-1] in stop_tokens or len(tokens) >= max_tokens:
            return _cut(tokens, stop_tokens, max_tokens), passes
        inputs, draft = [tokens[-1]], propose(tokens)[: max_tokens - len(tokens) - 1]


def batch_greedy_decode(model, prefix_cache, prompts: list[list[int]], dones: list[Callable[[list[int]], bool]],
                        max_tokens: int, stop_tokens: set[int], batch_size: int
                        ) -> Iterator[tuple[int, list[int], int]]:
    """`greedy_decode` without drafts for many prompts, each after the prefix held in `prefix_cache` (left as it
    was), up to `batch_size` at a time: one forward pass per step for every running row, a row stops as its own
    run would, and waiting prompts take the places of rows that stop (continuous batching: one long answer
    does not hold up the others). Yields (prompt index, tokens, forward passes the row took part in) as rows
    finish."""
    import mlx.core as mx

    waiting = list(range(len(prompts)))[::-1]
    cache, rows, tokens, passes = None, [], {}, {}
    while rows or waiting:
        if waiting and len(rows) < batch_size:  # newcomers are prefilled together; the others wait a step
            joining = [waiting.pop() for _ in range(min(batch_size - len(rows), len(waiting)))]
            joined, first = _prefill_rows(model, prefix_cache, [prompts[i] for i in joining])
            for i, token in zip(joining, first):
                tokens[i], passes[i] = [token], 1
            for layer, new in zip(cache or [], joined):
                layer.extend(new)
            cache, rows = cache or joined, rows + joining
        else:
            logits = model(mx.array([[tokens[i][-1]] for i in rows]), cache=cache)
            for i, token in zip(rows, mx.argmax(logits[:, -1], axis=-1).tolist()):
                tokens[i].append(token)
                passes[i] += 1
        keep = [k for k, i in enumerate(rows)
                if tokens[i][-1] not in stop_tokens and len(tokens[i]) < max_tokens and not dones[i](tokens[i])]
        for i in [i for k, i in enumerate(rows) if k not in keep]:
            yield i, _cut(tokens[i], stop_tokens, max_tokens), passes[i]
        if len(keep) < len(rows):  # finished rows leave the batch
            rows = [rows[k] for k in keep]
            if not rows:
                cache = None
            for layer in cache or []:
                layer.filter(mx.array(keep))


def _prefill_rows(model, prefix_cache, prompts: list[list[int]]) -> tuple[list, list[int]]:
    """(a BatchKVCache per layer holding the prefix and each prompt after it, each prompt's greedy next token).
    The prompts go in right-padded; `finalize` rolls each row's padding to its left, where the mask hides it."""
    import mlx.core as mx
    from mlx_lm.models.cache import BatchKVCache

    width = max(map(len, prompts))
    padding = [width - len(p) for p in prompts]
    cache = [BatchKVCache.merge([layer] * len(prompts)) for layer in prefix_cache]
    for layer in cache:
        layer.prepare(right_padding=padding)
    logits = model(mx.array([p + [0] * pad for p, pad in zip(prompts, padding)]), cache=cache)
    for layer in cache:
        layer.finalize()
    last = logits[mx.arange(len(prompts)), mx.array([len(p) - 1 for p in prompts])]
    return cache, mx.argmax(last, axis=-1).tolist()


def _cut(tokens: list[int], stop_tokens: set[int], max_tokens: int) -> list[int]:
    """The tokens before the first stop token, at most `max_tokens`."""
    cut = next((i for i, t in enumerate(tokens) if t in stop_tokens), len(tokens))
    return tokens[: min(cut, max_tokens)]


def _runner_up(row, choice: int, allowed: list[int] | None) -> tuple[int | None, float]:
    """The best token after `choice` (among `allowed`, when given) and its logit's distance below it."""
    import mlx.core as mx

    ids = mx.array(allowed) if allowed else None
    scores = row[ids] if ids is not None else row
    if scores.size < 2:
        return None, float("inf")
    top = mx.argpartition(-scores, 1)[:2].tolist()
    second = next(i for i in sorted(top, key=lambda i: -scores[i].item()) if (allowed[i] if allowed else i) != choice)
    token = allowed[second] if allowed else second
    return token, row[choice].item() - row[token].item()


def context_messages(workspace_map: str | None) -> list[dict]:
    """What precedes every question: the system prompt and, when given, the workspace map."""

    context = [{"role": "system", "content": SYSTEM_PROMPT}]
    if workspace_map is not None:
        context.append({"role": "system", "content": workspace_map})
    return context


# Tool calls as the chat template writes them: where drafts for the call's scaffold come from. Most grep
# patterns end with a word boundary (`def x\b`, written `\\b` in JSON), so the shape's does too and what
# follows it (`", "path": "`) is drafted whole.
CALL_OPENING = '<tool_call>\n{"name": "'  # every call starts so: the first draft, checked in the prompt's pass
CALL_SHAPES = "".join(
    f'{CALL_OPENING}{name}", "arguments": {{{args}}}}}\n</tool_call>'
    for name, args in (("grep", '"pattern": "def x\\\\b", "path": "y"'), ("read", '"path": "y"')))
# Tokens a draft may propose: the longest scaffold runs (`tool_call>\n{"name": "grep", "arguments": ...`)
# pass 8. Against 8 tokens and the old shape, 0.86x the time per tool call (README, "Drafts").
DRAFT_SIZE = 12


class Progress:
    """How far one answer has got: `done(generated)`, called after each new token, says whether decoding can
    stop (the call is complete, or `max_answer_tokens` past a direct decision) and notes when it decided."""

    def __init__(self, tokenizer, max_answer_tokens: int | None, forced: list[int] = ()):
        self.tokenizer, self.max_answer_tokens, self.forced = tokenizer, max_answer_tokens, list(forced)
        self.decided_at = self.answer_from = None  # perf_counter time and answer length at the decision
        self.direct = False

    def done(self, generated: list[int]) -> bool:
        generated = self.forced + generated
        text = self.tokenizer.decode(generated)
        if self.decided_at is None and (label := decided(text)) is not None:
            self.decided_at, self.answer_from = time.perf_counter(), len(generated)
            self.direct = label == "direct"
        if self.direct:  # the decision is made; a few tokens of the answer are kept
            return self.max_answer_tokens is not None and len(generated) - self.answer_from >= self.max_answer_tokens
        return finished_call(text)


class Decider:
    """Greedy tool-use decisions. What every question shares (system prompt, tools, workspace map) is
    prefilled once into mlx-lm's prompt cache, each question prefills only its own tokens, and decoding
    stops as soon as the call is complete or the turn ends (prompt-lookup drafts cut the forward passes,
    not the output). `max_answer_tokens=None` lets a direct answer run to its end. With a `guard`
    (tooltrain.eval.guided.PathGuard) a call's path can only be a real path of the workspace."""

    def __init__(self, model, tokenizer, context: list[dict], max_tokens: int = 96,
                 max_answer_tokens: int | None = 8, draft_size: int = DRAFT_SIZE, guard=None):
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache


        self.model, self.tokenizer, self.context = model, tokenizer, context
        # The batched raw pass computes the model with exponentials as powers of two: 0.92x its time, the same
        # tokens; one question at a time (few exponentials a pass) it gains nothing, and runs as mlx-lm's.
        self.batch_forward = fast_blocks.forward(model)
        self.max_tokens, self.max_answer_tokens, self.draft_size = max_tokens, max_answer_tokens, draft_size
        self.guard = guard
        self.prefix = tokenizer.apply_chat_template(context, tools=TOOLS)
        self.shapes = tokenizer.encode(CALL_SHAPES, add_special_tokens=False)
        self.opening = tokenizer.encode(CALL_OPENING, add_special_tokens=False)
        self.stop_tokens = set(tokenizer.eos_token_ids)
        self.cache = make_prompt_cache(model)
        model(mx.array(self.prefix)[None], cache=self.cache)
        mx.eval([c.state for c in self.cache])

    def prompt(self, question: str) -> list[int]:

        return self.tokenizer.apply_chat_template([*self.context, {"role": "user", "content": question}],
                                                  tools=TOOLS, add_generation_prompt=True)

    def decide(self, question: str, forced: list[int] = (), runners_up: bool = False) -> dict:
        """{"raw", "ids", "time_to_decision_s", "gen_time_s", "tokens", "passes", "prefix_reused"} for one question.
        `forced`: the answer's first tokens, given (decoding goes on after them); `runners_up`: the record also
        holds, per answer token, the token that came second and its logit margin (None, inf for forced ones)."""
        from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache


        forced = list(forced)
        tokens = self.prompt(question) + forced
        shared = tokens[: len(self.prefix)] == self.prefix
        cache = self.cache if shared else make_prompt_cache(self.model)
        started = time.perf_counter()
        progress = Progress(self.tokenizer, self.max_answer_tokens, forced)
        context = tokens + self.shapes  # lookups search from the end: the call shapes first

        def propose(generated: list[int]) -> list[int]:  # drafts only pay inside a tool call, not in prose
            history = forced + generated
            if not history:  # checked with the question's own tokens: a call's opening
                return self.opening[: self.draft_size]
            return [] if progress.direct else lookup_draft(history, context + generated, self.draft_size)

        guide = None if self.guard is None else \
            (lambda generated: self.guard.allowed(self.tokenizer.decode(forced + generated)))
        runners = [] if runners_up else None
        generated, passes = greedy_decode(self.model, cache, tokens[len(self.prefix):] if shared else tokens,
                                          propose, progress.done, self.max_tokens - len(forced), self.stop_tokens,
                                          guide, runners)
        generated = forced + generated
        took = time.perf_counter() - started
        if shared:
            trim_prompt_cache(cache, cache[0].offset - len(self.prefix))
        out = {"raw": self.tokenizer.decode(generated), "ids": generated, "gen_time_s": took,
               "time_to_decision_s": progress.decided_at - started if progress.decided_at is not None else took,
               "tokens": len(generated), "passes": passes, "prefix_reused": shared}
        if runners is not None:
            out["runners_up"] = ([(None, float("inf"))] * len(forced) + runners)[: len(generated)]
        return out

    def decide_batch(self, questions: list[str], batch_size: int) -> Iterator[tuple[int, dict]]:
        """`decide` for many questions, `batch_size` at a time (`batch_greedy_decode`: no drafts, no guard, the
        same tokens), as (index, record) in the order they finish. "passes" counts the batched passes the
        question took part in; there are no times (a question's share of a batch is no latency). Questions
        whose prompt does not start with the prefix, and every question of a model whose cache is not plain
        keys and values (sliding windows, state-space layers), go one at a time."""
        from mlx_lm.models.cache import KVCache

        prompts = [self.prompt(question) for question in questions]
        plain_cache = all(type(layer) is KVCache for layer in self.cache)  # what BatchKVCache can merge
        batched = [i for i, p in enumerate(prompts)
                   if plain_cache and self.guard is None and p[: len(self.prefix)] == self.prefix]
        for i in sorted(set(range(len(questions))) - set(batched)):
            yield i, self.decide(questions[i])
        tails = [prompts[i][len(self.prefix):] for i in batched]
        dones = [Progress(self.tokenizer, self.max_answer_tokens).done for _ in batched]
        for k, ids, passes in batch_greedy_decode(self.batch_forward, self.cache, tails, dones, self.max_tokens,
                                                  self.stop_tokens, batch_size):
            yield batched[k], {"raw": self.tokenizer.decode(ids), "ids": ids, "tokens": len(ids), "passes": passes,
                               "prefix_reused": True, "batch_size": batch_size}

    def plain_generate(self, question: str) -> tuple[str, float]:
        """mlx-lm's one-shot `generate` on the whole prompt, as a user would call it (no cache, no early stop)."""
        from mlx_lm import generate

        started = time.perf_counter()
        text = generate(self.model, self.tokenizer, prompt=self.prompt(question), max_tokens=self.max_tokens)
        return text, time.perf_counter() - started
