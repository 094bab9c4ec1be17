"""Digests that let the ranks of a distributed run be compared: the batches each trains on first,
and the adapter weights each ends with."""

from __future__ import annotations

import hashlib


def first_batches_digest(train_set, args, world, count: int = 3) -> str:
    """Digest of the first batches this rank will train on (replayed without moving the RNG)."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import iterate_batches

    state = np.random.get_state()
    batches = iterate_batches(CacheDataset(train_set), args.batch_size, args.max_seq_length, loop=True,
                              comm_group=world)
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(np.array(next(batches)[0]).tobytes())
    np.random.set_state(state)
    return digest.hexdigest()[:16]


def weights_digest(model) -> str:
    """Digest of the trainable (adapter) weights, to compare ranks."""
    import numpy as np
    from mlx.utils import tree_flatten

    digest = hashlib.sha256()
    for name, value in sorted(tree_flatten(model.trainable_parameters()), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(np.array(value).tobytes())
    return digest.hexdigest()[:16]
