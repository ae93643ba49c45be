import dataclasses

import torch

from sparsity_gym.models import build_network, find_prunable_layers
from sparsity_gym.models.layers import LayerCache


def test_cached_layers_equal_a_fresh_trace_and_bind_the_new_modules():
    cache = LayerCache()
    first = build_network("mlp", (64,), 10)
    cache(first, (64,))
    torch.manual_seed(1)
    second = build_network("mlp", (64,), 10)
    cached, fresh = cache(second, (64,)), find_prunable_layers(second, (64,))
    assert [dataclasses.replace(c, module=None) for c in cached] == [dataclasses.replace(f, module=None) for f in fresh]
    assert all(c.module is f.module for c, f in zip(cached, fresh, strict=True))
    other = build_network("mlp", (64,), 10, {"widths": (8,)})  # another architecture: traced anew
    assert [i.fan_out for i in cache(other, (64,))] == [8, 10]
