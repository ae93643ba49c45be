"""The Pruner on models users bring (issue 32): no crash on common models, no silent wrong state."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines import method
from sparsity_gym.pruning.pruner import Pruner

STEPS = 8


def batches(n: int = STEPS, shape: tuple[int, ...] = (20,), classes: int = 4, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn((16, *shape), generator=gen).to(dtype), torch.randint(0, classes, (16,), generator=gen))] * n


def train(model, opt, pruner, data, loss_fn=F.cross_entropy):
    """The user's loop; after every step the masks hold: inactive weights exactly zero."""
    for xb, yb in data:
        loss = loss_fn(model(xb).float(), yb)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        pruner.step(loss)
        for m in pruner.masks.all_layers:
            assert bool((m.info.module.weight[~m.active_weight_mask] == 0).all())


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


class Tokens(nn.Module):
    """Integer tokens in: an embedding first, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.fc1 = nn.Linear(8 * 6, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.embed(x).flatten(1))))


def token_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 50, (16, 6), generator=gen), torch.randint(0, 4, (16,), generator=gen))] * STEPS


@pytest.mark.parametrize("give_example", [True, False])
def test_an_embedding_first_model_with_integer_tokens_is_pruned(give_example):
    torch.manual_seed(0)
    model = Tokens()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = token_batches()
    where = {"example_input": data[0][0]} if give_example else {"input_shape": (6,)}
    pruner = Pruner(model, opt, method("linear"), target_density=0.3, total_steps=STEPS, decision_interval=4, **where)
    assert pruner.layer_names == ("fc1", "fc2")
    assert pruner.masks.all_layers[0].info.fan_in == 48
    train(model, opt, pruner, data)
    assert pruner.summary().global_density == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("give_example", [True, False])
def test_a_bfloat16_model_is_pruned(give_example):
    model = mlp().to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches(dtype=torch.bfloat16)
    where = {"example_input": data[0][0]} if give_example else {}
    pruner = Pruner(model, opt, method("cubic"), target_density=0.2, total_steps=STEPS, decision_interval=4, **where)
    train(model, opt, pruner, data)
    weights = [m.weight for m in (model[0], model[2], model[4])]
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights)
    assert nonzero / sum(w.numel() for w in weights) == pytest.approx(0.2, abs=0.01)


def test_a_per_sample_loss_counts_as_its_mean():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, opt, target_density=0.5, total_steps=STEPS, decision_interval=4)
    pruner.decide(pruner.density_to_action(np.full(3, 0.5)))
    means = []
    for xb, yb in batches(4):
        loss = F.cross_entropy(model(xb), yb, reduction="none")
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        pruner.step(loss)
        means.append(float(loss.detach().mean()))
    assert pruner.train_loss == pytest.approx(sum(means) / 4, rel=1e-6)
    opt.step()
    with pytest.raises(ValueError, match=r"loss of shape \(0,\)"):
        pruner.step(torch.zeros(0))


class HeadFirst(nn.Module):
    """Declares its classifier before its body."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_the_output_layer_and_the_order_come_from_the_data_flow():
    torch.manual_seed(0)
    model = HeadFirst()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(
        model, opt, method("cubic"), granularity="neuron", target_density=0.2, total_steps=STEPS, decision_interval=4
    )
    assert [m.info.name for m in pruner.masks.all_layers] == ["body.0", "body.2", "head"]
    assert [m.info.is_output for m in pruner.masks.all_layers] == [False, False, True]
    assert pruner.layer_names == ("body.0", "body.2") and pruner.num_classes == 10
    train(model, opt, pruner, batches(classes=10))
    logits = model(torch.randn(64, 20))
    assert bool((logits != 0).all())  # every logit lives: the classifier is not pruned as a hidden layer


class Block(nn.Module):
    """A transformer-style block: ``h + attn(h)`` (``nn.MultiheadAttention``, whose ``out_proj`` runs inside it)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.out((h + a).mean(1))


class OwnAttention(nn.Module):
    """The same with the attention written out: ``out_proj`` is called as a module, before ``h + a``."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.qkv = nn.Linear(16, 48)
        self.out_proj = nn.Linear(16, 16)
        self.out = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        a = self.out_proj(torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1) @ v)
        return self.out((h + a).mean(1))


@pytest.mark.parametrize("build", [Block, OwnAttention])
def test_a_layer_feeding_a_residual_sum_is_kept_whole_at_neuron_granularity(build):
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(
        model,
        opt,
        method("cubic"),
        granularity="neuron",
        target_density=0.5,
        total_steps=STEPS,
        input_shape=(5, 12),
    )
    kept = {m.info.name for m in pruner.masks.all_layers if not m.controlled}
    assert {"inp", "out.2"} <= kept and pruner.layer_names[-1] == "out.0"
    assert ("attn.out_proj" if build is Block else "out_proj") in kept
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 5, 12, generator=gen), torch.randint(0, 4, (16,), generator=gen))] * STEPS
    train(model, opt, pruner, data)
    for m in pruner.masks.all_layers:
        if not m.controlled:
            assert bool((m.info.module.weight.abs().sum(1) > 0).all()), m.info.name


