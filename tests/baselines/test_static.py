"""The parametric static schedule: names that round-trip, densities against a hand computation, the budget."""

import numpy as np
import pytest

from baselines import SEARCH_SPACE, StaticKnobs, env_kwargs, make_policy, parse_static, searched_name, static_name
from sparsity_gym.env.env_config import EnvConfig
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.experiments.evaluation import evaluate

# mlp 16 -> 16 -> 8 -> 4 on the synthetic data (16 features, 4 classes): 4 decisions of 10 steps, global budget
ENV = {
    "dataset": "synthetic",
    "network": "mlp",
    "network_kwargs": {"widths": (16, 8)},
    "total_iterations": 40,
    "decision_interval": 10,
    "batch_size": 16,
    "observations": (),
    "budget": "global",
    "target_density": 0.2,
}
WEIGHTS = np.array([16 * 16, 16 * 8, 8 * 4], dtype=np.float64)  # dense weights of the three Linear layers


def _fill(base, low, high, mean, weights=WEIGHTS):
    """``clip(s * base, low, high)`` with the ``s`` that gives the weighted ``mean`` (plain bisection)."""
    lo, hi = 0.0, 1e6
    for _ in range(200):
        s = (lo + hi) / 2
        value = np.dot(weights, np.clip(s * base, low, high)) / weights.sum()
        lo, hi = (s, hi) if value < mean else (lo, s)
    return np.clip(hi * base, low, high)


def _erk(density):
    """RigL's ERK densities of the three Linear layers (Evci et al. 2020, §3): eps * (n_in + n_out) / (n_in n_out)."""
    shapes = [(16, 16), (16, 8), (8, 4)]
    ratio = np.array([(a + b) / (a * b) for a, b in shapes])
    dense = np.zeros(3, dtype=bool)
    while True:
        eps = (density * WEIGHTS.sum() - WEIGHTS[dense].sum()) / np.dot(WEIGHTS[~dense], ratio[~dense])
        over = ~dense & (eps * ratio > 1)
        if not over.any():
            return np.where(dense, 1.0, eps * ratio)
        dense |= over


def _density(t, s, e, p, target=0.2):
    q = np.clip((t - s) / (e - s), 0.0, 1.0)
    return target + (1 - target) * (1 - q) ** p


def _play(name, seed=3):
    """The env's ``info`` after each decision of one episode of static schedule ``name``."""
    env = SparsityEnv(config=EnvConfig(**ENV, **env_kwargs(name)))
    policy = make_policy(name, env)
    obs, _ = env.reset(seed=seed)
    infos, progress, done = [], [], False
    while not done:
        progress.append(env.progress)
        obs, _, terminated, truncated, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = terminated or truncated
    env.close()
    return progress, infos


def test_names_round_trip():
    rng = np.random.default_rng(0)
    rules = (None, "uniform", "er", "erk", "lamp", "global_magnitude")
    for _ in range(200):
        start = float(rng.uniform(0, 0.9))
        rule = rules[rng.integers(len(rules))]
        knobs = StaticKnobs(
            start=start,
            end=float(rng.uniform(start + 1e-6, 1.0)),
            exponent=float(np.exp(rng.uniform(-3, 4))),
            allocation=rule,
            first=1.0 if rule is None else float(np.exp(rng.uniform(-4, 6))),
            last=1.0 if rule is None else float(rng.choice([1.0, np.exp(rng.uniform(-4, 6))])),
        )
        assert parse_static(static_name(knobs)) == knobs
    assert static_name(StaticKnobs(0.1, 0.8, 2.5, "erk", 3, 0.5)) == "poly[s=0.1,e=0.8,p=2.5]+erk[first=3,last=0.5]"
    assert static_name(StaticKnobs(0, 0.9, 3, "erk")) == "poly[s=0,e=0.9,p=3]+erk"
    assert parse_static("poly[e=0.9]+lamp[last=2]") == StaticKnobs(0.0, 0.9, 3.0, "lamp", 1.0, 2.0)
    # what a search proposes is named to 3 significant digits, and that name is what runs
    params = {"start": 0.123456, "end": 0.87654, "exponent": 2.34567, "allocation": "er", "first": 3.14159, "last": 1}
    assert searched_name(params) == "poly[s=0.123,e=0.877,p=2.35]+er[first=3.14]"
    assert set(SEARCH_SPACE) == {"start", "end", "exponent", "allocation", "first", "last"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("poly[s=0.9,e=0.5]", r"end=0.5 is not allowed .*start < end <= 1"),
        ("poly[s=1]", r"start=1 is not allowed .*0 <= start < 1"),
        ("poly[p=0]", r"exponent=0 is not allowed .*0 < exponent <= 100"),
        ("poly[p=nan]", r"exponent=nan is not allowed .*finite number"),
        ("poly[s=0]+erk[first=0]", r"first=0 is not allowed .*0 < first <= 1000"),
        ("poly[s=0]+erk[last=2000]", r"last=2000 is not allowed .*0 < last <= 1000"),
        ("poly[x=1]", r"'x=1' is no knob; expected s=<number>, e=<number>, p=<number>"),
        ("poly[s=0,s=0.1]", r"knob s given twice"),
        ("poly[s=a]", r"s='a' is not a number"),
        ("poly[s=0]+magic", r"allocation .*'magic' is not allowed; expected one of"),
        ("poly[s=0]+erk[p=2]", r"'p=2' is no knob; expected first=<number>, last=<number>"),
        ("poly[s=0][first=2]", r"expected a static schedule like"),
    ],
)
def test_bad_names_are_refused_in_one_line(name, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_static(name)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="first=3, last=1 is not allowed without an allocation rule"):
        StaticKnobs(first=3)


