"""Shipped policies (agents.policies): packaging with a card, loading by name or path, the warnings outside the
conditions a policy trained under, and every policy that ships with the package.
"""

import json
import warnings

import pytest
from stable_baselines3 import PPO

import sparsity_gym  # noqa: F401  (registers the ids)
from agents import policies
from agents.ppo.agent import LayerwiseAgent
from agents.ppo.layerwise_policy import LayerwisePolicy
from agents.ppo.schema import OutsideTrainingWarning, model_schema, outside_training, required_settings
from sparsity_gym.env.sparsity_env import SparsityEnv
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments.family_env import FamilyEnv

TINY = {"dataset": "synthetic", "total_iterations": 20, "decision_interval": 10, "batch_size": 16}
TRAINED = {**TINY, "target_density": 0.2, "budget": "global", "allocation": "erk", "allocation_tilt": True}


def tiny_model(schema: bool = True) -> PPO:
    env = FamilyEnv(("mlp_16x12",), TRAINED)
    config = env.config
    kwargs = {
        "hidden": (8,),
        "feature_names": env.feature_names,
        "prior": "cubic",
        "density_range": (config.min_density, config.max_density),
        "action_scale": config.action_scale,
    }
    if schema:
        kwargs["schema"] = model_schema(env.feature_names[:-1], config, "cubic", "tiny", ["mlp_16x12"])
    return PPO(LayerwisePolicy, env, n_steps=4, batch_size=4, device="cpu", policy_kwargs=kwargs)


def verdict() -> policies.Verdict:
    return policies.Verdict("tuned cell cubic+erk", ("mlp_16x12", "mlp_8"), 5, 1.25, 0.5, 2.0, "wins")


def test_package_writes_a_card_that_round_trips_and_load_checks_the_digest(tmp_path, monkeypatch):
    source = tmp_path / "best_model.zip"
    tiny_model().save(source)
    folder = tmp_path / "shipped"
    card = policies.package(
        source, "tiny@0.2", [verdict()], "cubic+erk", 12.5, 100, 3, "train ...", "evaluate ...", folder=folder
    )
    assert card.task == "tiny" and card.target_density == 0.2 and card.train_networks == ("mlp_16x12",)
    assert card.sha256 == policies.digest(folder / "tiny@0.2.zip")
    assert policies.Card.from_json((folder / "tiny@0.2.json").read_text()) == card
    assert "+1.25 [+0.50, +2.00] points, **wins**" in card.text()
    monkeypatch.setattr(policies, "SHIPPED", folder)
    assert policies.available() == ("tiny@0.2",)
    agent = policies.load("tiny@0.2")
    assert agent.name == "tiny@0.2" and agent.schema["task"] == "tiny"
    (folder / "tiny@0.2.zip").write_bytes((folder / "tiny@0.2.zip").read_bytes() + b"x")
    with pytest.raises(ValueError, match="does not match its card's sha256"):
        policies.load("tiny@0.2")


def test_names_and_paths_resolve_or_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(policies, "SHIPPED", tmp_path)
    path = tmp_path / "m.zip"
    tiny_model().save(path)
    assert policies.model_path(path) == path
    assert policies.load(path).name == "ppo"
    with pytest.raises(ValueError, match=r"policy='nope@0.1' is not allowed; expected a shipped policy \(none\)"):
        policies.model_path("nope@0.1")
    with pytest.raises(ValueError, match="no such file"):
        policies.model_path(tmp_path / "missing.zip")


def test_package_refuses_a_model_without_a_schema(tmp_path):
    source = tmp_path / "old.zip"
    tiny_model(schema=False).save(source)
    with (
        warnings.catch_warnings(),
        pytest.raises(ValueError, match=r"has no schema; add one with agents\.policies\.with_schema"),
    ):
        warnings.simplefilter("ignore")
        policies.package(source, "old@0.2", [], "cubic", 1.0, 1, 0, "", "", folder=tmp_path / "shipped")


def test_with_schema_gives_an_older_model_its_schema(tmp_path):
    source, out = tmp_path / "old.zip", tmp_path / "new.zip"
    tiny_model(schema=False).save(source)
    schema = tiny_model().policy.schema
    policies.with_schema(source, schema, out)
    assert LayerwiseAgent.load(out).schema == schema


def test_settings_are_what_the_actions_need():
    schema = tiny_model().policy.schema
    settings = required_settings(schema)
    assert settings == {
        "action_mode": "density",
        "action_scale": "linear",
        "min_density": 0.02,
        "max_density": 1.0,
        "allocation": "erk",
        "allocation_tilt": True,
        "observations": ("snr", "rank", "contribution", "equilibrium"),
    }
    agent = LayerwiseAgent(tiny_model())
    assert agent.settings == settings and agent.reads == tuple(schema["columns"])


