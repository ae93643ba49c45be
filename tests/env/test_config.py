import re

import pytest

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("network", "resnet999", "expected one of"),
        ("dataset", "imagenet", "'digits'"),
        ("selector", "psychic", "'magnitude'"),
        ("regrowth", "magic", "'random'"),
        ("granularity", "layer", "'neuron'"),
        ("target_density", 0.0, r"\(0, 1\]"),
        ("target_density", 1.5, r"\(0, 1\]"),
        ("min_density", -0.1, r"\(0, 1\]"),
        ("decision_interval", 7, "divisor of total_iterations=400"),
        ("decision_interval", 0, "an integer"),
        ("total_iterations", 2.5, "an integer"),
        ("lr", float("nan"), "finite"),
        ("exchange_fraction", 1.0, r"\[0, 1\)"),
        ("optimizer", "lbfgs", "'adam'"),
        ("reward", "vibes", "'final_accuracy'"),
        ("observations", ("snr_but_wrong",), "expected one of"),
    ],
)
def test_bad_value_names_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError, match=rf"^{field}=") as info:
        EnvConfig(**{field: value})
    bad = value[0] if isinstance(value, tuple) else value
    assert f"{field}={bad!r} is not allowed; expected" in str(info.value)
    assert re.search(allowed, str(info.value))


def test_config_is_frozen_and_replace_validates():
    cfg = EnvConfig()
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="batch_size=0"):
        cfg.replace(batch_size=0)
    assert cfg.num_decisions == 10


def test_env_raises_for_unavailable_cuda_or_unknown_kw():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'"):
            SparsityEnv(device="cuda", dataset="synthetic")
    with pytest.raises(TypeError):
        SparsityEnv(not_a_field=1)
    with pytest.raises(ValueError, match="render_mode"):
        SparsityEnv(render_mode="human")


def test_config_pickles_with_its_read_only_mappings():
    import pickle
    from types import MappingProxyType

    cfg = EnvConfig(network_kwargs={"widths": (8,)}, selector="snr", selector_options={"combine": "and"})
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg
    assert isinstance(copy.network_kwargs, MappingProxyType) and isinstance(copy.selector_options, MappingProxyType)
