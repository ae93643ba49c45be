"""Gradient SNR (CRITERIA.md §1) against worked numbers and torch.func per-sample gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from sparsity_gym.stats import (
    GradientMomentCollector,
    conv2d_grad_moments,
    conv2d_grad_sq_sum,
    gradient_snr,
    linear_grad_moments,
    linear_grad_sq_sum,
    smoothing_gamma,
    snr_from_moments,
)

# ---------------------------------------------------------------------------------------------- helpers


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> dict[str, torch.Tensor]:
    """Per-sample gradients of the per-sample loss ℓ_n (independent of the hook implementation)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)


def reference_snr(g: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """SNR from materialised per-sample gradients g (B, ...), straight from the definition."""
    g = g.double()
    b = g.shape[0]
    mean = g.mean(0)
    var = g.var(0, unbiased=unbiased)
    snr = mean.square() / (var / b)
    return torch.where((mean == 0) & (var == 0), torch.zeros_like(snr), snr)  # 0/0 -> 0


def make_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ worked numbers


def test_worked_example_snr_32_and_unbiased_24():
    g = torch.tensor([1.0, 2.0, 3.0, 2.0])
    mean, sq = g.mean().reshape(1), g.square().sum().reshape(1)
    assert mean.item() == 2.0
    assert (sq / 4 - mean.square()).item() == 0.5
    assert snr_from_moments(mean, sq, 4).item() == pytest.approx(32.0)
    assert snr_from_moments(mean, sq, 4, unbiased=True).item() == pytest.approx(24.0)


def test_worked_example_linear_sq_sum():
    delta = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    expected = torch.tensor([[1.0, 9.0, 13.0], [4.0, 1.0, 17.0]])
    assert torch.equal(linear_grad_sq_sum(delta, x), expected)
    mean, sq = linear_grad_moments(delta, x)
    assert torch.equal(sq, expected)
    assert torch.allclose(mean, delta.T @ x / 2)
    # grad_scale multiplies per-sample gradients: Σg² scales by its square
    assert torch.equal(linear_grad_sq_sum(delta, x, grad_scale=2.0), 4 * expected)


def test_smoothing_gamma_t1000():
    assert smoothing_gamma(1000) == pytest.approx(0.01 ** (1 / 20))
    assert smoothing_gamma(1000) == pytest.approx(0.794, abs=5e-4)
    assert smoothing_gamma(500, r_m=0.04) == pytest.approx(0.01 ** (1 / 20))
    gamma = smoothing_gamma(1000)  # CRITERIA §1's worked example: T = 1000, r_m = 0.02 -> m = 20 -> γ ≈ 0.794
    assert round(gamma, 3) == 0.794 and gamma**20 == pytest.approx(0.01)
    with pytest.raises(ValueError):
        smoothing_gamma(0)


def test_inf_and_zero_over_zero():
    mean = torch.tensor([2.0, 0.0, 1.0])
    sq = torch.tensor([16.0, 0.0, 8.0])  # B=4: s² = 4-4 = 0; 0-0 = 0; 2-1 = 1
    snr = snr_from_moments(mean, sq, 4)
    assert math.isinf(snr[0].item()) and snr[0].item() > 0
    assert snr[1].item() == 0.0
    assert snr[2].item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        snr_from_moments(mean, sq, 1, unbiased=True)


def test_negative_rounding_is_clamped():
    # Σg²/B slightly below ḡ² (rounding) must not give a negative SNR
    snr = snr_from_moments(torch.tensor([1.0]), torch.tensor([3.9999997]), 4)
    assert snr.item() == math.inf


# ------------------------------------------------------------------------- Linear vs torch.func per-sample


@pytest.mark.parametrize("unbiased", [False, True])
def test_gradient_snr_mlp_matches_vmap(unbiased):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(16, 6)
    y = torch.randint(0, 3, (16,))
    loss_fn = nn.CrossEntropyLoss()
    got = gradient_snr(model, x, y, loss_fn, unbiased=unbiased)
    assert set(got) == {"0", "2", "4"}
    ref = per_sample_grads(model, x, y, loss_fn)
    for name in got:
        expected = reference_snr(ref[f"{name}.weight"], unbiased=unbiased)
        torch.testing.assert_close(got[name].double(), expected, rtol=2e-3, atol=1e-6)


def test_linear_moments_mean_is_grad_of_mean_loss_and_scale_b():
    torch.manual_seed(1)
    layer = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    y = torch.randn(10, 3)
    out = layer(x)
    out.retain_grad()
    loss = ((out - y) ** 2).sum(1).mean()
    loss.backward()
    mean, sq = linear_grad_moments(out.grad, x, grad_scale=10)
    torch.testing.assert_close(mean, layer.weight.grad)
    ref = per_sample_grads(layer, x, y, lambda o, t: ((o - t) ** 2).sum(1).mean())["weight"]
    torch.testing.assert_close(mean, ref.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sq, ref.square().sum(0), rtol=1e-5, atol=1e-5)


def test_linear_3d_inputs_sum_over_positions_first():
    torch.manual_seed(2)
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 7, 4)
    y = torch.randn(5, 7, 3)

    def loss_fn(o, t):
        return ((o - t) ** 2).sum((1, 2)).mean()

    out = layer(x)
    out.retain_grad()
    loss_fn(out, y).backward()
    mean, sq = linear_grad_moments(out.grad, x, grad_scale=5, chunk_size=2)
    ref = per_sample_grads(layer, x, y, loss_fn)["weight"]
    torch.testing.assert_close(mean, ref.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sq, ref.square().sum(0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(linear_grad_sq_sum(out.grad, x, grad_scale=5), sq)


# ---------------------------------------------------------------------------------------------- Conv2d


CONV_CASES = [
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (2, 0), "dilation": (1, 2)},
    {"kernel_size": 4, "padding": "same"},
    {"kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
    {"kernel_size": 3, "padding": 1, "groups": 2},
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_conv2d_moments_match_vmap(kwargs):
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, **kwargs)
    x = torch.randn(7, 4, 9, 8)
    out = conv(x)
    target = torch.randn_like(out)

    def loss_fn(o, t):
        return ((o - t) ** 2).sum((1, 2, 3)).mean()

    out = conv(x)
    out.retain_grad()
    loss_fn(out, target).backward()
    mean, sq = conv2d_grad_moments(conv, out.grad, x, grad_scale=7, chunk_size=3)
    ref = per_sample_grads(conv, x, target, loss_fn)["weight"]
    torch.testing.assert_close(mean, conv.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mean, ref.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sq, ref.square().sum(0), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(conv2d_grad_sq_sum(conv, out.grad, x, chunk_size=100, grad_scale=7), sq)


@pytest.mark.parametrize("unbiased", [False, True])
def test_gradient_snr_cnn_matches_vmap(unbiased):
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    )
    x = torch.randn(12, 3, 8, 8)
    y = torch.randint(0, 3, (12,))
    loss_fn = nn.CrossEntropyLoss()
    got = gradient_snr(model, x, y, loss_fn, unbiased=unbiased, conv_chunk_size=5)
    assert set(got) == {"0", "2", "5"}
    ref = per_sample_grads(model, x, y, loss_fn)
    for name in got:
        torch.testing.assert_close(
            got[name].double(), reference_snr(ref[f"{name}.weight"], unbiased), rtol=5e-3, atol=1e-6
        )


def test_conv2d_rejects_non_conv():
    with pytest.raises(TypeError):
        conv2d_grad_moments(nn.Linear(2, 2), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1))


# ----------------------------------------------------------------------------------- gradient_snr hygiene


def test_gradient_snr_leaves_no_hooks_and_restores_grads():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sentinel = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = sentinel
    model[2].weight.grad = None
    before_bias = model[0].bias.grad
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    gradient_snr(model, x, y, nn.CrossEntropyLoss())
    assert model[0].weight.grad is sentinel and torch.all(sentinel == 7.0)
    assert model[2].weight.grad is None and model[0].bias.grad is before_bias
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    # hooks are removed on error too
    with pytest.raises(ValueError):
        gradient_snr(model, x, y, nn.CrossEntropyLoss(reduction="none"))
    assert all(not m._forward_hooks for m in model.modules())
    assert model[0].weight.grad is sentinel


# ---------------------------------------------------------------------------------------------- collector


def test_collector_smoothing_matches_manual_recursion():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    layers = [("hidden", model[0]), ("out", model[2])]
    collector = GradientMomentCollector(layers, total_iterations=1000).attach()
    gamma = smoothing_gamma(1000)
    assert collector.gamma == pytest.approx(gamma)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    manual: dict[str, torch.Tensor] = {}
    for step in range(4):
        x, y = torch.randn(9, 5), torch.randint(0, 3, (9,))
        ref = per_sample_grads(model, x, y, loss_fn)
        collector.active = step != 2  # step 2 is an ordinary step without statistics
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        if collector.active:
            collector.update()
            for name, idx in (("hidden", "0"), ("out", "2")):
                now = reference_snr(ref[f"{idx}.weight"])
                manual[name] = now if name not in manual else gamma * manual[name] + (1 - gamma) * now
        else:
            with pytest.raises(RuntimeError):
                collector.update()
        opt.step()
    assert collector.num_updates == 3
    for name in manual:
        torch.testing.assert_close(collector.snr[name].double(), manual[name], rtol=5e-3, atol=1e-6)
    collector.detach()
    assert all(not m._forward_hooks for m in model.modules())


def test_collector_inf_cap_and_zero_over_zero():
    layer = nn.Linear(3, 1, bias=False)
    collector = GradientMomentCollector([("l", layer)], gamma=0.5, inf_cap=1e12).attach()
    collector.active = True
    x = torch.tensor([[1.0, 2.0, 0.0]])  # B = 1: s² = 0 exactly; third input is 0 -> 0/0
    layer(x).mean().backward()
    collector.update()
    assert collector.snr_now["l"].tolist() == [[math.inf, math.inf, 0.0]]
    cap = torch.tensor(1e12).item()  # 1e12 as float32
    assert collector.snr["l"].tolist() == [[cap, cap, 0.0]]
    layer(x).mean().backward()
    collector.update()
    assert torch.isfinite(collector.snr["l"]).all()
    mean, sq, b = collector.moments["l"]
    assert b == 1 and mean.tolist() == [[1.0, 2.0, 0.0]] and sq.tolist() == [[1.0, 4.0, 0.0]]
    # smoothed values decaying below the smallest normal float32 are flushed to 0 (no denormals)
    collector._snr["l"] = torch.full((1, 3), 2e-38)
    layer(torch.zeros(1, 3)).mean().backward()  # snr_now = 0 everywhere
    collector.update()
    assert collector.snr["l"].tolist() == [[0.0, 0.0, 0.0]]
    collector.reset()
    assert collector.snr == {} and collector.num_updates == 0
    collector.detach()


def test_collector_inactive_no_grad_and_dangling_forward():
    torch.manual_seed(7)
    layer = nn.Linear(4, 2)
    collector = GradientMomentCollector({"l": layer})
    with collector:
        x = torch.randn(6, 4)
        layer(x).sum().backward()  # inactive: nothing captured
        with pytest.raises(RuntimeError):
            collector.update()
        collector.active = True
        with torch.no_grad():
            layer(x)
        layer(torch.randn(3, 4))  # forward without backward: replaced by the next forward
        out = layer(x)
        out.retain_grad()
        out.pow(2).sum(1).mean().backward()
        collector.update()
        assert collector.moments["l"][2] == 6
        mean, _, _ = collector.moments["l"]
        torch.testing.assert_close(mean, out.grad.T @ x)
    assert not collector.attached and not layer._forward_hooks


def test_collector_pools_micro_batches_like_full_batch():
    torch.manual_seed(8)
    layer = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss_fn = nn.CrossEntropyLoss()
    full = gradient_snr(layer, x, y, loss_fn)[""]
    collector = GradientMomentCollector([("l", layer)]).attach()
    collector.active = True
    for part in (slice(0, 4), slice(4, 8)):
        (loss_fn(layer(x[part]), y[part]) / 2).backward()
    collector.update()
    torch.testing.assert_close(collector.snr_now["l"], full, rtol=1e-4, atol=1e-6)
    collector.detach()


def test_collector_validation():
    with pytest.raises(TypeError):
        GradientMomentCollector([("relu", nn.ReLU())])
    with pytest.raises(ValueError):
        GradientMomentCollector([("a", nn.Linear(1, 1))], gamma=0.5, total_iterations=10)
    with pytest.raises(ValueError):
        GradientMomentCollector([("a", nn.Linear(1, 1)), ("a", nn.Linear(1, 1))])
