"""mlx-lm's masked loss, computed only where the mask is on.

With `mask_prompt`, mlx-lm's `default_loss` still projects every position onto the
49k-token vocabulary and takes the cross-entropy there, then multiplies most of it
by zero: ~310 of the ~350 positions of a row here are the shared system-and-tools
prompt. This loss gathers the last `window` positions of each row (which hold the
whole answer) before the projection, so it computes the same value with a fraction
of the work. mlx-lm's `train()` takes a `loss=`; `answer_loss_in_trainer` passes it
through `mlx_lm.lora.train_model`, which does not expose it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

# Architectures whose forward pass is exactly `model.model(...)` then the tied embedding or `lm_head`.
PLAIN_HEAD_MODELS = {"llama", "qwen2", "qwen3", "mistral"}


def answer_window(dataset) -> int:
    """Positions that cover every row's answer (plus one), rounded up to 32 (fewer distinct shapes to compile)."""
    longest = max(len(tokens) - offset for tokens, offset in (dataset.process(dataset[i]) for i in range(len(dataset))))
    return 32 * ((longest + 1 + 31) // 32)


def make_answer_loss(window: int):
    """A drop-in for mlx-lm's `default_loss(model, batch, lengths)` that skips masked positions."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import default_loss

    def loss(model, batch, lengths):
        inputs, targets = batch[:, :-1], batch[:, 1:]
        if targets.shape[1] <= window or getattr(model, "model_type", None) not in PLAIN_HEAD_MODELS:
            return default_loss(model, batch, lengths)
        hidden = model.model(inputs)
        # Answers end each row, so the last `window` positions before a row's end hold all of it.
        start = mx.maximum(lengths[:, 1:] - window, 0)
        positions = start + mx.arange(window)[None, :]
        picked = mx.take_along_axis(hidden, positions[..., None], axis=1)
        logits = model.lm_head(picked) if hasattr(model, "lm_head") else model.model.embed_tokens.as_linear(picked)
        steps = positions + 1  # mlx-lm's 1-based step numbering
        mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
        ce = nn.losses.cross_entropy(logits, mx.take_along_axis(targets, positions, axis=1)) * mask
        ntoks = mask.sum()
        return ce.astype(mx.float32).sum() / ntoks, ntoks

    return loss


@contextmanager
def answer_loss_in_trainer(loss):
    """Make `mlx_lm.lora.train_model` call mlx-lm's `train()` with `loss` (restored afterwards)."""
    from mlx_lm import lora
    from mlx_lm.tuner import trainer

    original = lora.train
    lora.train = functools.partial(trainer.train, loss=loss)
    try:
        yield
    finally:
        lora.train = original