def test_neuron_granularity_with_every_layer_kept_whole_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="granularity='neuron' is not allowed for this network"):
        Pruner(model, opt, method("linear"), granularity="neuron", target_density=0.5, total_steps=STEPS)


def built(policy=None, model=None, opt=None, **kwargs):
    model = model if model is not None else mlp()
    opt = opt if opt is not None else torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"target_density": 0.2, "total_steps": STEPS, "decision_interval": 4, **kwargs}
    return model, opt, Pruner(model, opt, policy if policy is not None else method("linear"), **kwargs)


def test_a_step_without_an_optimizer_step_and_a_step_past_the_end_are_refused():
    model, opt, pruner = built()
    with pytest.raises(RuntimeError, match=r"without an optimizer.step\(\)"):
        pruner.step()
    opt.step()
    pruner.step()
    with pytest.raises(RuntimeError, match=r"without an optimizer.step\(\)"):
        pruner.step()
    assert pruner.iteration == 1
    for _ in range(STEPS - 1):
        opt.step()
        pruner.step()
    opt.step()
    with pytest.raises(RuntimeError, match="after total_steps=8"):
        pruner.step()
    assert pruner.iteration == STEPS


def test_skipped_steps_are_accepted_when_asked_for():
    model, opt, pruner = built(allow_skipped_steps=True)
    pruner.step()
    pruner.step()
    assert pruner.iteration == 2


def test_a_second_pruner_on_one_model_is_refused_until_the_first_is_removed():
    model, opt, first = built()
    with pytest.raises(ValueError, match="already pruned by another Pruner"):
        Pruner(model, opt, method("linear"), target_density=0.5, total_steps=STEPS)
    assert len(opt._optimizer_step_pre_hooks) == 1  # the refused one left no hook
    first.remove()
    second = Pruner(model, opt, method("linear"), target_density=0.5, total_steps=STEPS)
    assert second.masks.global_density() == pytest.approx(first.masks.global_density(), abs=0.05)


def test_an_optimizer_over_another_models_parameters_is_refused():
    other = mlp()
    with pytest.raises(ValueError, match="optimizer=SGD is not allowed: it updates none"):
        built(model=mlp(), opt=torch.optim.SGD(other.parameters(), lr=0.1))


def test_a_state_saved_under_another_policy_is_refused():
    model, opt, pruner = built(method("cubic@0.75+erk"))
    opt.step()
    pruner.step()
    state = pruner.state_dict()
    pruner.remove()
    model2, opt2, other = built(method("linear@0.9+erk"))
    with pytest.raises(ValueError, match=r"saved with policy='cubic@0.75\+erk'; expected policy='linear@0.9\+erk'"):
        other.load_state_dict(state)
    other.remove()
    model3, opt3, same = built(method("cubic@0.75+erk"))
    same.load_state_dict(state)
    assert same.iteration == 1


def test_an_allocation_cell_runs_on_a_global_budget_and_ends_on_its_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = Pruner(model, opt, method("cubic@0.75+erk"), target_density=0.05, total_steps=40, decision_interval=4)
    assert pruner.config.budget == "global"
    train(model, opt, pruner, batches(40, shape=(40,), classes=10))
    summary = pruner.summary()
    assert summary.global_density == pytest.approx(0.05, abs=0.002)
    assert summary.nonzero_density == pytest.approx(summary.global_density, abs=0.002)
    pruner.remove()
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights) / sum(w.numel() for w in weights)
    assert nonzero == pytest.approx(summary.nonzero_density, abs=0, rel=1e-12)
    with pytest.raises(ValueError, match="budget='layer' is not allowed with allocation='erk'"):
        built(method("cubic@0.75+erk"), budget="layer")


def test_total_steps_zero_is_reported_as_total_steps():
    with pytest.raises(ValueError, match=r"^total_steps=0 is not allowed"):
        built(total_steps=0, decision_interval=None)


def test_a_policy_name_plays_the_named_policy():
    by_name = built("cubic@0.75+erk")[2]
    by_object = built(method("cubic@0.75+erk"))[2]
    assert by_name.config == by_object.config and by_name.policy_name == "cubic@0.75+erk"
    for a, b in zip(by_name.masks.all_layers, by_object.masks.all_layers, strict=True):
        assert torch.equal(a.active_weight_mask, b.active_weight_mask)
    with pytest.raises(ValueError, match="policy='cubic@2'"):
        built("cubic@2")
