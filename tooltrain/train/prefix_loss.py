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
4. for Llama-shaped blocks (llama, qwen2) the loss runs each block itself (`block`),
   with every exponential (attention's softmax, SiLU, the cross-entropy's log-sum-exp)
   taken as a power of two: MLX's CPU build for Linux has no vector `exp` (~15 ns an
   element, `2 ** x` ~6 ns), and these exponentials are a fifth of a step here. The
   values agree with mlx-lm's to float32 rounding (tests/test_train.py).

It must be built once the LoRA layers are in place: they decide which blocks are
frozen (`tooltrain.train.run.train_lora` builds it right after adding them).
"""

from __future__ import annotations

# Architectures whose forward is embed -> blocks(x, mask, cache) -> norm -> tied embedding or lm_head.
PLAIN_MODELS = {"llama", "qwen2", "qwen3"}
# Those whose blocks are exactly mlx-lm's Llama block (qwen3 adds query and key norms: run as its own).
LLAMA_BLOCKS = {"llama", "qwen2"}
MIN_PREFIX = 16  # below this the bookkeeping is not worth it
LOG2E = 1.4426950408889634  # e ** x == 2 ** (x * LOG2E)


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


def exp(x):
    """e ** x as a power of two (faster than `mx.exp` on MLX's CPU build, same value to rounding)."""
    import mlx.core as mx

    return mx.power(2.0, x * LOG2E)


def causal_attention(queries, keys, values, scale: float):
    """mlx-lm's causal scaled dot-product attention (grouped heads; the keys may start with earlier
    positions, as the prefix's do), its softmax's exponential taken by `exp`."""
    import mlx.core as mx

    batch, heads, length, dim = queries.shape
    kv_heads, span = keys.shape[1], keys.shape[2]
    grouped = (batch, kv_heads, heads // kv_heads * length)  # the query heads that share a key head, stacked
    scores = ((queries * scale).reshape(*grouped, dim) @ keys.swapaxes(-1, -2)).reshape(batch, heads, length, span)
    visible = mx.arange(span)[None] <= (mx.arange(length) + (span - length))[:, None]
    scores = mx.where(visible, scores, -mx.inf)
    weights = exp(scores - mx.stop_gradient(scores.max(axis=-1, keepdims=True)))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return (weights.reshape(*grouped, span) @ values).reshape(batch, heads, length, dim)


def block(layer, x, cache):
    """One of mlx-lm's Llama blocks (`layer(x, "causal", cache)`), computed with `exp`."""
    import mlx.core as mx

    attn, mlp = layer.self_attn, layer.mlp
    batch, length, _ = x.shape
    h = layer.input_layernorm(x)
    q, k, v = (proj(h).reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)
               for proj, heads in ((attn.q_proj, attn.n_heads), (attn.k_proj, attn.n_kv_heads),
                                   (attn.v_proj, attn.n_kv_heads)))
    q, k = attn.rope(q, offset=cache.offset), attn.rope(k, offset=cache.offset)
    k, v = cache.update_and_fetch(k, v)
    out = causal_attention(q, k, v, attn.scale).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    x = x + attn.o_proj(out)
    h = layer.post_attention_layernorm(x)
    gate = mlp.gate_proj(h)
    silu = gate / (1 + exp(mx.minimum(-gate, 87.0)))  # capped: 2 ** 126 stays finite, so does its gradient
    return x + mlp.down_proj(silu * mlp.up_proj(h))


def cross_entropy(logits, targets):
    """`mlx.nn.losses.cross_entropy(logits, targets)`, its log-sum-exp taken with `exp`."""
    import mlx.core as mx

    top = mx.stop_gradient(logits.max(axis=-1, keepdims=True))
    log_total = top.squeeze(-1) + mx.log(exp(logits - top).sum(axis=-1))
    return log_total - mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)


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


def supports(model) -> bool:
    inner = getattr(model, "model", None)
    return (getattr(model, "model_type", None) in PLAIN_MODELS and inner is not None
            and not any(getattr(layer, "use_sliding", False) for layer in inner.layers))


def make_shared_prefix_loss(model, prefix: list[int], window: int | None = None):
    """A drop-in for mlx-lm's `default_loss(model, batch, lengths)` for batches whose rows all start
    with `prefix`; mlx-lm's own loss when the model's architecture or the prefix does not fit.
    `window` (see `answer_window`) bounds the loss positions of a row; None: every position after the prefix."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import default_loss

    if len(prefix) < MIN_PREFIX or not supports(model):
        return default_loss
    p = len(prefix)
    frozen = frozen_block_count(model)
    run = block if model.model_type in LLAMA_BLOCKS else (lambda layer, x, cache: layer(x, "causal", cache=cache))
    entropy = cross_entropy if model.model_type in LLAMA_BLOCKS else nn.losses.cross_entropy
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
        h = inner.norm(h)
        logits = model.lm_head(h) if hasattr(model, "lm_head") else inner.embed_tokens.as_linear(h)
        mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
        ce = entropy(logits, targets) * mask
        ntoks = mask.sum()
        return ce.astype(mx.float32).sum() / ntoks, ntoks

    loss.prefix_length, loss.frozen_blocks, loss.window = p, frozen, window
    return loss
