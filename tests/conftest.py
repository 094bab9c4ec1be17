"""Session fixtures shared by the model, training and fusing tests."""

import pytest

from tests.training_runs import make_run, train
from tooltrain import model_folders, paths
from tooltrain.model import gguf


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The real GGUF converted once (fetch, convert, sanity check, atomic publish) into a tmp dir."""
    out = tmp_path_factory.mktemp("models") / paths.DEFAULT_MODEL
    gguf.convert_default(out)
    return out


@pytest.fixture(scope="session")
def float32_base(converted, tmp_path_factory):
    """The float32 copy a CPU trains on, made by the project's own path."""
    return model_folders.float32_copy(converted, tmp_path_factory.mktemp("f32"))


@pytest.fixture(scope="session")
def trained(float32_base, tmp_path_factory):
    """A real adapter from 6 steps of scripts/train_adapter.py on a few rows (record and plot beside it)."""
    work = tmp_path_factory.mktemp("train")
    done = train(make_run(work, float32_base, iters=6, save_every=3))
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "adapters"