def test_env_settings_and_the_env_it_needs():
    assert env_kwargs("poly[s=0,e=0.9,p=3]+erk") == {"allocation": "erk"}  # no multiplier: no tilt
    assert env_kwargs("poly[s=0,e=0.9,p=3]+erk[first=2]") == {"allocation": "erk", "allocation_tilt": True}
    assert env_kwargs("poly[s=0,e=0.9,p=3]") == {}
    env = SparsityEnv(config=EnvConfig(**ENV))
    with pytest.raises(ValueError, match=r"allocation='policy', allocation_tilt=False is not allowed for policy"):
        make_policy("poly[s=0,e=0.9,p=3]+erk[first=2]", env)
    env.close()


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("rule", ["uniform", "erk"])
def test_densities_match_a_hand_computation(rule):
    """Request ``x = fill(m d)`` onto ``d``; the env tilts the rule: ``fill(r x / d)`` onto ``d`` (the docstring)."""
    s, e, p, first, last = 0.0, 0.8, 2.0, 3.0, 0.5
    name = f"poly[s={s:g},e={e:g},p={p:g}]+{rule}[first={first:g},last={last:g}]"
    progress, infos = _play(name)
    assert len(infos) == 4
    m = np.array([first, 1.0, last])
    units = WEIGHTS  # weight granularity: a unit is a weight
    for t, info in zip(progress[:-1], infos[:-1], strict=True):  # the decisions before the budget's projection
        d = _density(t, s, e, p)
        x = _fill(m * d, 0.02, 1.0, d)  # the request, water-filled within the action range [min_density, 1]
        shared = np.full(3, d) if rule == "uniform" else _erk(d)
        expected = _fill(shared * x / d, 1.0 / units, 1.0, d)
        np.testing.assert_allclose(info["allocation"], expected, rtol=2e-5)
        assert np.dot(WEIGHTS, info["allocation"]) / WEIGHTS.sum() == pytest.approx(d, rel=1e-5)
    assert abs(infos[-1]["density"] - 0.2) * WEIGHTS.sum() <= 1.0  # the budget, to one weight
    # while no layer is clipped the layers stand as the rule's times the multipliers
    d = _density(progress[2], s, e, p)
    ratio = np.asarray(infos[2]["allocation"]) / (np.full(3, d) if rule == "uniform" else _erk(d)) / m
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)


@pytest.mark.usefixtures("one_torch_thread")
def test_every_episode_ends_on_the_budget():
    rng = np.random.default_rng(1)
    for rule in ("uniform", "er", "lamp", "global_magnitude"):
        start = float(rng.uniform(0, 0.5))
        knobs = StaticKnobs(start, float(rng.uniform(0.55, 1)), float(rng.uniform(0.5, 8)), rule, 10.0, 0.3)
        _, infos = _play(static_name(knobs), seed=int(rng.integers(100)))
        assert abs(infos[-1]["density"] - 0.2) * WEIGHTS.sum() <= 1.0, static_name(knobs)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize(("static", "cell"), [("poly[s=0,e=0.9,p=3]+erk", "cubic@0.9+erk"), ("poly[p=1]", "linear")])
def test_a_grid_cell_is_a_point_of_the_space(static, cell):
    config = EnvConfig(**ENV)
    [a, b] = [
        evaluate(lambda env, n=n: make_policy(n, env), config.replace(**env_kwargs(n)), [4, 5], n)
        for n in (static, cell)
    ]
    for x, y in zip(a, b, strict=True):
        assert x.schedule == y.schedule and x.progress == y.progress
        assert (x.val_accuracy, x.test_accuracy, x.final_density) == (y.val_accuracy, y.test_accuracy, y.final_density)
