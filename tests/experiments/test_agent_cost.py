"""The learned policy's cost part by part, and a search cut at its seconds (equal wall time), on synthetic records."""

import json

import pytest
from opponent_helpers import SEARCH, results_for

from sparsity_gym.experiments.agent_cost import AgentCost, AtSeconds, best_within_seconds
from sparsity_gym.experiments.opponents import Opponent, opponent_rows, opponents_section, read_opponents

# (point, mean validation accuracy, trial seconds) in trial order
TRIALS = [("a", 0.50, 10.0), ("b", 0.55, 12.0), ("a", 0.70, 9.0), ("c", 0.55, 20.0), ("d", 0.90, 30.0)]


def test_a_search_is_cut_where_its_seconds_would_pass_the_learned_policys():
    # 10 + 12 + 9 = 31 <= 40 < 51: three trials; "a"'s first value (0.50) counts, as the search keeps it
    at = best_within_seconds(TRIALS, 40.0, per_trial=4)
    assert (at.trials, at.spent, at.best, at.value, at.episodes) == (3, 31.0, "b", 0.55, 12)
    # exactly reaching the seconds counts the trial; the tie of "b" and "c" goes to the first
    assert best_within_seconds(TRIALS, 51.0).trials == 4 and best_within_seconds(TRIALS, 51.0).best == "b"
    assert best_within_seconds(TRIALS, 81.0).best == "d" and best_within_seconds(TRIALS, 81.0).episodes is None
    none = best_within_seconds(TRIALS, 5.0, per_trial=4)
    assert (none.trials, none.best, none.episodes) == (0, None, 0) and "no point yet" in none.text(None)
    with pytest.raises(ValueError, match="seconds=-1"):
        best_within_seconds(TRIALS, -1)


def test_the_cut_travels_in_opponents_json_and_reads_in_the_report(tmp_path):
    at = best_within_seconds(TRIALS, 40.0, per_trial=4)
    search = Opponent("search", SEARCH, 30, 81.0, "d", 30, at_seconds=at)
    (tmp_path / "opponents.json").write_text(json.dumps([search.to_json()]))
    back = read_opponents(tmp_path)["search"]
    assert back == search and back.at_seconds == at
    text = back.cost_text()
    assert text == "30 episodes, 81 s; in the learned policy's 40 s: 3 trials (12 episodes, 31 s), best `b`"
    final = Opponent("search", SEARCH, 30, 81.0, "b", 30, at_seconds=at)
    assert final.cost_text().endswith("best `b` (its final best)")
    rows = opponent_rows(results_for(), "magnitude", 0.01, [back])
    assert {(r["at_seconds"], r["at_seconds_trials"], r["at_seconds_best"]) for r in rows} == {(40.0, 3, "b")}
    (tmp_path / "opponents.json").write_text(json.dumps([{"name": "search", "at_seconds": {"seconds": 3}}]))
    with pytest.raises(ValueError, match=r"opponents\['search'\].at_seconds="):
        read_opponents(tmp_path)


def test_the_cost_column_says_which_parts_it_sums():
    cost = AgentCost(
        episodes=150,
        seconds=107.0,
        reference_episodes=16,
        reference_seconds=9.5,
        training_seconds=107.0,
        tuning_episodes=96,
        tuning_seconds=53.5,
        evaluation_episodes=24,
        evaluation_seconds=11.0,
        evaluations_run=3,
        evaluations=3,
        run_seconds=171.9,
    )
    text = cost.cost_text()
    assert text.startswith("150 training + 16 reference episodes, 107 s of the training phase")
    assert "(apart: the tuning 96 episodes, 54 s; 3 periodic evaluations 24 episodes, 11 s)" in text
    assert text.endswith("never (3 evaluations)")
    parts = cost.parts()
    assert parts["training"] == {"episodes": 150, "seconds": 107.0}
    assert parts["evaluations"] == {"episodes": 24, "seconds": 11.0, "count": 3}
    # the parts that ran one after another add up to no more than the whole run
    assert sum(parts[k]["seconds"] for k in ("training", "tuning", "evaluations")) <= cost.run_seconds
    # an older record: the whole run's seconds, said to include the tuning and the evaluations
    old = AgentCost(episodes=150, seconds=171.9).cost_text()
    assert "171.9" not in old and "172 s (the whole training run: tuning and periodic evaluations included)" in old
    row = next(
        line
        for line in opponents_section(results_for(), "magnitude", 0.01, [Opponent("search", SEARCH)], cost)
        if line.startswith("| **learned**")
    )
    assert "107 s of the training phase (apart: the tuning" in row


def test_at_seconds_record_round_trips():
    at = AtSeconds(120.0, 7, 118.2, "x", 0.61, 28)
    assert AtSeconds.from_json(at.to_json()) == at
    assert at.text("y") == "in the learned policy's 120 s: 7 trials (28 episodes, 118 s), best `x`"
