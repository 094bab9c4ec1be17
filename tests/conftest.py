"""Session fixtures shared by the model, training and fusing tests."""

import pytest

from tooltrain import modelprep


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The real GGUF converted once (fetch, convert, sanity check, atomic publish) into a tmp dir."""
    out = tmp_path_factory.mktemp("models") / modelprep.DEFAULT_MODEL
    modelprep.convert_default(out)
    return out


@pytest.fixture(scope="session")
def float32_base(converted, tmp_path_factory):
    """The float32 copy a CPU trains on, made by the project's own path."""
    return modelprep.float32_copy(converted, tmp_path_factory.mktemp("f32"))
