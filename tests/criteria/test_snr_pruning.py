"""Tests of the SNR-pruning decisions (CRITERIA.md §1)."""

from __future__ import annotations

import math

import pytest
import torch

from sparsity_gym.criteria.snr_pruning import (
    LossHold,
    burn_in_done,
    magnitude_keep_mask,
    snr_keep_masks,
)

T = torch.tensor


def _bool(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.bool)


def _brute_masks(
    snr: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], combine: str, scope: str
) -> dict[str, torch.Tensor]:
    """Independent reference: python sorting on (−|θ|, flat index)."""
    groups = [list(weights)] if scope == "global" else [[name] for name in weights]
    keep_mag: dict[str, list[bool]] = {}
    for group in groups:
        entries = []  # (|w|, flat index, name, position)
        flat = 0
        n_keep_snr = 0
        for name in group:
            ws = weights[name].reshape(-1).tolist()
            ss = snr[name].reshape(-1).tolist()
            keep_mag[name] = [False] * len(ws)
            for pos, (w, s) in enumerate(zip(ws, ss, strict=True)):
                entries.append((abs(w), flat, name, pos))
                flat += 1
                n_keep_snr += s > 1
        sp = 1 - n_keep_snr / len(entries)
        k = round((1 - sp) * len(entries))
        for _, _, name, pos in sorted(entries, key=lambda e: (-e[0], e[1]))[:k]:
            keep_mag[name][pos] = True
    out = {}
    for name in weights:
        ks = (snr[name] > 1).reshape(-1)
        km = torch.tensor(keep_mag[name])
        out[name] = (ks | km if combine == "or" else ks & km).reshape(weights[name].shape)
    return out


def test_hand_example_global_and_layer() -> None:
    weights = {"a": T([0.1, -2.0, 0.5, 3.0]), "b": T([[0.01, -0.02]])}
    snr = {"a": T([2.0, 0.5, 1.0, math.inf]), "b": T([[5.0, 5.0]])}
    # keep_snr: a = [T, F, F, T] (1.0 is not > 1), b = [T, T]; 4 of 6 kept -> sp = 1/3.
    # global magnitude keeps the 4 largest |θ|: all of a, none of b.
    out = snr_keep_masks(snr, weights)
    assert torch.equal(out["a"], _bool([True, True, True, True]))
    assert torch.equal(out["b"], _bool([[True, True]]))
    out = snr_keep_masks(snr, weights, combine="and")
    assert torch.equal(out["a"], _bool([True, False, False, True]))
    assert torch.equal(out["b"], _bool([[False, False]]))
    # per layer: a keeps its 2 largest (indices 1, 3), b keeps both.
    out = snr_keep_masks(snr, weights, combine="and", magnitude_scope="layer")
    assert torch.equal(out["a"], _bool([False, False, False, True]))
    assert torch.equal(out["b"], _bool([[True, True]]))
    out = snr_keep_masks(snr, weights, combine="or", magnitude_scope="layer")
    assert torch.equal(out["a"], _bool([True, True, False, True]))
    assert list(out) == ["a", "b"]


def test_snr_threshold_is_strict_and_inf_kept_nan_pruned() -> None:
    weights = {"w": T([0.0, 0.0, 0.0, 0.0])}
    snr = {"w": T([1.0, 1.0 + 1e-6, math.inf, math.nan])}
    out = snr_keep_masks(snr, weights, combine="and")
    # keep_snr = [F, T, T, F]; two kept -> magnitude keeps indices 0, 1 (all ties, lower index first).
    assert torch.equal(out["w"], _bool([False, True, False, False]))


def test_ties_keep_lower_index_first_across_layers() -> None:
    weights = {"a": T([1.0, 1.0]), "b": T([1.0, 1.0])}
    snr = {"a": T([0.0, 0.0]), "b": T([2.0, 3.0])}
    mag = magnitude_keep_mask(torch.cat([weights["a"], weights["b"]]), 2)
    assert torch.equal(mag, _bool([True, True, False, False]))
    out = snr_keep_masks(snr, weights, combine="and")
    assert torch.equal(out["a"], _bool([False, False]))
    assert torch.equal(out["b"], _bool([False, False]))
    out = snr_keep_masks(snr, weights, combine="or")
    assert all(bool(m.all()) for m in out.values())


def test_magnitude_keep_mask_exact_count() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-3, 4, (7, 5), generator=g).float()
    for k in range(w.numel() + 1):
        mask = magnitude_keep_mask(w, k)
        assert int(mask.sum()) == k
        if 0 < k < w.numel():
            assert float(w.abs()[mask].min()) >= float(w.abs()[~mask].max())
    with pytest.raises(ValueError):
        magnitude_keep_mask(w, w.numel() + 1)


