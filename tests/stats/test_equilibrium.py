"""Neuronal equilibrium (CRITERIA.md §4): similarity and velocity against hand-worked sequences."""

from __future__ import annotations

import math

import pytest
import torch

from sparsity_gym.stats import EquilibriumTracker, neuron_similarity

# Three neurons, two validation samples: columns are the neurons' output vectors.
EVAL1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # y0=[1,0] y1=[0,0] y2=[0,0]
EVAL2 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # y0=[1,1] y1=[0,0] y2=[0,1]
EVAL3 = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 1.0]])  # y0=[2,2] y1=[0,0] y2=[0,1]


def test_similarity_cases():
    phi = neuron_similarity(EVAL1, EVAL2)
    assert phi.dtype == torch.float64
    torch.testing.assert_close(phi, torch.tensor([1 / math.sqrt(2), 1.0, 0.0], dtype=torch.float64))
    # exactly one zero in the other direction too
    assert neuron_similarity(EVAL2, EVAL1)[2].item() == 0.0
    anti = neuron_similarity(torch.tensor([[1.0], [2.0]]), torch.tensor([[-2.0], [-4.0]]))
    assert anti.item() == pytest.approx(-1.0)


def test_similarity_is_one_cosine_over_all_samples_and_positions():
    g = torch.Generator().manual_seed(0)
    prev = torch.randn(3, 4, 2, 5, generator=g)
    cur = prev + 0.3 * torch.randn(3, 4, 2, 5, generator=g)
    got = neuron_similarity(prev, cur)
    for c in range(4):
        p, q = prev[:, c].flatten().double(), cur[:, c].flatten().double()
        assert got[c].item() == pytest.approx((p @ q / (p.norm() * q.norm())).item(), abs=1e-12)


def test_similarity_half_inputs_computed_in_float64():
    g = torch.Generator().manual_seed(1)
    prev = torch.randn(256, 3, generator=g).half()
    got = neuron_similarity(prev, prev)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.ones(3, dtype=torch.float64))


def test_velocity_sequence_paper_variant():
    tracker = EquilibriumTracker(3)  # mu = 0.5, eps = 1e-3
    tracker.update(EVAL1)
    assert tracker.phi is None and tracker.delta_phi is None and not tracker.at_equilibrium.any()
    tracker.update(EVAL2)
    phi2 = torch.tensor([1 / math.sqrt(2), 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(tracker.phi, phi2)
    assert tracker.delta_phi is None
    # v is still 0 everywhere, yet nothing is frozen before the third evaluation
    assert torch.equal(tracker.velocity, torch.zeros(3, dtype=torch.float64))
    assert not tracker.at_equilibrium.any() and not tracker.velocity_ready
    tracker.update(EVAL3)
    phi3 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    v3 = phi3 - phi2  # v^2 = 0
    torch.testing.assert_close(tracker.phi, phi3)
    torch.testing.assert_close(tracker.delta_phi, phi3 - phi2)
    torch.testing.assert_close(tracker.velocity, v3)
    assert tracker.at_equilibrium.tolist() == [False, True, False]
    tracker.update(EVAL3)  # φ stays 1: Δφ = 0, v = 0 − 0.5·v3
    v4 = -0.5 * v3
    torch.testing.assert_close(tracker.velocity, v4)
    assert tracker.at_equilibrium.tolist() == [False, True, False]
    tracker.update(EVAL3)
    v5 = -0.5 * v4
    torch.testing.assert_close(tracker.velocity, v5)
    assert tracker.num_updates == 5
    tracker.reset()
    assert tracker.num_updates == 0 and tracker.phi is None and not tracker.at_equilibrium.any()


def test_code_variant_adds_momentum_and_uses_non_strict_threshold():
    tracker = EquilibriumTracker(3, variant="code")
    for outputs in (EVAL1, EVAL2, EVAL3, EVAL3):
        tracker.update(outputs)
    v3 = torch.tensor([1 - 1 / math.sqrt(2), 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(tracker.velocity, 0.5 * v3)
    # eps = 0: "<" freezes nothing, "<=" freezes the neuron with v exactly 0
    strict = EquilibriumTracker(3, eps=0.0)
    loose = EquilibriumTracker(3, eps=0.0, variant="code")
    for outputs in (EVAL1, EVAL2, EVAL3):
        strict.update(outputs)
        loose.update(outputs)
    assert strict.at_equilibrium.tolist() == [False, False, False]
    assert loose.at_equilibrium.tolist() == [False, True, False]


def test_threshold_and_previous_outputs_stored_float32():
    tracker = EquilibriumTracker(2, mu=0.0, eps=0.1)
    tracker.update(torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64))
    assert tracker._previous.dtype == torch.float32
    tracker.update(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))  # φ = [1, 1] (identical outputs)
    tracker.update(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))  # φ = [cos45°, cos45°]: Δφ ≈ −0.29
    assert tracker.at_equilibrium.tolist() == [False, False]
    tracker.update(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))  # φ = [1, 1]: Δφ ≈ +0.29
    tracker.update(torch.tensor([[1.0, 1.0], [1.0, 0.05]]))  # φ ≈ [1, 0.9988]: |v| = |Δφ| < 0.1
    assert tracker.at_equilibrium.tolist() == [True, True]


def test_validation():
    with pytest.raises(ValueError):
        EquilibriumTracker(3, variant="other")  # type: ignore[arg-type]
    tracker = EquilibriumTracker(3)
    with pytest.raises(ValueError):
        tracker.update(torch.zeros(2, 4))
    with pytest.raises(ValueError):
        neuron_similarity(torch.zeros(2, 3), torch.zeros(3, 3))


def _cosine_as_written(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """φ as the convention writes it, computed afresh from both evaluations' float32 outputs every time."""
    n = previous.shape[1]
    prev = previous.transpose(0, 1).reshape(n, -1).to(torch.float64)
    cur = current.transpose(0, 1).reshape(n, -1).to(torch.float64)
    norms = torch.linalg.vector_norm(prev, dim=1) * torch.linalg.vector_norm(cur, dim=1)
    return ((prev * cur).sum(1) / norms).clamp(-1.0, 1.0)


@pytest.mark.parametrize("shape", [(50, 6), (7, 4, 3, 2)])
def test_the_tracker_keeping_the_last_vectors_gives_bit_identical_phi_and_velocity(shape):
    # the tracker keeps the last evaluation's float64 vectors and norms instead of recomputing them; a resumed
    # tracker (load_state_dict: no kept vectors) recomputes them from the stored outputs: the same bits
    gen = torch.Generator().manual_seed(3)
    outputs = [torch.randn(shape, generator=gen) for _ in range(6)]
    tracker, resumed = EquilibriumTracker(shape[1]), EquilibriumTracker(shape[1])
    velocity = torch.zeros(shape[1], dtype=torch.float64)
    phi_before = None
    for t, out in enumerate(outputs):
        tracker.update(out)
        if t == 3:
            resumed.load_state_dict(tracker.state_dict())
        elif t > 3:
            resumed.update(out)
        if t == 0:
            continue
        phi = _cosine_as_written(outputs[t - 1], out)
        assert torch.equal(tracker.phi, phi)
        assert torch.equal(neuron_similarity(outputs[t - 1], out), phi)
        if phi_before is not None:
            velocity = (phi - phi_before) - 0.5 * velocity
            assert torch.equal(tracker.velocity, velocity)
        phi_before = phi
    assert torch.equal(resumed.phi, tracker.phi) and torch.equal(resumed.velocity, tracker.velocity)
