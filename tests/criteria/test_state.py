"""Explicit state of the loss hold: a restored hold decides exactly as the uninterrupted one."""

import math

import pytest
from state_helpers import assert_same, roundtrip

from sparsity_gym.criteria import LossHold

LOSSES = [2.0, 1.5, 1.7, float("nan"), 1.6, 1.4, 1.45, float("inf"), 1.3, 1.35, 1.2]


def _reference(losses, smoothing):
    """The rule written out: smoothed loss, allowed iff it does not exceed the best before it."""
    smoothed, best, out = None, math.inf, []
    for loss in losses:
        if not math.isfinite(loss):
            out.append(False)
            continue
        smoothed = loss if smoothed is None else smoothing * smoothed + (1 - smoothing) * loss
        out.append(smoothed <= best)
        best = min(best, smoothed)
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.6])
@pytest.mark.parametrize("split", range(len(LOSSES) + 1))
def test_restored_hold_decides_as_the_uninterrupted_one(smoothing, split):
    hold = LossHold(smoothing)
    first = [hold.update(loss) for loss in LOSSES[:split]]
    state = roundtrip(hold.state_dict())
    restored = LossHold(smoothing)
    restored.load_state_dict(state)
    assert_same(restored.state_dict(), hold.state_dict())
    rest = [restored.update(loss) for loss in LOSSES[split:]]
    assert first + rest == _reference(LOSSES, smoothing)
    assert [hold.update(loss) for loss in LOSSES[split:]] == rest


def test_fresh_state_round_trips_with_an_infinite_best():
    state = roundtrip(LossHold().state_dict())
    assert state == {"smoothed": None, "best": math.inf}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"smoothed": None}, "missing 'best'"),
        ({"smoothed": "1.0", "best": 1.0}, "smoothed='1.0'"),
        ({"smoothed": 1.0, "best": None}, "best=None"),
        ({"smoothed": 1.0, "best": 1.0, "step": 3}, "unexpected 'step'"),
    ],
)
def test_malformed_states_are_refused(state, message):
    hold = LossHold()
    with pytest.raises(ValueError, match=message):
        hold.load_state_dict(state)
    assert hold.state_dict() == {"smoothed": None, "best": math.inf}
