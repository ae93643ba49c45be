"""The Pruner in a user's own loop: exact masks under SGD and Adam, any network, summary, logging, removal."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from baselines import method
from baselines.schedules import SCHEDULES
from sparsity_gym.pruning.pruner import Pruner


def numpy_data(n: int = 256, shape: tuple[int, ...] = (20,), classes: int = 4, seed: int = 0):
    """A learnable classification problem as numpy arrays (class means plus noise)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    x = means[y] + 0.5 * rng.normal(size=(n, *shape)).astype(np.float32)
    return x, y


def loader(x: np.ndarray, y: np.ndarray, batch: int = 32) -> DataLoader:
    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y).long())
    return DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))


def user_loop(model: nn.Module, opt: torch.optim.Optimizer, pruner: Pruner, train: DataLoader, steps: int):
    """The user's own loop: ``steps`` optimizer steps over ``train``, ``pruner.step(loss)`` after each ``opt.step()``.

    Epochs repeat until ``steps``; the step count is yielded after each step.
    """
    done = 0
    while done < steps:
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            pruner.step(loss)
            done += 1
            yield done
            if done == steps:
                return


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def conv_bn() -> nn.Module:
    """A Conv2d + BatchNorm network of the user's (not from the zoo) on 3x8x8 inputs."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 4),
    )


class Residual(nn.Module):
    """A residual network of the user's: conv stem, one residual block (conv-BN-ReLU-conv-BN + identity), head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = F.relu(h + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h))))))
        return self.head(h.mean(dim=(2, 3)))


def assert_exact(pruner: Pruner) -> None:
    """Inactive weights (and biases of inactive neurons) exactly zero; the counts what the masks say."""
    for layer in pruner.masks.all_layers:
        module = layer.info.module
        assert int(layer.unit_mask.sum()) == layer.num_active
        assert int(layer.active_weight_mask.sum()) == layer.active_weights()
        assert not bool(module.weight.detach()[~layer.active_weight_mask].any())
        if layer.granularity == "neuron" and module.bias is not None:
            assert not bool(module.bias.detach()[~layer.unit_mask.flatten()].any())


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_masks_exact_after_every_step_and_counts_follow_the_schedule(optimizer_name):
    x, y = numpy_data()
    model = mlp()
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if optimizer_name == "sgd"
        else torch.optim.Adam(model.parameters(), lr=0.01)
    )
    train = loader(x, y)
    epochs, interval = 3, 4
    total = len(train) * epochs
    pruner = Pruner(model, opt, method("linear"), target_density=0.1, total_steps=total, decision_interval=interval)
    assert pruner.config.budget == "layer" and pruner.observers == {}  # a schedule reads no statistics
    for _ in user_loop(model, opt, pruner, train, total):
        assert_exact(pruner)
        if pruner.iteration % interval == 0 and pruner.iteration < total:  # a decision was just taken
            target = SCHEDULES["linear"](pruner.iteration / total, 0.1)
            if pruner.decision < pruner.config.num_decisions:
                for layer in pruner.masks.layers:
                    assert layer.num_active == max(1, round(target * layer.num_units))
    assert pruner.iteration == total and pruner.decision == total // interval
    for layer in pruner.masks.layers:  # the last decision projected every layer onto the target
        assert layer.num_active == max(1, round(0.1 * layer.num_units))


def test_conv_batchnorm_network_at_neuron_granularity_compacts():
    x, y = numpy_data(shape=(3, 8, 8))
    model = conv_bn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    total = 24
    pruner = Pruner(
        model,
        opt,
        method("cubic"),
        target_density=0.5,
        total_steps=total,
        decision_interval=6,
        input_shape=(3, 8, 8),
        granularity="neuron",
    )
    assert pruner.layer_names == ("0", "3")  # the output layer is not pruned at neuron granularity
    for _ in user_loop(model, opt, pruner, loader(x, y), total):
        assert_exact(pruner)
    assert [m.num_active for m in pruner.masks.layers] == [4, 6]
    small = pruner.remove(compact=True)
    assert small[0].out_channels == 4 and small[1].num_features == 4 and small[3].out_channels == 6
    model.eval()
    small.eval()
    probe = torch.from_numpy(x[:16])
    with torch.no_grad():
        torch.testing.assert_close(small(probe), model(probe), atol=1e-5, rtol=1e-5)


