"""Explicit state of the statistics: a restored collector, buffer, accumulator or tracker continues exactly."""

import itertools

import pytest
import torch
import torch.nn as nn
from state_helpers import assert_same, roundtrip

from sparsity_gym.stats import (
    ActivationBuffer,
    ContributionAccumulator,
    EquilibriumTracker,
    GradientMomentCollector,
    contribution,
    neuron_similarity,
)


def _net(kind, seed):
    torch.manual_seed(seed)
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))
    if kind == "conv1d":
        return nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5))


INPUT = {"mlp": (4, 4), "conv1d": (1, 16), "conv2d": (1, 4, 4)}


def _layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def _collector_step(model, collector, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    collector.update()
    opt.step()


@pytest.mark.parametrize("kind", ["mlp", "conv1d", "conv2d"])
def test_restored_collector_continues_exactly(kind):
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, *INPUT[kind], generator=gen), torch.randint(0, 5, (8,), generator=gen)) for _ in range(8)
    ]
    model_a = _net(kind, 0)
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.1)
    collector_a = GradientMomentCollector(_layers(model_a), total_iterations=50).attach()
    collector_a.active = True
    for x, y in batches[:4]:
        _collector_step(model_a, collector_a, opt_a, x, y)
    state = roundtrip(collector_a.state_dict())
    assert state["num_updates"] == 4 and list(state["snr"]) == [n for n, _ in _layers(model_a)]
    model_b = _net(kind, 1)
    model_b.load_state_dict(model_a.state_dict())
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.1)
    collector_b = GradientMomentCollector(_layers(model_b), total_iterations=50).attach()
    collector_b.load_state_dict(state)
    collector_b.active = True
    for x, y in batches[4:]:
        previous = collector_b.snr
        _collector_step(model_a, collector_a, opt_a, x, y)
        _collector_step(model_b, collector_b, opt_b, x, y)
        assert_same(collector_a.snr, collector_b.snr)
        assert_same(collector_a.snr_now, collector_b.snr_now)
        assert_same(collector_a.moments, collector_b.moments)
        assert collector_a.num_updates == collector_b.num_updates
        gamma = collector_b.gamma  # the smoothing carries on from the restored SNR
        for name, now in collector_b.snr_now.items():
            expected = gamma * previous[name] + (1 - gamma) * now.clamp_max(1e12)
            torch.testing.assert_close(collector_b.snr[name], expected, rtol=1e-5, atol=1e-30)


def test_collector_refuses_other_layers_and_a_step_in_progress():
    model = _net("mlp", 0)
    collector = GradientMomentCollector(_layers(model)).attach()
    collector.active = True
    x, y = torch.randn(8, 4, 4), torch.randint(0, 5, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="between a backward and update"):
        collector.state_dict()
    collector.update()
    state = collector.state_dict()
    other = GradientMomentCollector([("1", nn.Linear(16, 12)), ("3", nn.Linear(12, 6))])
    with pytest.raises(ValueError, match=r"snr of '3' has shape \(5, 12\); expected \(6, 12\)"):
        other.load_state_dict(state)
    assert other.num_updates == 0 and other.snr == {}
    renamed = GradientMomentCollector([("a", nn.Linear(16, 12)), ("b", nn.Linear(12, 5))])
    with pytest.raises(ValueError, match="layers is"):
        renamed.load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        moments = {"1": {**state["moments"]["1"], "batch_size": 0}, "3": state["moments"]["3"]}
        collector.load_state_dict({**state, "moments": moments})


def _pushed(gen, sizes, width, conv=False):
    if conv:
        return [torch.randn(n, width, 2, 2, generator=gen) for n in sizes]
    return [torch.randn(n, width, generator=gen) for n in sizes]


@pytest.mark.parametrize(("split", "conv"), [(0, False), (2, False), (4, False), (3, True)])
def test_restored_buffer_holds_and_continues_the_same_rows(split, conv):
    gen = torch.Generator().manual_seed(0)
    chunks = _pushed(gen, [3, 5, 7, 2, 11, 4, 9, 6], 4, conv)  # capacity 10: wraps, and a push larger than it
    buffer_a = ActivationBuffer(4, min_rows=10)
    for chunk in chunks[:split]:
        buffer_a.push(chunk)
    state = roundtrip(buffer_a.state_dict())
    buffer_b = ActivationBuffer(4, min_rows=10)
    buffer_b.load_state_dict(state)
    assert len(buffer_b) == len(buffer_a) and buffer_b.ready == buffer_a.ready
    for i, chunk in enumerate(chunks[split:], start=split):
        buffer_a.push(chunk)
        buffer_b.push(chunk)
        everything = torch.cat([c.movedim(1, -1).reshape(-1, 4) for c in chunks[: i + 1]])
        assert_same(buffer_b.rows, everything[-10:])  # the last 10 rows, oldest first
        assert_same(buffer_a.rows, buffer_b.rows)


