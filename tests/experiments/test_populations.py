"""Held-out populations: sizes, never in training, deterministic, within their ranges and cost, and they fit."""

import pytest
import torch

from sparsity_gym.datasets import load_dataset
from sparsity_gym.env.tasks import get_task
from sparsity_gym.experiments import populations
from sparsity_gym.experiments.families import get_family
from sparsity_gym.experiments.populations import (
    Population,
    available_populations,
    comparison_family,
    get_population,
    network_macs,
)
from sparsity_gym.models.zoo import build_network

TASKS = ("digits", "mnist1d_cnn", "mnist1d_mlp", "mnist5k_mlp")


def _sizes(spec):
    return spec.kwargs.get("widths", spec.kwargs.get("channels"))


def test_every_named_task_has_a_population():
    assert set(TASKS) <= set(available_populations())


@pytest.mark.parametrize("task", TASKS)
def test_population_is_large_distinct_unseen_and_in_range(task):
    population, t = get_population(task), get_task(task)
    members = population.members()
    names = [s.name for s in members]
    assert len(members) == population.size >= 8
    assert len(set(names)) == len(names)
    assert not set(names) & set(t.train)
    assert names[: len(t.heldout)] == list(t.heldout)  # the named held-out networks first
    cap = population.max_cost * max(network_macs(n, population.input_shape) for n in t.heldout)
    for spec in population.generated():
        assert spec.network == population.kind
        assert population.depths[0] <= len(_sizes(spec)) <= population.depths[1]
        assert set(_sizes(spec)) <= set(population.sizes)
        assert network_macs(spec, population.input_shape) <= cap


@pytest.mark.parametrize("task", TASKS)
def test_every_member_builds_and_fits_the_task_dataset(task):
    population = get_population(task)
    data = load_dataset(get_task(task).dataset)
    assert tuple(data.input_shape) == tuple(population.input_shape)
    assert data.num_classes == population.num_classes
    for spec in population.members():
        net = build_network(spec.network, data.input_shape, data.num_classes, dict(spec.kwargs))
        with torch.no_grad():
            out = net(data.train_x[:4])
        assert out.shape == (4, data.num_classes) and torch.isfinite(out).all()


def test_populations_are_deterministic_and_differ_by_task():
    first = {t: get_population(t).members() for t in TASKS}
    populations._members.cache_clear()
    assert {t: get_population(t).members() for t in TASKS} == first
    again = Population("mnist1d_mlp", "mlp", 10, (1, 5), (64, 96, 128, 192, 256, 384, 512), (1, 40))
    assert again.members() == first["mnist1d_mlp"]  # the same settings draw the same networks
    other = Population("mnist1d_mlp", "mlp", 10, (1, 5), (64, 96, 128, 192, 256, 384, 512), (1, 40), seed=1)
    assert other.generated() != first["mnist1d_mlp"][2:]


def test_network_macs_match_a_hand_count():
    assert network_macs("mlp_64x32", (1, 40)) == 40 * 64 + 64 * 32 + 32 * 10
    # cnn1d: kernel 5, "same" length, max-pool of 2 after each block while the length is at least 4
    conv = 1 * 8 * 5 * 40 + 8 * 16 * 5 * 20
    assert network_macs("cnn1d_8x16", (1, 40)) == conv + 16 * 10 * 10
    # cnn: 3x3 "same" convs, a 2x2 pool after the first
    assert network_macs("cnn_4x8", (1, 8, 8)) == 1 * 4 * 9 * 64 + 4 * 8 * 9 * 16 + 8 * 16 * 10


def test_bad_populations_are_refused():
    with pytest.raises(ValueError, match="size=4"):
        Population("mnist1d_mlp", "mlp", 4, (1, 2), (64,), (1, 40))
    with pytest.raises(ValueError, match="kind="):
        Population("mnist1d_mlp", "rnn", 8, (1, 2), (64,), (1, 40))
    narrow = Population("mnist1d_mlp", "mlp", 8, (1, 1), (64, 96), (1, 40))  # two MLPs exist: not 6
    with pytest.raises(ValueError, match="only 2 networks"):
        narrow.members()


def test_comparison_family_holds_the_population_out_and_keeps_the_train_split():
    named = comparison_family("mnist1d_mlp", "named")
    assert named == get_family("mnist1d_mlp")
    view = comparison_family("mnist1d_mlp", "population")
    assert view.name == "mnist1d_mlp:population"
    assert view.train == named.train
    assert view.heldout == get_population("mnist1d_mlp").members()
    assert str(len(view.heldout)) in view.description
    with pytest.raises(ValueError, match="family='mlp'"):
        comparison_family("mlp", "population")
    with pytest.raises(ValueError, match="heldout='all'"):
        comparison_family("mnist1d_mlp", "all")


def test_command_line_names_the_population_and_refuses_a_family_without_one():
    from agents.settings.command_line import parse_args
    from agents.settings.train_config import TrainConfig

    cfg = parse_args(["--task", "mnist1d_cnn", "--heldout", "population"])
    assert (cfg.heldout, cfg.family) == ("population", "mnist1d_cnn")
    assert parse_args(["--task", "mnist1d_cnn"]).heldout == "named"
    with pytest.raises(ValueError, match="heldout='population' is not allowed for family='mlp'"):
        TrainConfig(heldout="population")