def test_residual_network_keeps_coupled_layers_and_stays_exact():
    x, y = numpy_data(shape=(3, 8, 8))
    model = Residual()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pruner = Pruner(
        model,
        opt,
        method("linear"),
        target_density=0.25,
        total_steps=16,
        decision_interval=4,
        example_input=torch.from_numpy(x[:2]),
        granularity="neuron",
    )
    # the stem and conv2 feed the residual addition: only conv1 is pruned as neurons
    assert pruner.layer_names == ("conv1",)
    for _ in user_loop(model, opt, pruner, loader(x, y, batch=16), 16):
        assert_exact(pruner)
    assert pruner.masks.layers[0].num_active == 2  # round(0.25 * 8)


def test_summary_against_a_hand_count_and_log_to_tensorboard(tmp_path):
    x, y = numpy_data(shape=(3, 8, 8))
    model = conv_bn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(  # nothing regrows: every active weight is a trained, non-zero value
        model,
        opt,
        method("linear"),
        target_density=0.3,
        total_steps=8,
        decision_interval=4,
        input_shape=(3, 8, 8),
        regrowth="none",
    )
    list(user_loop(model, opt, pruner, loader(x, y), 8))
    summary = pruner.summary()
    layers = [model[0], model[3], model[8]]
    positions = [8 * 8, 8 * 8, 1]  # output positions per sample of each layer
    nonzero = [int(torch.count_nonzero(m.weight)) for m in layers]
    sizes = [m.weight.numel() for m in layers]
    assert [r.active_weights for r in summary.layers] == nonzero
    assert [r.weights for r in summary.layers] == sizes
    assert summary.global_density == pytest.approx(sum(nonzero) / sum(sizes), abs=0, rel=1e-15)
    flops = sum(2 * p * k for p, k in zip(positions, nonzero, strict=True))
    dense = sum(2 * p * k for p, k in zip(positions, sizes, strict=True))
    assert summary.inference_flops == flops and summary.dense_flops == dense
    assert summary.flops_fraction == flops / dense
    assert [r.nonzero_weights for r in summary.layers] == nonzero  # no active weight is exactly zero here
    assert summary.nonzero_density == summary.global_density
    assert "non-zero density" in str(summary) and str(summary).count("\n") == len(layers) + 6

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    pruner.log(writer, step=7)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    written = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    assert set(written) == set(summary.scalars())
    for tag, value in summary.scalars().items():
        assert written[tag][0].step == 7 and written[tag][0].value == pytest.approx(value, rel=1e-6)


def hook_count(model: nn.Module) -> int:
    dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, d)) for m in model.modules() for d in dicts)


def test_remove_leaves_a_plain_model_with_exact_zeros_and_no_hooks():
    x, y = numpy_data()
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pruner = Pruner(
        model,
        opt,
        method("snr"),
        total_steps=16,
        decision_interval=4,
        steps_per_epoch=8,
        observations=("rank", "contribution"),
    )
    assert set(pruner.observers) == {"rank", "contribution", "snr"}  # observed, plus the selector's statistic
    assert hook_count(model) > 0
    list(user_loop(model, opt, pruner, loader(x, y), 12))
    zeros = [(m.info.module.weight == 0).clone() for m in pruner.masks.all_layers]
    assert any(bool(z.any()) for z in zeros)
    plain = pruner.remove()
    assert plain is model and hook_count(model) == 0
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    for m, z in zip(pruner.masks.all_layers, zeros, strict=True):
        assert torch.equal(m.info.module.weight == 0, z)
    with pytest.raises(RuntimeError, match="removed"):
        pruner.step()


