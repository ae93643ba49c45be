"""Checkpoint mid-training, resume into a fresh model, optimizer and Pruner: the run goes on exactly as if never cut."""

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from policy_recorder import Recorder

from baselines import method
from sparsity_gym.pruning.pruner import Pruner

TOTAL, INTERVAL, BATCH = 30, 5, 32


def data():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=320)
    x = means[y] + 0.6 * rng.normal(size=(320, 20)).astype(np.float32)
    order = np.concatenate([rng.permutation(256) for _ in range(4)])
    batches = [torch.from_numpy(order[i * BATCH : (i + 1) * BATCH]) for i in range(TOTAL)]
    return torch.from_numpy(x), torch.from_numpy(y).long(), batches


X, Y, BATCHES = data()


def network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 4))


CASES = {
    "snr: DPF, burn-in, loss hold, every statistic": (
        "snr",
        {"observations": ("rank", "contribution", "equilibrium"), "steps_per_epoch": 8},
        13,
    ),
    "cell with a measuring window open at the checkpoint": (
        "cubic@0.9+erk",
        {"budget": "global", "target_density": 0.2, "observations": ("snr",), "stats_window": 2},
        9,
    ),
    "neq freezing": ("neq", {"observations": ("equilibrium",)}, 17),
}


def build(name, settings, seed, seen):
    model = network(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    @torch.no_grad()
    def val_fn():
        out = model(X[256:])
        return float((out.argmax(1) == Y[256:]).float().mean()), float(F.cross_entropy(out, Y[256:]))

    pruner = Pruner(
        model,
        opt,
        Recorder(method(name), seen),
        total_steps=TOTAL,
        decision_interval=INTERVAL,
        val_fn=val_fn,
        batch_size=BATCH,
        generator=torch.Generator().manual_seed(5),
        **settings,
    )
    return model, opt, pruner


def train(model, opt, pruner, steps):
    for idx in steps:
        loss = F.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step(loss)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(case):
    name, settings, cut = CASES[case]
    seen_full: list = []
    model, opt, pruner = build(name, settings, 0, seen_full)
    train(model, opt, pruner, BATCHES)
    full = {k: v.clone() for k, v in model.state_dict().items()}

    seen_a: list = []
    model_a, opt_a, pruner_a = build(name, settings, 0, seen_a)
    train(model_a, opt_a, pruner_a, BATCHES[:cut])
    buffer = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict(), "pruner": pruner_a.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)  # plain tensors, numbers and containers only

    seen_b: list = []
    model_b, opt_b, pruner_b = build(name, settings, 99, seen_b)  # another initialisation, its own first decision
    model_b.load_state_dict(checkpoint["model"])
    opt_b.load_state_dict(checkpoint["opt"])
    pruner_b.load_state_dict(checkpoint["pruner"])
    assert pruner_b.iteration == cut and pruner_b.decision == pruner_a.decision
    train(model_b, opt_b, pruner_b, BATCHES[cut:])

    assert all(torch.equal(full[k], v) for k, v in model_b.state_dict().items())
    assert [m.unit_mask.tolist() for m in pruner.masks.all_layers] == [
        m.unit_mask.tolist() for m in pruner_b.masks.all_layers
    ]
    resumed = seen_full[len(seen_a) :]
    assert len(resumed) == len(seen_b) - 1 and len(resumed) >= 2  # seen_b[0]: the fresh build's own decision
    for a, b in zip(resumed, seen_b[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert pruner_b.state_dict()["counters"] == pruner.state_dict()["counters"]
    if pruner.freezer is not None:
        assert any(bool(m.any()) for m in pruner.freezer.frozen_masks)
        assert all(
            torch.equal(a, b) for a, b in zip(pruner.freezer.frozen_masks, pruner_b.freezer.frozen_masks, strict=True)
        )


def test_a_state_of_another_run_is_refused_and_changes_nothing():
    model, opt, pruner = build("cubic@0.9+erk", {"budget": "global", "target_density": 0.2}, 0, [])
    train(model, opt, pruner, BATCHES[:7])
    state = pruner.state_dict()
    other_model, other_opt, other = build("cubic@0.9+erk", {"budget": "global", "target_density": 0.3}, 0, [])
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"target_density=0.2; expected target_density=0.3"):
        other.load_state_dict(state)
    broken = {**state, "masks": {**state["masks"], "generator": torch.zeros(3, dtype=torch.uint8)}}
    _, _, same = build("cubic@0.9+erk", {"budget": "global", "target_density": 0.2}, 1, [])
    same_before = same.state_dict()
    with pytest.raises(ValueError, match="generator"):
        same.load_state_dict(broken)
    for mine, theirs in ((other, before), (same, same_before)):
        after = mine.state_dict()
        assert after["counters"] == theirs["counters"]
        for name, layer in theirs["masks"]["layers"].items():
            assert torch.equal(after["masks"]["layers"][name]["unit_mask"], layer["unit_mask"])


def test_a_model_loaded_before_the_pruner_was_built_is_refused():
    # the constant schedule prunes at the first decision, which the Pruner takes when it is built
    settings = {"target_density": 0.3}
    model, opt, pruner = build("constant", settings, 0, [])
    train(model, opt, pruner, BATCHES[:7])
    checkpoint = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "pruner": pruner.state_dict()})
    model_b = network(3)
    model_b.load_state_dict(checkpoint["model"])  # too early: the Pruner's first decision will act on these weights
    opt_b = torch.optim.Adam(model_b.parameters(), lr=0.01)
    pruner_b = Pruner(
        model_b,
        opt_b,
        method("constant"),
        total_steps=TOTAL,
        decision_interval=INTERVAL,
        batch_size=BATCH,
        generator=torch.Generator().manual_seed(5),
        **settings,
    )
    with pytest.raises(ValueError, match="load their states"):
        pruner_b.load_state_dict(checkpoint["pruner"])
    model_c, opt_c, pruner_c = build("constant", settings, 3, [])  # the right order: build, then load
    model_c.load_state_dict(checkpoint["model"])
    opt_c.load_state_dict(checkpoint["opt"])
    pruner_c.load_state_dict(checkpoint["pruner"])
    train(model_c, opt_c, pruner_c, BATCHES[7:9])
    train(model, opt, pruner, BATCHES[7:9])
    assert pruner_c.iteration == 9
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_c.parameters(), strict=True))
