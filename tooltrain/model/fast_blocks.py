"""mlx-lm's Llama blocks with every exponential taken as a power of two.

MLX's CPU build for Linux (the PyPI wheel) has no vector `exp`: an element costs ~14 ns,
`mx.power(2, x)` ~6 ns and a multiply 0.6 ns (`mx.exp` on 4.1 M floats: 57 ms). Attention's
softmax, SiLU and a log-sum-exp are exponentials, and they are a large share of this
small model's time on a CPU. `block` computes one of mlx-lm's Llama blocks (llama, qwen2)
with `e ** x = 2 ** (x * log2(e))`: the same values to float32 rounding, not the same bits.
Only on the CPU (`pays`): on a GPU (Apple silicon) mlx-lm's own blocks run, as before.
Used by the training loss (tooltrain.train.prefix_loss, 0.83x the time of a step) and the
benchmark's batched raw pass (`forward`, 0.92x); other architectures run as mlx-lm computes them.
"""

from __future__ import annotations

# Architectures whose blocks are exactly mlx-lm's Llama block (qwen3 adds query and key norms).
LLAMA_BLOCKS = {"llama", "qwen2"}
LOG2E = 1.4426950408889634  # e ** x == 2 ** (x * LOG2E)


def fits(model, model_types: set[str] = LLAMA_BLOCKS) -> bool:
    """Whether the model is one of `model_types` with its blocks in `model.model.layers` and no sliding windows
    (by default: whether `block` computes its blocks)."""
    inner = getattr(model, "model", None)
    return (getattr(model, "model_type", None) in model_types and inner is not None
            and not any(getattr(layer, "use_sliding", False) for layer in inner.layers))


def pays(model) -> bool:
    """Whether to run this model's blocks with `block`: they fit and MLX computes on the CPU. A GPU has a fast
    `exp` and runs mlx-lm's attention as one fused kernel; `block` was not measured there, so it is not used."""
    import mlx.core as mx

    return fits(model) and mx.default_device().type == mx.DeviceType.cpu


def exp(x):
    """e ** x as a power of two (faster than `mx.exp` on MLX's CPU build, the same value to rounding)."""
    import mlx.core as mx

    return mx.power(2.0, x * LOG2E)


def attention(queries, keys, values, scale: float, mask):
    """mlx-lm's scaled dot-product attention (grouped heads; `mask` None, "causal" with the queries
    last, or a boolean or additive array), its softmax's exponential taken by `exp`."""
    import mlx.core as mx

    batch, heads, length, dim = queries.shape
    kv_heads, span = keys.shape[1], keys.shape[2]
    grouped = (batch, kv_heads, heads // kv_heads * length)  # the query heads that share a key head, stacked
    scores = ((queries * scale).reshape(*grouped, dim) @ keys.swapaxes(-1, -2)).reshape(batch, heads, length, span)
    if isinstance(mask, str):
        mask = mx.arange(span)[None] <= (mx.arange(length) + (span - length))[:, None]
    if mask is not None:
        scores = mx.where(mask, scores, -mx.inf) if mask.dtype == mx.bool_ else scores + mask
    weights = exp(scores - mx.stop_gradient(scores.max(axis=-1, keepdims=True)))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return (weights.reshape(*grouped, span) @ values).reshape(batch, heads, length, dim)


def block(layer, x, mask, cache):
    """`layer(x, mask, cache)` for one of mlx-lm's Llama blocks, computed with `exp`."""
    import mlx.core as mx

    attn, mlp = layer.self_attn, layer.mlp
    batch, length, _ = x.shape
    h = layer.input_layernorm(x)
    q, k, v = (proj(h).reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)
               for proj, heads in ((attn.q_proj, attn.n_heads), (attn.k_proj, attn.n_kv_heads),
                                   (attn.v_proj, attn.n_kv_heads)))
    offset = 0 if cache is None else cache.offset
    q, k = attn.rope(q, offset=offset), attn.rope(k, offset=offset)
    if cache is not None:
        k, v = cache.update_and_fetch(k, v)
    out = attention(q, k, v, attn.scale, mask).transpose(0, 2, 1, 3).reshape(batch, length, -1)
    x = x + attn.o_proj(out)
    h = layer.post_attention_layernorm(x)
    gate = mlp.gate_proj(h)
    silu = gate / (1 + exp(mx.minimum(-gate, 87.0)))  # capped: 2 ** 126 stays finite, so does its gradient
    return x + mlp.down_proj(silu * mlp.up_proj(h))


def logits(model, h):
    """The vocabulary head after the final norm: `lm_head`, or the tied embedding."""
    return model.lm_head(h) if hasattr(model, "lm_head") else model.model.embed_tokens.as_linear(h)


def cross_entropy(scores, targets):
    """`mlx.nn.losses.cross_entropy(scores, targets)`, its log-sum-exp taken with `exp`."""
    import mlx.core as mx

    top = mx.stop_gradient(scores.max(axis=-1, keepdims=True))
    log_total = top.squeeze(-1) + mx.log(exp(scores - top).sum(axis=-1))
    return log_total - mx.take_along_axis(scores, targets[..., None], axis=-1).squeeze(-1)


def forward(model):
    """`model(inputs, cache=...)` computed with `block` where that pays, else the model itself."""
    from mlx_lm.models.base import create_attention_mask

    if not pays(model):
        return model
    inner = model.model

    def run(inputs, cache=None):
        h = inner.embed_tokens(inputs)
        caches = cache or [None] * len(inner.layers)
        mask = create_attention_mask(h, caches[0])
        for layer, layer_cache in zip(inner.layers, caches):
            h = block(layer, h, mask, layer_cache)
        return logits(model, inner.norm(h))

    return run
