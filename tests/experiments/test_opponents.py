"""The report's opponents: four rows with hierarchical intervals, verdicts and costs, from a hand-made result set."""

import json

import numpy as np
import pytest
from opponent_helpers import BASE, GRID, NETWORKS, RANDOM, RECORDS, SEARCH, SEEDS, results_for

from sparsity_gym.experiments.comparison_report import summarize
from sparsity_gym.experiments.opponents import (
    ORACLE_LABEL,
    AgentCost,
    Opponent,
    opponent_columns,
    opponent_rows,
    opponents_section,
    read_opponents,
    report_opponents,
    write_opponents,
)
from sparsity_gym.experiments.paired_intervals import hierarchical_improvement, hierarchical_interval, mean_interval


def _diffs(opponent):
    """``[network][seed]`` learned − opponent, from the hand-made table (the oracle: the better cell there)."""
    rows = []
    for k, _ in enumerate(NETWORKS):
        other = opponent[k] if isinstance(opponent, tuple) else BASE[opponent][k]
        rows.append(np.array([BASE["ppo"][k] + w - other for w in (0.002, -0.003, 0.004)]))
    return rows


ORACLE = tuple(max(BASE[c][k] for c in GRID) for k in range(3))


def _recorded():
    return [Opponent.from_json(r) for r in RECORDS]


def _opponents():
    return report_opponents(_recorded(), "cubic@0.75+lamp", {"mlp_a": GRID[0], "mlp_b": GRID[0], "mlp_c": GRID[1]})


def test_records_become_opponents_in_order_with_the_oracle_last():
    opponents = _opponents()
    assert [o.name for o in opponents] == ["tuned", "search", "random", "oracle"]
    assert [o.policy for o in opponents[:3]] == ["cubic@0.75+lamp", SEARCH, RANDOM]
    assert opponents[-1].label == ORACLE_LABEL and opponents[-1].upper_bound
    assert [o.cost_text() for o in opponents] == [
        "12 episodes, 3 s", "30 episodes, 12 s", "30 episodes, 10 s", "none (chosen on the test results)"
    ]  # fmt: skip
    # absent opponents are left out; the tuned cell stays (its cost unknown) as long as there is one
    only = report_opponents([], "cubic@0.75+lamp")
    assert [(o.name, o.cost_text()) for o in only] == [("tuned", "n/a")]
    assert [o.name for o in report_opponents(_recorded(), None)] == ["search", "random"]  # no reference: no tuned
    explicit = Opponent.from_json({"name": "search", "label": "TPE", "policy": "poly[s=0.1]"})
    assert (explicit.policy, explicit.title) == ("poly[s=0.1]", "TPE")
    # the search's own records: the label is the policy's name in the results, the best point printed beside it
    record = {"name": "search", "label": SEARCH, "episodes": 30, "seconds": None, "best": "poly[s=0.1]", "budget": 32}
    [searched] = report_opponents([Opponent.from_json(record)], None)
    assert searched.policy == SEARCH and searched.title == f"{SEARCH}: `poly[s=0.1]`"
    assert searched.cost_text() == "30 episodes"


