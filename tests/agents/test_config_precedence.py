"""One parse, one order of precedence (default < preset < task < flag given), the same configs as two parses gave.

``two_pass_parse`` below is a copy of the command line's earlier logic (a first parser reads ``--preset`` and
``--task``, a second one has their values as defaults): every command line of the table must give exactly the
config it gives.
"""

import argparse
import dataclasses
import typing

import pytest

from agents.settings.command_line import parse_args
from agents.settings.presets import PRESETS, TASK_PRESET, task_settings
from agents.settings.train_config import ENV_FLAGS, MODES, TrainConfig, config_from
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.tasks import available_tasks, get_task


def two_pass_parse(argv: list[str]) -> TrainConfig:
    """The earlier ``parse_args``: preset and task read first, then every flag with their defaults."""
    args = ["--mode", argv[0], *argv[1:]] if argv and argv[0] in MODES else list(argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", default="default")
    first.add_argument("--task", default=None)
    known = first.parse_known_args(args)[0]
    defaults = dict(PRESETS[known.preset])
    if known.task is not None:
        t = get_task(known.task)
        defaults.update(TASK_PRESET, run_dir=f"runs/{t.name}", family=t.name, dataset=t.dataset, selector=t.selector)
        defaults.update(target_density=t.targets[0], eval_targets=t.targets[:1], eval_selectors=(t.selector,))
        defaults.update(granularity=t.granularity, total_iterations=t.total_iterations)
        defaults.update(decision_interval=t.decision_interval)
    parser = argparse.ArgumentParser()
    hints = {**typing.get_type_hints(TrainConfig), **typing.get_type_hints(EnvConfig)}
    run_fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "env"]
    choices_of = [f.metadata.get("choices") for f in run_fields]
    fields = [(f.name, f.default, c() if callable(c) else c) for f, c in zip(run_fields, choices_of, strict=True)]
    fields += [(name, getattr(EnvConfig(), name), None) for name in ENV_FLAGS]
    for name, default, choices in fields:
        flag, hint, value = "--" + name.replace("_", "-"), hints[name], defaults.get(name, default)
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, nargs="*", type=typing.get_args(hint)[0], default=value)
        else:
            kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
            parser.add_argument(flag, type=kind, default=value, choices=choices)
    ns = parser.parse_args(args)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()}
    env_values = {k: values.pop(k) for k in ENV_FLAGS}
    extras = {}
    if ns.task is not None:
        flagged = {"dataset", "selector", "target_density", "granularity", "total_iterations", "decision_interval"}
        extras = {k: v for k, v in get_task(ns.task).settings().items() if k not in flagged}
    env = EnvConfig(**extras, **env_values)
    if ns.task is not None and not any(a.split("=")[0] == "--eval-targets" for a in args):
        values["eval_targets"] = (env.target_density,)
    return TrainConfig(env=env, **values)


COMMAND_LINES = [
    [],
    ["--preset", "long"],
    ["--preset", "long", "--total-timesteps", "7"],
    ["--task", "mnist1d_mlp", "--target-density", "0.01"],
    ["--task", "mnist1d_cnn", "--target-density", "0.03", "--eval-targets", "0.03", "0.1"],
    ["--task", "mnist1d_mlp", "--total-timesteps", "100", "--prior", "cubic", "--reward", "env"],
    ["--task", "mnist1d_mlp", "--selector", "random", "--total-iterations", "200"],
    ["--task", "mnist1d_mlp", "--eval-targets", "0.1", "0.01"],
    ["--task=mnist1d_cnn", "--eval-seeds=7", "--run-dir=runs/x"],
    ["--preset", "long", "--task", "digits"],
    ["--task", "digits", "--preset", "long", "--eval-every", "5"],
    ["evaluate", "--model", "x", "--networks", "mlp_512"],
    ["evaluate", "--task", "mnist1d_mlp", "--networks", "mlp_512", "--policies", "cubic", "none"],
    ["--mode", "evaluate", "--preset=long", "--no-progress-bar"],
    ["--task", "mnist1d_mlp", "--prior", "auto", "--tune-cells", "--reward-reference", "cubic"],
    ["--n-envs", "1", "--eval-selectors", "magnitude", "--policy-hidden", "32", "--vec-env", "dummy"],
    ["--target-density", "0.3", "--granularity", "neuron", "--device", "cpu", "--precision", "bfloat16"],
    ["--family", "mlp", "--seed", "3", "--select-on", "train", "--eval-seed-start", "7"],
    *(["--task", name] for name in available_tasks()),
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_one_parse_gives_the_config_two_parses_gave(argv):
    assert parse_args(argv) == two_pass_parse(argv)


def test_each_layer_overrides_the_one_before():
    task = get_task("mnist1d_cnn")
    both = parse_args(["--preset", "long", "--task", task.name])
    # preset over default; task over preset; fields only the preset sets keep its values
    assert both.total_timesteps == TASK_PRESET["total_timesteps"] != PRESETS["long"]["total_timesteps"]
    assert both.run_dir == f"runs/{task.name}" and both.n_steps == PRESETS["long"]["n_steps"]
    assert (both.env.budget, both.env.total_iterations, both.family) == (task.budget, task.total_iterations, task.name)
    # a flag over both, for a run field and for an env field the task sets
    given = parse_args(["--preset", "long", "--task", task.name, "--run-dir", "r", "--total-iterations", "100"])
    assert (given.run_dir, given.env.total_iterations, given.env.decision_interval) == ("r", 100, 50)
    # a flag given with the field's default value still wins over the task's value
    assert parse_args(["--task", task.name, "--total-timesteps", "3000"]).total_timesteps == 3000


def test_eval_targets_follow_the_training_target_unless_given():
    assert parse_args(["--task", "mnist1d_mlp", "--target-density", "0.03"]).eval_targets == (0.03,)
    assert parse_args(["--task", "mnist1d_mlp", "--eval-targets", "0.5"]).eval_targets == (0.5,)
    # an abbreviated flag is given too (argparse's prefix matching)
    assert parse_args(["--task", "mnist1d_mlp", "--eval-targ", "0.5"]).eval_targets == (0.5,)
    assert parse_args(["--eval-targets", "0.2"]).eval_targets == (0.2,)
    assert parse_args([]).eval_targets == TrainConfig().eval_targets


def test_task_settings_are_the_tasks_env_settings_and_its_run_settings():
    for name in available_tasks():
        task = get_task(name)
        run, env = task_settings(name)
        assert env == task.settings()
        assert {k: run[k] for k in TASK_PRESET} == TASK_PRESET
        assert (run["family"], run["run_dir"], run["eval_selectors"]) == (name, f"runs/{name}", (task.selector,))
    assert task_settings(None) == ({}, {})


def test_config_from_settings_given_in_code():
    cfg = config_from({"task": "mnist1d_mlp", "target_density": 0.01, "seed": 4})
    assert cfg == parse_args(["--task", "mnist1d_mlp", "--target-density", "0.01", "--seed", "4"])
    assert config_from({}) == TrainConfig(**PRESETS["default"])
    with pytest.raises(ValueError, match=r"^preset='nope' is not allowed"):
        config_from({"preset": "nope"})
    with pytest.raises(ValueError, match=r"^setting='budget' is not allowed"):
        config_from({"budget": "global"})
