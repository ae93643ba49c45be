"""Explicit state of the observers: restored on a copy of the network, they see, score and select exactly as before."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from state_helpers import assert_same, roundtrip

from sparsity_gym.masks.masked_network import MaskedNetwork
from sparsity_gym.masks.selectors import SelectionContext
from sparsity_gym.models.layers import find_prunable_layers
from sparsity_gym.models.zoo import build_network
from sparsity_gym.observation.base import Observer, ObserverSettings
from sparsity_gym.observation.layer_inputs import LayerInputObserver
from sparsity_gym.observation.observers import (
    ContributionObserver,
    EquilibriumObserver,
    RankObserver,
    SNRObserver,
)

SHAPE = (1, 8, 8)
KWARGS = {"mlp": {"widths": (24, 16)}, "cnn": {"channels": (4, 6)}}
SETTINGS = ObserverSettings(total_iterations=40)


class Run:
    """A network, its optimizer and masks, every observer attached, stepped as the env steps them."""

    def __init__(self, net, granularity, selector, regrowth, seed, kwargs=None):
        torch.manual_seed(seed)
        self.model = build_network(net, SHAPE, 10, kwargs or KWARGS[net])
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        layers = find_prunable_layers(self.model, SHAPE)
        gen = torch.Generator().manual_seed(seed)
        self.masks = MaskedNetwork(layers, granularity, selector, regrowth, 0.0, gen, self.opt)
        self.observers = {
            "snr": SNRObserver(self.masks, SETTINGS),
            "rank": RankObserver(self.masks, SETTINGS),
            "contribution": ContributionObserver(self.masks, SETTINGS, lambda1=0.5, lambda2=0.5),
            "equilibrium": EquilibriumObserver(self.masks, SETTINGS),
            "layer_inputs": LayerInputObserver(self.masks, SETTINGS, min_rows=40),
        }

    def measure(self, on):
        for observer in self.observers.values():
            observer.set_measuring(on)

    def step(self, batch, measured):
        x, y = batch
        self.opt.zero_grad()
        nn.functional.cross_entropy(self.model(x), y).backward()
        if measured:
            for observer in self.observers.values():
                observer.after_backward()
        self.opt.step()

    def validate(self, x):
        for observer in self.observers.values():
            observer.begin_evaluation()
        self.model.eval()
        with torch.no_grad():
            self.model(x)
        self.model.train()
        for observer in self.observers.values():
            observer.end_evaluation()

    def decide(self, densities):
        stats = {name: observer.unit_scores() for name, observer in self.observers.items()}
        self.masks.set_densities(densities[: len(self.masks.layers)], SelectionContext(self.masks.generator, stats))

    def outputs(self):
        """Everything the run shows: features, unit scores, observer and mask states, parameters."""
        return {
            "features": {name: o.features() for name, o in self.observers.items()},
            "scores": {name: o.unit_scores() for name, o in self.observers.items()},
            "observers": {name: o.state_dict() for name, o in self.observers.items()},
            "masks": self.masks.state_dict(),
            "parameters": self.model.state_dict(),
        }

    def state(self):
        return roundtrip(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "masks": self.masks.state_dict(),
                "observers": {name: o.state_dict() for name, o in self.observers.items()},
            }
        )

    def load(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.masks.load_state_dict(state["masks"])
        for name, observer in self.observers.items():
            observer.load_state_dict(state["observers"][name])


def _batches(count):
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(24, *SHAPE, generator=gen), torch.randint(0, 10, (24,), generator=gen)) for _ in range(count)]


INTERVAL, WINDOW = 4, 2  # optimizer steps per decision, the last WINDOW measured
DENSITIES = ([0.8, 0.7, 0.9], [0.6, 0.5, 0.8], [0.4, 0.4, 0.6], [0.7, 0.6, 0.9], [0.3, 0.3, 0.5])


def _interval(runs, batches, decision, start=0):
    """Steps ``start..INTERVAL-1`` of an interval, then a validation pass and a decision, on every run alike."""
    for t in range(start, INTERVAL):
        measured = t >= INTERVAL - WINDOW
        if t == INTERVAL - WINDOW:
            for run in runs:
                run.measure(True)
        batch = next(batches)
        for run in runs:
            run.step(batch, measured)
    for run in runs:
        run.measure(False)
        run.validate(VAL_X)
        run.decide(DENSITIES[decision])


VAL_X = torch.randn(40, *SHAPE, generator=torch.Generator().manual_seed(4))
CASES = [
    ("mlp", "weight", "snr", "random"),
    ("mlp", "neuron", "redundancy", "north"),
    ("cnn", "neuron", "contribution", "north"),
    ("cnn", "neuron", "equilibrium", "random"),
]


@pytest.mark.parametrize(("net", "granularity", "selector", "regrowth"), CASES)
def test_restored_observers_continue_exactly(net, granularity, selector, regrowth):
    """Checkpoint in the middle of a measured window: the restored run equals the uninterrupted one."""
    original = Run(net, granularity, selector, regrowth, seed=0)
    batches = iter(_batches(INTERVAL * len(DENSITIES)))
    for decision in range(2):
        _interval([original], batches, decision)
    original.measure(True)
    for _ in range(INTERVAL - WINDOW + 1):  # one measured step into the third interval's window
        original.step(next(batches), measured=True)
    state = original.state()
    restored = Run(net, granularity, selector, regrowth, seed=1)  # another initialisation and generator
    restored.measure(True)  # the measuring flag is the driver's: set it, then load (turning it on opens a window)
    restored.load(state)
    assert_same(original.outputs(), restored.outputs())
    _interval([original, restored], batches, 2, start=INTERVAL - WINDOW + 1)
    assert_same(original.outputs(), restored.outputs())
    for decision in range(3, len(DENSITIES)):
        _interval([original, restored], batches, decision)
        assert_same(original.outputs(), restored.outputs())
    scores = restored.observers[
        {"snr": "snr", "redundancy": "rank", "contribution": "contribution", "equilibrium": "equilibrium"}[selector]
    ].unit_scores()
    assert scores, "the selector's statistic was measured"


def test_states_hold_what_each_observer_measured():
    run = Run("mlp", "weight", "magnitude", "random", seed=0)
    batches = iter(_batches(2 * INTERVAL))
    for decision in range(2):
        _interval([run], batches, decision)
    states = {name: o.state_dict() for name, o in run.observers.items()}
    names = [m.info.name for m in run.masks.layers]
    collector = states["snr"]["collector"]
    assert collector["num_updates"] == 2 * WINDOW and list(collector["snr"]) == names
    assert_same(collector["snr"], run.observers["snr"].unit_scores())
    for name, buf in zip(names, run.observers["rank"].buffers, strict=True):
        assert_same(states["rank"]["buffers"][name]["rows"], buf.rows)
    trackers = states["equilibrium"]["trackers"]
    assert all(t["num_updates"] == 2 and t["delta_phi"] is None and t["phi"] is not None for t in trackers.values())
    windows = states["contribution"]["accumulators"]
    assert list(windows) == names[:-1]  # the output layer has no successor
    assert all(w["num_samples"] == WINDOW * 24 for w in windows.values())  # the last window, until the next opens
    recent, cap = states["layer_inputs"]["recent"], run.observers["layer_inputs"].max_rows[names[0]]
    assert sum(len(t) for t in recent[names[0]][1:]) < cap <= sum(len(t) for t in recent[names[0]])


def test_base_observer_holds_no_state():
    masks = MaskedNetwork(find_prunable_layers(build_network("mlp", SHAPE, 10, KWARGS["mlp"]), SHAPE))
    observer = Observer(masks)
    assert observer.state_dict() == {}
    observer.load_state_dict(roundtrip({}))
    with pytest.raises(ValueError, match="Observer: state has keys"):
        observer.load_state_dict({"buffers": {}})


def test_mismatched_observer_states_are_refused_and_change_nothing():
    run = Run("mlp", "weight", "magnitude", "random", seed=0)
    batches = iter(_batches(2 * INTERVAL))
    for decision in range(2):
        _interval([run], batches, decision)
    state = run.state()["observers"]
    narrow = Run("mlp", "weight", "magnitude", "random", seed=0, kwargs={"widths": (24, 12)})
    before = {name: o.state_dict() for name, o in narrow.observers.items()}
    messages = {
        "snr": "snr of '3'.*shape",
        "rank": "capacity",  # the first layer fits, the second does not: nothing is loaded
        "contribution": "ContributionAccumulator: sum has shape",
        "equilibrium": "previous has shape",
        "layer_inputs": r"recent\['5'\]\[0\] has shape",
    }
    for name, observer in narrow.observers.items():
        with pytest.raises(ValueError, match=messages[name]):
            observer.load_state_dict(state[name])
        assert_same(observer.state_dict(), before[name])
    conv = Run("cnn", "weight", "magnitude", "random", seed=0)
    with pytest.raises(ValueError, match="RankObserver: buffers has layer"):
        conv.observers["rank"].load_state_dict(state["rank"])
    with pytest.raises(ValueError, match="SNRObserver: state has keys"):
        conv.observers["snr"].load_state_dict(state["rank"])


def test_state_during_a_step_or_a_validation_pass_is_refused():
    run = Run("mlp", "weight", "magnitude", "random", seed=0)
    x, y = _batches(1)[0]
    run.measure(True)
    nn.functional.cross_entropy(run.model(x), y).backward()
    with pytest.raises(RuntimeError, match="update"):
        run.observers["snr"].state_dict()
    run.observers["snr"].after_backward()
    assert run.observers["snr"].state_dict()["collector"]["num_updates"] == 1
    run.observers["equilibrium"].begin_evaluation()
    with torch.no_grad():
        run.model(x)
    with pytest.raises(RuntimeError, match="validation pass"):
        run.observers["equilibrium"].state_dict()
    run.observers["equilibrium"].end_evaluation()
    assert np.all(np.isfinite(run.observers["equilibrium"].features()))
