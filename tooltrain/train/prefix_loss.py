"""mlx-lm's masked loss, without recomputing what every row shares.

Every training row here opens with the same ~300-token system-and-tools prompt,
and LoRA adapts only the last `num_layers` blocks. mlx-lm's `default_loss` runs
each row in full through every block, then projects every position onto the
vocabulary and zeroes most of it (`mask_prompt`). This loss gives the same value
and the same gradients with less work:

1. the shared prefix goes through the frozen blocks once per run: its keys,
   values and the hidden state leaving them are constants;
2. through the adapted blocks it goes once per batch instead of once per row:
   the rows' own tokens attend to its keys and values, as they would in the
   full sequence (the attention is causal, so the prefix never sees them);
3. logits (a 576 x 49k projection per position, as costly as several blocks) are
   computed only in a window over each row's answer: `answer_window` positions from
   the row's first loss position, gathered per row (a fixed width, so the compiled
   step keeps static shapes). The prompt's positions before it carry no loss.
4. for Llama-shaped blocks (llama, qwen2) on the CPU the loss runs each block itself, every
   exponential (attention's softmax, SiLU, the cross-entropy's log-sum-exp) taken as a
   power of two (tooltrain.model.fast_blocks): 0.83x the time of a step here, the same
   loss and gradients to float32 rounding (tests/test_train.py).

It must be built once the LoRA layers are in place: they decide which blocks are
frozen (`tooltrain.train.run.train_lora` builds it right after adding them).
"""

from __future__ import annotations

from ..model import fast_blocks

# Architectures whose forward is embed -> blocks(x, mask, cache) -> norm -> tied embedding or lm_head.
PLAIN_MODELS = {"llama", "qwen2", "qwen3"}
MIN_PREFIX = 16  # below this the bookkeeping is not worth it


class PrefixKV:
    """Stands in for one block's mlx-lm KV cache: a prefix's keys and values, shared by a batch.

    Empty, it records what a prefix pass computes; filled, it prepends them
    (broadcast over the batch) to the keys and values of the tokens that follow.
    """

    def __init__(self, keys=None, values=None):
        self.keys, self.values = keys, values

    @property
    def offset(self) -> int:  # position of the first token after the prefix (for RoPE)
        return 0 if self.keys is None else self.keys.shape[2]

    def update_and_fetch(self, keys, values):
        import mlx.core as mx

        if self.keys is None:
            self.keys, self.values = keys, values
            return keys, values
        batch = keys.shape[0]
        return tuple(mx.concatenate([mx.broadcast_to(shared, (batch, *shared.shape[1:])), own], axis=2)
                     for shared, own in ((self.keys, keys), (self.values, values)))


def shared_prefix(datasets, limit: int | None = None) -> list[int]:
    """The longest token prefix common to every row of `datasets` (mlx-lm's ChatDataset/CacheDataset),
    cut to end before every row's last prompt token, so every loss position lies after it."""
    prefix, shortest_prompt = None, None
    for dataset in datasets:
        for i in range(len(dataset)):
            tokens, offset = dataset.process(dataset[i])
            shortest_prompt = offset if shortest_prompt is None else min(shortest_prompt, offset)
            if prefix is None:
                prefix = list(tokens)
                continue
            n = 0
            for a, b in zip(prefix, tokens):
                if a != b:
                    break
                n += 1
            del prefix[n:]
    if prefix is None:
        return []
    return prefix[: max(0, min(len(prefix), shortest_prompt - 1, limit if limit is not None else len(prefix)))]


def answer_window(datasets) -> int:
    """The widest span of loss positions of any row: the answer plus its end token."""
    width = 0
    for dataset in datasets:
        for i in range(len(dataset)):
            tokens, offset = dataset.process(dataset[i])
            width = max(width, len(tokens) - offset + 1)
    return width


def frozen_block_count(model) -> int:
    """How many leading transformer blocks have nothing to train."""
    from mlx.utils import tree_flatten

    count = 0
    for layer in model.model.layers:
        if tree_flatten(layer.trainable_parameters()):
            break
        count += 1
    return count


def make_shared_prefix_loss(model, prefix: list[int], window: int | None = None):
    """A drop-in for mlx-lm's `default_loss(model, batch, lengths)` for batches whose rows all start
    with `prefix`; mlx-lm's own loss when the model's architecture or the prefix does not fit.
    `window` (see `answer_window`) bounds the loss positions of a row; None: every position after the prefix."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import default_loss

    if len(prefix) < MIN_PREFIX or not fast_blocks.fits(model, PLAIN_MODELS):
        return default_loss
    p = len(prefix)
    frozen = frozen_block_count(model)
    fast = fast_blocks.pays(model)

    def run(layer, x, cache):
        return fast_blocks.block(layer, x, "causal", cache) if fast else layer(x, "causal", cache=cache)

    entropy = fast_blocks.cross_entropy if fast else nn.losses.cross_entropy
    hidden = model.model.embed_tokens(mx.array(prefix)[None])
    frozen_kv = []
    for layer in model.model.layers[:frozen]:
        frozen_kv.append(PrefixKV())
        hidden = run(layer, hidden, frozen_kv[-1])
    hidden = mx.stop_gradient(hidden)
    mx.eval(hidden, *[(kv.keys, kv.values) for kv in frozen_kv])

    def loss(model, batch, lengths):
        inner = model.model
        inputs, targets = batch[:, p:-1], batch[:, p + 1:]
        h = inner.embed_tokens(inputs)
        for kv, layer in zip(frozen_kv, inner.layers[:frozen]):
            h = run(layer, h, PrefixKV(kv.keys, kv.values))
        shared = hidden
        for layer in inner.layers[frozen:]:
            kv = PrefixKV()
            shared = run(layer, shared, kv)  # the prefix once, for the whole batch
            h = run(layer, h, kv)
        width = h.shape[1]
        if window is not None and window < width:  # each row's answer window, gathered
            first = mx.clip(lengths[:, 0:1] - (p + 1), 0, width - window)  # h index of its first loss position
            index = first + mx.arange(window)[None]
            h = mx.take_along_axis(h, index[..., None], axis=1)
            targets = mx.take_along_axis(targets, index, axis=1)
            steps = index + p + 1
        else:
            steps = mx.arange(p + 1, batch.shape[1])[None]  # mlx-lm's 1-based step numbers of these positions
        logits = fast_blocks.logits(model, inner.norm(h))
        mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
        ce = entropy(logits, targets) * mask
        ntoks = mask.sum()
        return ce.astype(mx.float32).sum() / ntoks, ntoks

    loss.prefix_length, loss.frozen_blocks, loss.window, loss.powers_of_two = p, frozen, window, fast
    return loss