def test_buffer_refuses_another_width_or_capacity():
    buffer = ActivationBuffer(4, min_rows=10)
    buffer.push(torch.randn(6, 4))
    state = buffer.state_dict()
    with pytest.raises(ValueError, match="capacity=10; expected 12"):
        ActivationBuffer(4, min_rows=12).load_state_dict(state)
    with pytest.raises(ValueError, match=r"rows has shape \(6, 4\); expected \(n, 5\)"):
        ActivationBuffer(5, min_rows=10).load_state_dict(state)


@pytest.mark.parametrize("track_max", [True, False])
@pytest.mark.parametrize("split", [0, 2])
def test_restored_accumulator_continues_exactly(track_max, split):
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 5, 3, 3, generator=gen), torch.randn(7, 5, 3, 3, generator=gen)) for _ in range(5)]
    acc_a = ContributionAccumulator(5, track_max=track_max)
    for a, w in batches[:split]:
        acc_a.update(a, w)
    acc_b = ContributionAccumulator(5, track_max=track_max)
    acc_b.load_state_dict(roundtrip(acc_a.state_dict()))
    for a, w in batches[split:]:
        acc_a.update(a, w)
        acc_b.update(a, w)
        assert_same(acc_a.state_dict(), acc_b.state_dict())
        assert_same(acc_a.c_avg, acc_b.c_avg)
    # against an independent computation: C_avg of the window is the count-weighted mean of per-batch C_avg
    expected = sum(contribution(a, w)[0] * (6 * 7) for a, w in batches) / (5 * 6 * 7)
    torch.testing.assert_close(acc_b.c_avg, expected)
    if track_max:
        assert_same(acc_a.c_max, acc_b.c_max)
        torch.testing.assert_close(acc_b.c_max, torch.stack([contribution(a, w)[1] for a, w in batches]).amax(0))


def test_accumulator_refuses_another_width_or_max_tracking():
    acc = ContributionAccumulator(5)
    acc.update(torch.rand(4, 5), torch.rand(3, 5))
    state = acc.state_dict()
    with pytest.raises(ValueError, match=r"sum has shape \(5,\); expected \(6,\)"):
        ContributionAccumulator(6).load_state_dict(state)
    with pytest.raises(ValueError, match="max is a Tensor; expected None"):
        ContributionAccumulator(5, track_max=False).load_state_dict(state)
    untracked = ContributionAccumulator(5, track_max=False)
    untracked.update(torch.rand(4, 5), torch.rand(3, 5))
    with pytest.raises(ValueError, match="max is None; expected a tensor"):
        ContributionAccumulator(5).load_state_dict(untracked.state_dict())
    with pytest.raises(ValueError, match="count"):
        acc.load_state_dict({**state, "count": -1})


@pytest.mark.parametrize("split", [0, 1, 2, 3, 5])
def test_restored_tracker_continues_exactly(split):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(20, 6, 2, 2, generator=gen)
    outputs = [base + 0.3**t * torch.randn(20, 6, 2, 2, generator=gen) for t in range(8)]
    outputs[2][:, 1] = 0  # a dead channel: φ = 0 against a live one, then 1
    tracker_a = EquilibriumTracker(6)
    for out in outputs[:split]:
        tracker_a.update(out)
    state = roundtrip(tracker_a.state_dict())
    assert (state["phi"] is None) == (split < 2) and (state["delta_phi"] is None) == (split < 3)
    tracker_b = EquilibriumTracker(6)
    tracker_b.load_state_dict(state)
    for out in outputs[split:]:
        tracker_a.update(out)
        tracker_b.update(out)
        assert_same(tracker_a.state_dict(), tracker_b.state_dict())
        assert_same(tracker_a.at_equilibrium, tracker_b.at_equilibrium)
        assert tracker_a.velocity_ready == tracker_b.velocity_ready
    phis = [neuron_similarity(a, b) for a, b in itertools.pairwise(outputs)]
    velocity = torch.zeros(6, dtype=torch.float64)
    for before, now in itertools.pairwise(phis):
        velocity = (now - before) - 0.5 * velocity  # the paper's v^t = Δφ^t − μ·v^{t−1}
    torch.testing.assert_close(tracker_b.velocity, velocity)


def test_tracker_refuses_another_width():
    tracker = EquilibriumTracker(6)
    for _ in range(3):
        tracker.update(torch.randn(10, 6))
    with pytest.raises(ValueError, match="previous has shape"):
        EquilibriumTracker(5).load_state_dict(tracker.state_dict())
    with pytest.raises(ValueError, match="velocity"):
        EquilibriumTracker(6).load_state_dict({**tracker.state_dict(), "velocity": None})
