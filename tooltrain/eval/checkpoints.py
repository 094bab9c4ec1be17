"""The benchmark's measure, on a phase's valid split, for training to pick its best adapter with.

Training knows nothing of evaluation: `scripts/train_adapter.py` hands `task_scorer` to it.
"""

from __future__ import annotations

from pathlib import Path

from ..workspace import render_map, scan_roots
from .benchmark import BATCH_SIZE, score_cases, summarize
from .decoding import Decider, context_messages
from .scoring import load_cases


def task_scorer(args, model, tokenizer, skip: set[int]):
    """What the benchmark measures, on the valid split, for the recorder: a function scoring the current
    weights (the benchmark's prompt with the workspace map, greedy decoding, calls run for real), or None
    when the config names no `task_eval` file. Iterations in `skip` (the trainer's last validation comes
    one step before the final one) and before `task_from` (an adapter that young is never the best, and
    a scoring pass costs a minute or more on a CPU) are not scored. The cases go through the benchmark's
    batched raw pass."""
    task_eval = getattr(args, "task_eval", None)
    if not task_eval:
        return None
    cases = load_cases(Path(task_eval))
    roots = (Path(args.task_repos_root),)
    context = context_messages(render_map(scan_roots(list(roots))) if getattr(args, "task_map", True) else None)

    first = int(getattr(args, "task_from", 0) or 0)

    def scorer(iteration: int) -> dict | None:
        if iteration in skip or iteration < first:
            return None
        records, skipped = score_cases(Decider(model, tokenizer, context), cases, roots, batch_size=BATCH_SIZE)
        summary = summarize(records, skipped)
        return {k: summary.get(k) for k in ("success", "accuracy", "grep_hit_rate", "read_valid_rate",
                                            "over_call_rate", "cases")}

    return scorer
