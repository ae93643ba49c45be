"""The flags this branch adds: the actor's pooling, paired rewards and the seed pool."""

import pytest

from agents.settings.command_line import parse_args
from agents.settings.train_config import TrainConfig


def test_new_flags_parse_and_default():
    cfg = parse_args(["--reward", "paired", "--seed-pool", "3", "--reward-reference", "cubic"])
    assert (cfg.reward, cfg.seed_pool, cfg.reward_reference) == ("paired", 3, "cubic")
    default = TrainConfig()
    assert (default.policy_pooling, default.reward, default.seed_pool) == ("deepsets", "env", 0)
    assert parse_args(["--policy-pooling", "none"]).policy_pooling == "none"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--reward", "paried"), "reward='paried'"),
        (("--seed-pool", "-1"), "seed_pool=-1"),
        (("--reward-reference", "ppo"), "reward_reference='ppo'"),
        (("--policy-pooling", "attention"), "policy_pooling='attention'"),
    ],
)
def test_bad_values_name_the_field(args, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        parse_args(list(args))
