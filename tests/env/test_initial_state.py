"""Fine-tuning episodes: every episode starts from a pre-trained state (a file or a callable), checked first."""

import pytest
import torch
import torch.nn as nn

from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.pretrain import pretrain, restrict_classes

FAST = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16}
WIDTHS = {"network_kwargs": {"widths": (12, 8)}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "state.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops on a busy machine
    result = pretrain(
        "mlp", "synthetic", path, classes=(0, 1), network_kwargs=WIDTHS["network_kwargs"], iterations=100, lr=1e-2
    )
    torch.set_num_threads(threads)
    return path, result


def test_pretrain_saves_a_state_trained_on_its_classes(saved):
    path, result = saved
    assert result.path == str(path) and path.is_file()
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file
    assert result.val_accuracy > 0.9  # two of the four synthetic classes are easy
    assert result.val_accuracy_all < 0.6  # the two unseen classes are never predicted right
    state = torch.load(path, weights_only=True)
    assert state["5.weight"].shape == (4, 8)  # the output layer keeps every class


def test_every_episode_starts_from_the_state_then_fine_tunes(saved):
    path, _ = saved
    state = torch.load(path, weights_only=True)
    env = SparsityEnv(**FAST, **WIDTHS, initial_state=str(path), target_density=None)
    for seed in (0, 1):
        env.reset(seed=seed)
        for key, value in env.model.state_dict().items():
            assert torch.equal(value, state[key]), key
    env.step(env.density_to_action(1.0) * torch.ones(env.action_space.shape).numpy())
    assert not torch.equal(env.model[1].weight, state["1.weight"])  # then it trains
    env.close()


def test_callable_and_growth_room_start_from_the_same_function(saved):
    path, _ = saved
    trained = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    trained.load_state_dict(torch.load(path, weights_only=True))
    env = SparsityEnv(
        **FAST, **WIDTHS, initial_state=lambda: trained, granularity="neuron", capacity=2.0, target_density=None
    )
    env.reset(seed=0)
    assert [m.num_units for m in env.masks.layers] == [24, 16]
    x = env.data.val_x[:64]
    env.model.eval()
    with torch.no_grad():
        assert torch.allclose(env.model(x), trained(x), atol=1e-5)  # widened, spare units off: the trained network
    env.close()


def test_mismatched_states_name_the_field(tmp_path, saved):
    path, _ = saved
    with pytest.raises(ValueError, match="initial_state"):
        EnvConfig(initial_state=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="initial_state"):
        EnvConfig(initial_state=3)
    with pytest.raises(ValueError, match=r"initial_state=.*shapes differ"):
        SparsityEnv(**FAST, network_kwargs={"widths": (12, 9)}, initial_state=str(path))
    with pytest.raises(ValueError, match=r"initial_state=.*missing keys"):
        SparsityEnv(**FAST, network_kwargs={"widths": (12, 8, 8)}, initial_state=str(path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="initial_state"):
        SparsityEnv(**FAST, **WIDTHS, initial_state=str(garbage))
    with pytest.raises(ValueError, match="initial_state"):
        SparsityEnv(**FAST, **WIDTHS, initial_state=lambda: 42)


def test_restrict_classes_keeps_labels_and_class_count(saved):
    from sparsity_gym.datasets import load_dataset

    data = load_dataset("synthetic", 0)
    part = restrict_classes(data, [1, 3])
    assert set(part.train_y.tolist()) == {1, 3} and part.num_classes == 4
    assert len(part.test_y) == int(((data.test_y == 1) | (data.test_y == 3)).sum())
    with pytest.raises(ValueError, match="classes"):
        restrict_classes(data, [0, 4])