def test_bind_warns_once_for_each_condition_outside_training():
    agent = LayerwiseAgent(tiny_model())
    same = SparsityEnv(network="mlp", network_kwargs={"widths": (16, 12)}, **TRAINED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent.bind(same)  # the training conditions: no warning
    other = SparsityEnv(network="cnn", **{**TRAINED, "target_density": 0.1})
    with pytest.warns(OutsideTrainingWarning) as record:
        agent.bind(other)
        agent.bind(other)  # once per difference
    assert sorted(str(w.message) for w in record) == [
        "policy 'ppo': target_density=0.1 here; it was trained with target_density=0.2",
        "policy 'ppo': this network has conv layers; it was trained on mlp_16x12 only",
    ]
    quiet = LayerwiseAgent(tiny_model(), warn_outside=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.bind(other)
    assert outside_training(agent.schema, same) == []


@pytest.mark.parametrize("name", policies.available())
def test_every_shipped_policy_has_a_card_its_schema_and_fits_its_task(name):
    path = policies.model_path(name)
    assert path.stat().st_size <= policies.MAX_BYTES
    card = policies.card(name)
    assert card.name == name and card.sha256 == policies.digest(path)
    assert json.loads(card.to_json())["verdicts"], "a shipped policy won a comparison: its card says which"
    agent = policies.load(name)
    schema = agent.schema
    assert schema["schema_version"] >= 1 and schema["task"] == card.task
    task = get_task(card.task)
    families = card.ranges.get("families") or [card.task]  # a policy trained across settings: every family's split
    assert tuple(schema["train_networks"]) == card.train_networks
    assert set(card.train_networks) == {name for family in families for name in get_task(family).train}
    assert dict(schema.get("ranges") or {}) == dict(card.ranges)
    targets = card.ranges.get("targets") or [card.target_density]
    assert card.target_density in targets and task.name in families
    for family in families:
        for target in targets:
            env = SparsityEnv(task=family, target_density=target, **agent.settings)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                agent.bind(env)  # each task and target it trained on: checked, no warning


@pytest.mark.parametrize("name", policies.available())
def test_the_showcase_plays_a_shipped_policy_and_its_reference_on_its_own_task(name):
    from opponent_helpers import result

    from agents.run.showcase import showcase_jobs, showcase_lines, showcase_seeds
    from agents.settings.command_line import parse_args

    cfg = parse_args(["--showcase", name])
    card = policies.card(name)
    seeds = showcase_seeds(cfg)
    assert seeds == (1000, 1001, 1002, 1003, 1004)
    jobs = showcase_jobs(name, seeds)
    task = get_task(card.task)
    assert [(j.policy_name, j.network) for j in jobs] == [(p, n) for n in task.heldout for p in (name, card.reference)]
    learned, reference = jobs[0].config, jobs[1].config
    settings = policies.load(name).settings
    assert {k: getattr(learned, k) for k in settings if k != "observations"} == {
        k: v for k, v in settings.items() if k != "observations"
    }
    assert learned.target_density == reference.target_density == card.target_density
    assert learned.dataset == reference.dataset == task.dataset
    # the learned policy 2 points above its reference on every seed of both networks: a win, +2.00 with no spread
    results = [
        result(policy, net, seed, acc + 0.001 * seed)
        for net in task.heldout
        for seed in seeds
        for policy, acc in ((name, 0.52), (card.reference, 0.50))
    ]
    [line] = showcase_lines(cfg, results)
    assert f"learned − tuned handcrafted cell `{card.reference}`" in line
    assert "**+2.00 [+2.00, +2.00] points, wins**" in line


def test_verdicts_are_read_from_a_comparisons_opponents_csv(tmp_path):
    path = tmp_path / "opponents.csv"
    path.write_text(
        "opponent,label,episodes,seconds,network,policy,interval,diff_mean,diff_ci_low,diff_ci_high,diff_verdict,seeds\n"
        "tuned,tuned grid cell `c` (train split),96,,all,c,hierarchical,0.01638,0.00498,0.02804,wins,50\n"
        "tuned,tuned grid cell `c` (train split),96,,net_a,c,seeds,0.0444,0.026,0.0592,wins,5\n"
        "search,search (1016 episodes): `poly`,1016,675.3,all,s,hierarchical,-0.0106,-0.0225,0.00154,ties,50\n"
    )
    networks = [f"net_{i}" for i in range(10)]
    tuned, search = policies.verdicts_from_report(path, networks)
    assert tuned.against == "tuned grid cell c (train split)"
    assert (tuned.difference, tuned.low, tuned.high) == (1.64, 0.5, 2.8)
    assert (tuned.seeds, tuned.verdict, tuned.interval, len(tuned.networks)) == (5, "wins", "hierarchical", 10)
    assert (search.difference, search.low, search.high, search.verdict) == (-1.06, -2.25, 0.15, "ties")


def test_the_card_states_the_spread_it_expects_across_machines():
    """The shipped card's first verdict, as the development machine and another CPU measured it (README)."""
    shipped = policies.card("mnist1d_mlp@0.01")
    first = shipped.verdicts[0]
    runs = {run.machine: run for run in shipped.across_machines}
    dev = runs["development machine, 2-core CPU"]
    assert (dev.difference, dev.low, dev.high, dev.verdict) == (first.difference, first.low, first.high, first.verdict)
    other = runs["another 2-core CPU"]
    assert (other.difference, other.low, other.high, other.verdict, other.runs) == (2.88, 1.64, 4.07, "wins", 2)
    assert shipped.machine_spread == pytest.approx(2.88 - 2.38)
    assert {run.verdict for run in shipped.across_machines} == {first.verdict}  # digits move, the verdict does not
    text = shipped.text()
    assert "another 2-core CPU: +2.88 [+1.64, +4.07], wins (2 runs, identical)" in text
    assert "expect this difference to move by about 0.50 points" in text
    assert policies.Card.from_json(shipped.to_json()) == shipped


def test_a_card_without_machines_shows_no_spread_and_a_bad_run_is_refused():
    card = policies.Card("tiny@0.2", "tiny", 0.2, ("mlp_8",), "cubic", 10, 1.0, 0, "t", "r", (verdict(),))
    assert card.machine_spread == 0.0 and "Across machines" not in card.text()
    with pytest.raises(ValueError, match=r"across_machines\['x'\]\.difference=5\.0 is not allowed"):
        policies.MachineRun("x", 5.0, 0.5, 2.0, "wins")
    with pytest.raises(ValueError, match=r"across_machines\['x'\]\.verdict='won' is not allowed"):
        policies.MachineRun("x", 1.0, 0.5, 2.0, "won")
