"""``info["base_dense_flops"]``: the FLOPs of the network as specified, before ``capacity`` widened it."""

import pytest

from sparsity_gym.env.sparsity_env import SparsityEnv

DYNO_LIKE = {
    "dataset": "synthetic",
    "granularity": "neuron",
    "selector": "redundancy",
    "regrowth": "north",
    "target_density": None,
    "stats_window": 10,
    "total_iterations": 20,
    "decision_interval": 10,
}


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_widened_network_reports_the_specified_networks_flops(network):
    plain = SparsityEnv(**DYNO_LIKE, network=network, capacity=1.0)
    wide = SparsityEnv(**DYNO_LIKE, network=network, capacity=2.0)
    _, p = plain.reset(seed=0)
    _, w = wide.reset(seed=0)
    assert p["base_dense_flops"] == p["dense_flops"]
    assert w["dense_flops"] > 2 * p["dense_flops"]  # the built network is wider
    assert w["base_dense_flops"] == p["dense_flops"]  # the fraction's denominator is the specified network's
    plain.close()
    wide.close()
