"""Robust aggregation rules, on their own and in a poisoned federation."""

import numpy as np
import pytest

from fedlora.server.aggregation import weighted_mean_update, weighted_products
from fedlora.server.robust import combine, krum_choice
from fedlora.simulations.simulate import simulate

from poisoning import ATTACKERS, poisoning_mod  # the same attack as the norm bound's test


HONEST = [np.array([1.0, 2.0]), np.array([1.2, 1.8]), np.array([0.8, 2.2]), np.array([1.1, 2.1]), np.array([0.9, 1.9])]
ATTACK = [np.array([1000.0, -1000.0]), np.array([3e38, 3e38])]


@pytest.mark.parametrize("rule", ["median", "trimmed"])
def test_coordinate_rules_ignore_a_minority_of_outliers_and_weights(rule):
    combined = combine(HONEST + ATTACK, [1.0] * 5 + [1e12, 1e12], rule)
    assert np.all(np.abs(combined - np.array([1.0, 2.0])) < 0.25), combined


def test_the_mean_is_the_weighted_mean():
    np.testing.assert_allclose(combine([np.array([0.0]), np.array([3.0])], [1.0, 2.0], "mean"), [2.0])


def test_krum_chooses_an_honest_client():
    clients = [{"t": value} for value in HONEST + ATTACK]
    assert krum_choice(clients) < len(HONEST)


def test_krum_over_updates_and_products_keeps_heterogeneous_layers():
    updates = [{"a": value, "b": value * 2} for value in HONEST] + [{"a": ATTACK[0], "b": ATTACK[0]}]
    result = weighted_mean_update({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)}, updates, [1.0] * 6, "krum")
    assert np.all(np.abs(result["a"]) < 3) and np.all(np.abs(result["b"]) < 5)
    products = [{"x": value.reshape(1, 2)} for value in HONEST] + [{"x": ATTACK[1].reshape(1, 2), "only-mine": np.ones((1, 1))}]
    combined = weighted_products(products, [1.0] * 6, "krum")
    assert np.all(np.abs(combined["x"]) < 3) and set(combined) == {"x", "only-mine"}


def test_the_default_mean_is_unchanged():
    updates = [{"a": np.array([1.0, 2.0], np.float32)}, {"a": np.array([3.0, 4.0], np.float32)}]
    result = weighted_mean_update({"a": np.zeros(2, np.float32)}, updates, [1.0, 3.0])
    np.testing.assert_array_equal(result["a"], np.array([2.5, 3.5], np.float32))


@pytest.fixture(scope="module")
def clean(small_settings, small_base, tmp_path_factory):
    settings = small_settings.replace(clients=10, rounds=3, fraction=1.0, personal=True, out=str(tmp_path_factory.mktemp("clean")))
    return settings, simulate(settings, cpus=2)


@pytest.mark.e2e
@pytest.mark.parametrize("rule", ["median", "trimmed", "krum"])
def test_a_robust_rule_alone_survives_a_fifth_of_poisoners(clean, rule, tmp_path):
    settings, clean_summary = clean
    assert len(ATTACKERS) == 2  # of 10 clients
    # no norm bound: the rule alone has to hold
    poisoned = simulate(settings.replace(robust=rule, norm_bound=0.0, out=str(tmp_path)), cpus=2, client_mods=[poisoning_mod])
    assert poisoned["status"] == "completed"
    assert poisoned["final"]["personal"]["mean"] >= clean_summary["final"]["personal"]["mean"] - 0.02, (rule, poisoned["final"], clean_summary["final"])