def test_only_the_statistics_a_policy_reads_are_collected():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    class ReadsRank:
        name, reads = "reads-rank", ("progress", "rank_ed")

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(obs.shape[0], np.float32), state

    pruner = Pruner(model, opt, ReadsRank(), total_steps=20, decision_interval=10)
    assert set(pruner.observers) == {"rank"} and pruner.config.observations == ("rank",)
    assert "rank_ed" in pruner.layout.columns and "snr_log_mean" not in pruner.layout.columns


def test_a_learned_policy_reads_every_column_so_it_needs_validation():
    class Learned:  # no `reads`: taken to read every column, val_accuracy included
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(obs.shape[0], np.float32), state

    with pytest.raises(ValueError, match=r"^val_fn=None is not allowed .*'val_accuracy'"):
        Pruner(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.1), Learned(), total_steps=20)


def test_default_decision_interval_and_input_shape():
    model = mlp()
    pruner = Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=120)
    assert pruner.config.decision_interval == 12  # ten decisions
    x = torch.zeros(2, 20)
    assert model(x).shape == (2, 4)
    with pytest.raises(ValueError, match=r"^decision_interval=None .*total_steps=101"):
        Pruner(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.1), total_steps=101)


def test_no_decision_after_the_last_and_manual_decisions_without_a_policy():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, total_steps=4, decision_interval=2, target_density=0.5)
    assert pruner.decide(np.full(3, -1.0, np.float32)) == pytest.approx([0.02] * 3)
    assert [m.num_active for m in pruner.masks.layers] == [
        max(1, round(0.02 * m.num_units)) for m in pruner.masks.layers
    ]
    projected = pruner.decide(np.zeros(3, np.float32))  # the last decision: onto the layer budget
    assert projected == [max(1, round(0.5 * m.num_units)) / m.num_units for m in pruner.masks.layers]
    with pytest.raises(RuntimeError, match="num_decisions=2"):
        pruner.decide(np.zeros(3, np.float32))


def test_loss_hold_without_losses_is_refused_at_the_first_gate():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, total_steps=4, decision_interval=2, loss_hold=True, target_density=0.5)
    pruner.decide(np.zeros(3, np.float32))
    x, y = numpy_data(n=8)
    for _ in range(2):
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()  # no loss given
    assert pruner.train_loss is None
    with pytest.raises(ValueError, match=r"^loss_hold=True needs the training loss"):
        pruner.decisions.gate(pruner.iteration, pruner.train_loss)


def test_interval_loss_is_the_mean_of_the_losses_given():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = Pruner(model, opt, total_steps=8, decision_interval=4, observations=("snr",), stats_window=2)
    x, y = numpy_data(n=8)
    losses = [0.5, 0.25, 2.0, 1.0]  # the last two steps are measured: the mean spans both parts
    for value in losses:
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(torch.tensor(value))
    assert pruner.train_loss == sum(losses) / 4
    assert pruner.observers["snr"].collector.num_updates == 2


def test_import_stays_torch_free_until_pruner_is_used():
    code = (
        "import sys, sparsity_gym; assert 'torch' not in sys.modules, 'torch imported'; "
        "P = sparsity_gym.Pruner; assert 'torch' in sys.modules and P.__name__ == 'Pruner'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_flops_counters_follow_the_active_network():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, total_steps=4, decision_interval=2, batch_size=8, target_density=0.5)
    pruner.decide(np.zeros(3, np.float32))
    inference = pruner.inference_flops()
    for _ in range(2):
        opt.step()
        pruner.step()
    assert pruner.training_flops == 2 * 3 * 8 * inference and pruner.saved_backward_flops == 0
    assert math.isclose(pruner.summary().flops_fraction, inference / pruner.dense_flops)
