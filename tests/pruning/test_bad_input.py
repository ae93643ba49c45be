"""Bad input to the Pruner is one ValueError naming the field, the value and what is allowed, before any hook."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from baselines import method
from sparsity_gym.core.checks import UnknownFieldError
from sparsity_gym.pruning.pruner import Pruner


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


def conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def hooks_of(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    modules = sum(len(getattr(m, d)) for m in model.modules() for d in dicts)
    return modules + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


class ReadsValidation:
    name, reads = "reads-val", ("progress", "val_accuracy")

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.zeros(obs.shape[0], np.float32), state


CASES = [
    ({"policy": ReadsValidation()}, ValueError, r"^val_fn=None is not allowed with policy 'reads-val'"),
    (
        {"policy": method("cubic+erk"), "allocation": "lamp"},
        ValueError,
        r"^allocation='lamp' contradicts policy 'cubic\+erk', which needs allocation='erk'",
    ),
    (
        {"policy": method("snr"), "target_density": 0.1, "steps_per_epoch": 4},
        ValueError,
        r"^target_density=0.1 contradicts policy 'snr', which needs target_density=None",
    ),
    ({"policy": method("dyno")}, ValueError, r"^policy 'dyno' needs capacity=2.0 \(growth room"),
    ({"policy": method("snr")}, ValueError, r"^steps_per_epoch=None is not allowed with policy 'snr'"),
    ({"policy": method("neq")}, ValueError, r"^val_fn=None is not allowed here: the equilibrium statistic"),
    ({"target_density": 0.01}, ValueError, r"^min_density=0.02 is not allowed with target_density=0.01"),
    ({"target_density": 0.5, "max_density": 0.3}, ValueError, r"^max_density=0.3 is not allowed with target_density"),
    ({"selectr": "random"}, UnknownFieldError, r"no field 'selectr'; did you mean 'selector'"),
    ({"total_steps": None}, ValueError, r"^total_steps=None is not allowed"),
    (
        {"decision_interval": 7},
        ValueError,
        r"^decision_interval=7 is not allowed; expected a divisor of total_steps=20",
    ),
    ({"config": object(), "selector": "random"}, ValueError, r"^config= is not allowed with settings"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), CASES)
def test_bad_input_is_refused_with_one_line_and_no_hook(kwargs, error, message):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"total_steps": 20, **kwargs}
    with pytest.raises(error, match=message) as err:
        Pruner(model, opt, **kwargs)
    assert "\n" not in str(err.value)
    assert hooks_of(model, opt) == 0


def test_a_conv_net_needs_its_input_shape():
    model = conv()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match=r"^input_shape=None is not allowed for a network with a first prunable layer Conv2d"
    ):
        Pruner(model, opt, total_steps=20)
    pruner = Pruner(model, opt, total_steps=20, input_shape=(1, 6, 6))
    assert pruner.layer_names == ("0", "3")


def test_a_policy_that_fails_while_the_pruner_is_built_leaves_no_hook():
    class Broken:
        name, reads = "broken", ("progress",)

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            raise RuntimeError("the policy broke")

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="the policy broke"):
        Pruner(model, opt, Broken(), total_steps=20, observations=("rank",))
    assert hooks_of(model, opt) == 0


def test_a_policy_without_predict_is_refused():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    class NoPredict:
        name, reads = "no-predict", ()

    with pytest.raises(ValueError, match=r"^policy='no-predict' is not allowed; expected an object with"):
        Pruner(model, opt, NoPredict(), total_steps=20)
    assert hooks_of(model, opt) == 0


def test_a_policy_that_reads_the_training_loss_needs_it():
    class ReadsLoss:
        name, reads = "reads-loss", ("progress", "train_loss")

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(obs.shape[0], np.float32), state

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"^the policy reads train_loss, .* step 0; expected val_fn= returning"):
        Pruner(model, opt, ReadsLoss(), total_steps=4, decision_interval=2, val_fn=lambda: 0.5)
    assert hooks_of(model, opt) == 0
    pruner = Pruner(model, opt, ReadsLoss(), total_steps=4, decision_interval=2, val_fn=lambda: (0.5, 1.0))
    opt.step()
    pruner.step()
    with pytest.raises(ValueError, match=r"^the policy reads train_loss, .* step 2; expected the loss to pruner"):
        opt.step()
        pruner.step()  # no loss given in the interval