@pytest.mark.parametrize("combine", ["or", "and"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_against_brute_force(combine: str, scope: str) -> None:
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        shapes = {"l0": (4, 3), "l1": (5,), "l2": (2, 2, 3)}
        # integer weights produce many ties in |θ|
        weights = {n: torch.randint(-3, 4, s, generator=g).float() for n, s in shapes.items()}
        snr = {n: torch.rand(s, generator=g) * 2 * (trial % 3) for n, s in shapes.items()}
        out = snr_keep_masks(snr, weights, combine=combine, magnitude_scope=scope)
        ref = _brute_masks(snr, weights, combine, scope)
        for name in shapes:
            assert out[name].dtype == torch.bool
            assert out[name].shape == weights[name].shape
            assert torch.equal(out[name], ref[name]), (trial, name)


def test_magnitude_count_equals_snr_count_global() -> None:
    g = torch.Generator().manual_seed(2)
    weights = {"a": torch.randn(10, 10, generator=g), "b": torch.randn(37, generator=g)}
    snr = {n: torch.rand(w.shape, generator=g) * 2 for n, w in weights.items()}
    n_snr = sum(int((s > 1).sum()) for s in snr.values())
    both = snr_keep_masks(snr, weights, combine="and")
    either = snr_keep_masks(snr, weights, combine="or")
    n_and = sum(int(m.sum()) for m in both.values())
    n_or = sum(int(m.sum()) for m in either.values())
    # |keep_mag| = |keep_snr| = k, so |OR| + |AND| = 2k.
    assert n_and + n_or == 2 * n_snr


def test_validation_errors() -> None:
    w = {"a": torch.zeros(3)}
    with pytest.raises(ValueError, match="combine"):
        snr_keep_masks(w, w, combine="xor")
    with pytest.raises(ValueError, match="magnitude_scope"):
        snr_keep_masks(w, w, magnitude_scope="net")
    with pytest.raises(ValueError, match="same layer names"):
        snr_keep_masks({"b": torch.zeros(3)}, w)
    with pytest.raises(ValueError, match="shape"):
        snr_keep_masks({"a": torch.zeros(4)}, w)
    assert snr_keep_masks({}, {}) == {}


def test_burn_in() -> None:
    assert not burn_in_done(0, 3)
    assert not burn_in_done(2, 3)
    assert burn_in_done(3, 3)
    assert burn_in_done(0, 0)
    with pytest.raises(ValueError):
        burn_in_done(0, -1)


def test_loss_hold_unsmoothed() -> None:
    hold = LossHold()
    losses = [2.0, 1.5, 1.6, 1.55, 1.5, 1.4, 1.45, 1.3]
    allowed = [hold.update(x) for x in losses]
    # pauses while above the best so far (1.5, then 1.4); resumes when the best is reached again.
    assert allowed == [True, True, False, False, True, True, False, True]
    assert hold.best == 1.3
    assert hold.update(math.nan) is False
    assert hold.best == 1.3
    hold.reset()
    assert hold.update(10.0) is True


def test_loss_hold_smoothed() -> None:
    hold = LossHold(smoothing=0.5)
    # s: 1.0, 1.5, 1.25, 0.875
    assert hold.update(1.0) is True
    assert hold.update(2.0) is False
    assert hold.smoothed == pytest.approx(1.5)
    assert hold.update(1.0) is False
    assert hold.smoothed == pytest.approx(1.25)
    assert hold.update(0.5) is True
    assert hold.smoothed == pytest.approx(0.875)
    with pytest.raises(ValueError):
        LossHold(smoothing=1.0)


def test_snr_settings_live_in_the_env_config() -> None:
    # what the removed SNRPruningSchedule held is the env's config, checked by the snr selector's one spec
    from sparsity_gym.env.env_config import EnvConfig
    from sparsity_gym.masks.selectors import SELECTORS

    assert SELECTORS.get("snr").options == {"combine": ("or", "and"), "magnitude_scope": ("global", "layer")}
    cfg = EnvConfig(selector="snr", regrowth="feedback", selector_options={"combine": "and"}, burn_in_epochs=1.0)
    assert cfg.selector_options["combine"] == "and" and cfg.feedback_updates_pruned
    with pytest.raises(ValueError, match="combine"):
        EnvConfig(selector="snr", selector_options={"combine": "both"})
    with pytest.raises(ValueError, match="burn_in_epochs"):
        EnvConfig(selector="snr", burn_in_epochs=-1.0)