def test_the_opponents_file_merges_by_name_and_reads_earlier_files(tmp_path):
    assert read_opponents(tmp_path) == {}
    tuned = Opponent("tuned", "cubic@0.9+erk", 48, None, "cubic@0.9+erk")
    write_opponents(tmp_path, [tuned])
    search = Opponent("search", "search (8 episodes)", 8, 1.5, "poly[s=0,e=0.9,p=3]+erk", 8)
    write_opponents(tmp_path, [search])
    again = Opponent("tuned", "cubic@0.9+erk", 48, 12.0, "cubic@0.9+erk")
    write_opponents(tmp_path, [again])
    assert list(read_opponents(tmp_path).values()) == [again, search]
    keys = ["name", "label", "episodes", "seconds", "best", "budget"]  # the search's records as it always wrote them
    assert [list(r) for r in json.loads((tmp_path / "opponents.json").read_text())] == [keys, keys]
    # a record written by hand, or by an earlier version: no label, its own policy, keys this version ignores
    earlier = [
        {"name": "tuned", "episodes": 12, "seconds": 3.1},
        {"name": "random", "label": "random (6 episodes)", "policy": "linear+uniform", "episodes": 6, "note": "x"},
    ]
    (tmp_path / "opponents.json").write_text(json.dumps(earlier))
    read = read_opponents(tmp_path)
    assert (read["tuned"].label, read["tuned"].policy, read["tuned"].seconds) == ("tuned", "tuned", 3.1)
    assert (read["random"].title, read["random"].policy) == ("random (6 episodes)", "linear+uniform")
    write_opponents(tmp_path, [])
    assert read_opponents(tmp_path) == read and "policy" in (tmp_path / "opponents.json").read_text()


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ({"name": "search"}, "expected a list of records"),
        ([{"label": "x"}], "expected a record with a name"),
        (["search"], "expected a record with a name"),
        ([{"name": "search"}, {"name": "search"}], "one record per opponent"),
        ([{"name": "search", "episodes": -1}], r"opponents\['search'\].episodes=-1"),
        ([{"name": "search", "episodes": 2.5}], "episodes=2.5"),
        ([{"name": "search", "seconds": "long"}], "seconds"),
    ],
)
def test_bad_records_are_refused_naming_the_field(tmp_path, records, match):
    (tmp_path / "opponents.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=match):
        read_opponents(tmp_path)


def test_section_has_four_rows_with_hierarchical_intervals_verdicts_and_costs():
    results, opponents = results_for(), _opponents()
    agent = AgentCost(episodes=100, seconds=250.0, reference_episodes=8, first_win=(40, 101.0), evaluations=5)
    lines = opponents_section(results, "magnitude", 0.01, opponents, agent)
    text = "\n".join(lines)
    assert "3 heldout networks × 3 seeds" in text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    expected = {
        "tuned grid cell `cubic@0.75+lamp` (train split)": ("cubic@0.75+lamp", "12 episodes, 3 s"),
        SEARCH: (SEARCH, "30 episodes, 12 s"),
        RANDOM: (RANDOM, "30 episodes, 10 s"),
        ORACLE_LABEL: (ORACLE, "none (chosen on the test results)"),
    }
    for label, (opponent, cost) in expected.items():
        interval = hierarchical_interval(_diffs(opponent)).scaled(100)
        cells = rows[label].split(" | ")
        assert cells[1] == cost
        assert cells[3] == interval.text()
        assert cells[4] == f"**{interval.verdict}**"
    # random search is far below: a win; the others are mixed over the networks: the interval says so
    assert "**wins**" in rows[RANDOM]
    assert hierarchical_interval(_diffs(RANDOM)).low > 0
    assert (
        hierarchical_interval(_diffs("cubic@0.75+lamp")).low < 0 < hierarchical_interval(_diffs("cubic@0.75+lamp")).high
    )
    learned = rows["**learned** `ppo`"]
    assert "100 training + 8 reference episodes, 250 s" in learned
    assert "first beat the reference after 40 episodes (101 s)" in learned
    # the per-network table names the oracle's cell on each network
    assert f"(`{GRID[1]}`)" in next(line for line in lines if line.startswith("| mlp_c |"))


def test_on_named_networks_the_seeds_are_resampled_and_the_networks_held_fixed():
    results, opponents = results_for(), _opponents()
    lines = opponents_section(results, "magnitude", 0.01, opponents, population=False)
    assert "the networks held fixed" in "\n".join(lines) and "hierarchical" not in "\n".join(lines)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    want = mean_interval(_diffs(RANDOM)).scaled(100)
    assert rows[RANDOM].split(" | ")[3] == want.text()
    table = opponent_rows(results, "magnitude", 0.01, opponents, population=False)
    assert {r["interval"] for r in table} == {"seeds"} and sum(r["network"] == "all" for r in table) == 4
    # two named networks, one seed each, both ahead: resampling the two networks would call it a win; the
    # seeds within them give no interval, so it ties (as the run's headline says)
    one_seed = [r for r in results if r.seed == SEEDS[0] and r.network != NETWORKS[2]]
    hand_picked = opponents_section(one_seed, "magnitude", 0.01, opponents[:1], population=False)
    tuned = next(line for line in hand_picked if line.startswith("| tuned grid cell"))
    assert "[no interval: n=2]" in tuned and "**ties**" in tuned
    drawn = opponents_section(one_seed, "magnitude", 0.01, opponents[:1], population=True)
    assert "**wins**" in next(line for line in drawn if line.startswith("| tuned grid cell"))


def test_never_beat_and_no_evaluation_read_differently():
    assert AgentCost(episodes=10, seconds=5.0, evaluations=3).cost_text().endswith(": never (3 evaluations)")
    assert "n/a (no periodic evaluation" in AgentCost(episodes=10).cost_text()
    section = opponents_section(results_for(), "magnitude", 0.01, _opponents(), AgentCost(episodes=10, evaluations=3))
    assert "never" in "\n".join(section)
    assert opponents_section([r for r in results_for() if r.policy != "ppo"], "magnitude", 0.01, _opponents()) == []


def test_csv_rows_per_network_and_pooled():
    results, opponents = results_for(), _opponents()
    rows = opponent_columns(summarize(results), results, opponents)
    learned = {r["network"]: r for r in rows if r["policy"] == "ppo"}
    for k, net in enumerate(NETWORKS):
        diff = _diffs(SEARCH)[k]
        assert learned[net]["vs_search_diff_mean"] == pytest.approx(diff.mean())
        assert learned[net]["vs_search_episodes"] == 30 and learned[net]["vs_search_seconds"] == 12.4
        assert learned[net]["vs_oracle_policy"] == (GRID[1] if net == "mlp_c" else GRID[0])
        assert learned[net]["vs_oracle_episodes"] == ""
    assert all(r["vs_search_diff_mean"] == "" for r in rows if r["policy"] != "ppo")
    table = opponent_rows(results, "magnitude", 0.01, opponents)
    pooled = {r["opponent"]: r for r in table if r["network"] == "all"}
    assert set(pooled) == {"tuned", "search", "random", "oracle"}
    want = hierarchical_interval(_diffs(RANDOM))
    assert (pooled["random"]["diff_ci_low"], pooled["random"]["diff_ci_high"]) == pytest.approx((want.low, want.high))
    luck = np.array([0.0, 0.013, -0.007])
    learned_runs = [BASE["ppo"][k] + luck + np.array([0.002, -0.003, 0.004]) for k in range(3)]
    random_runs = [BASE[RANDOM][k] + luck for k in range(3)]
    p = hierarchical_improvement(learned_runs, random_runs)
    assert pooled["random"]["p_improvement_mean"] == pytest.approx(p.estimate) == 1.0
    assert sum(r["network"] != "all" for r in table) == 4 * 3
