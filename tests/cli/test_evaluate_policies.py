"""``evaluate``: any cell or static point as a baseline; a shipped policy against its card's cell, checked early."""

import dataclasses
from types import SimpleNamespace

import pytest
from cli_helpers import TINY_ARGS

import agents.run.train as train
from agents.reports.comparison import comparison_jobs
from agents.reports.tuned import card_reference
from agents.settings.command_line import parse_args
from sparsity_gym.experiments.families import get_family
from train_agent import main

STATIC = "poly[s=0.1,e=0.8,p=2.5]+erk[first=3]"
CARD = [
    *("evaluate", "--task", "mnist1d_mlp", "--target-density", "0.01", "--model", "mnist1d_mlp@0.01"),
    *("--opponent", "search", "--search-budget", "16", "--no-progress-bar", "--showcase"),
]


def test_policies_take_any_cell_or_static_point_beside_registered_names(tmp_path, capsys):
    cfg = parse_args(["evaluate", "--policies", "cubic", "cubic@0.75+erk", STATIC, "--run-dir", str(tmp_path)])
    assert cfg.baseline_names() == ("cubic", "cubic@0.75+erk", STATIC)
    family = get_family("mlp")
    jobs = comparison_jobs(cfg, family.heldout[:1], lambda spec: "heldout", None)
    played = {job.policy_name: job.config for job in jobs}
    assert set(played) == {"cubic", "cubic@0.75+erk", STATIC}
    assert played["cubic@0.75+erk"].allocation == "erk" and played["cubic"].allocation == "policy"
    assert played[STATIC].allocation == "erk"
    run = tmp_path / "run"
    args = ["evaluate", "--policies", "cubic@0.75+erk", STATIC, "--dry-run", "--run-dir", str(run), *TINY_ARGS]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"policies: cubic@0.75+erk, {STATIC}" in out and not run.exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [("cubic@2", "policies='cubic@2' is not allowed"), ("poly[s=9]+erk", "poly"), ("nonsense", "'nonsense'")],
)
def test_a_bad_policy_name_is_refused_naming_it(bad, message, tmp_path):
    with pytest.raises(ValueError, match="is not allowed") as err:
        parse_args(["evaluate", "--policies", bad, "--run-dir", str(tmp_path)])
    assert message in str(err.value)


def fake_tuning(best: str):
    def tune_run(cfg, run_dir):
        return SimpleNamespace(best=best)  # what the run reads of the table before the search

    return tune_run


class StopSearchError(Exception):
    """Raised by the patched search: the run got past the checks that depend on the tuning."""


def test_a_shipped_policy_plays_its_cards_cell_whatever_the_tuning_picks(tmp_path, monkeypatch):
    cfg = parse_args([*CARD, "--run-dir", str(tmp_path / "run")])
    assert card_reference(cfg) == "cubic@0.75+erk"
    assert card_reference(dataclasses.replace(cfg, reference="tuned")) is None
    seen = {}

    def search(cfg, run_dir):
        seen["allocation"] = cfg.env.allocation
        raise StopSearchError

    monkeypatch.setattr(train, "tune_run", fake_tuning("cubic@0.75+lamp"))  # float drift on another machine
    monkeypatch.setattr(train, "run_opponents", search)
    with pytest.raises(StopSearchError):
        train.run_evaluate(cfg)
    assert seen == {"allocation": "erk"}


def test_a_refusal_that_depends_on_the_tuning_comes_before_the_search(tmp_path, monkeypatch):
    cfg = parse_args([*CARD, "--reference", "tuned", "--run-dir", str(tmp_path / "run")])
    searched = []
    monkeypatch.setattr(train, "tune_run", fake_tuning("cubic@0.75+lamp"))
    monkeypatch.setattr(train, "run_opponents", lambda cfg, run_dir: searched.append(1))
    with pytest.raises(ValueError, match="allocation='lamp' is not allowed for this model; expected 'erk'"):
        train.run_evaluate(cfg)
    assert not searched
