"""Dirichlet label skew: a disjoint cover with a minimum size, skewed when alpha is small."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlora.tasks.label_skew import dirichlet_label_skew

LABELS = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("alpha", [0.05, 0.5, 100.0])
def test_parts_are_disjoint_cover_everything_and_meet_the_minimum(alpha):
    parts = dirichlet_label_skew(LABELS, 40, alpha, np.random.default_rng(0), min_size=10)
    joined = np.concatenate(parts)
    assert len(joined) == len(LABELS) and len(np.unique(joined)) == len(LABELS)
    assert min(len(part) for part in parts) >= 10


def test_small_alpha_concentrates_labels_and_large_alpha_spreads_them():
    def dominant_share(alpha):
        parts = dirichlet_label_skew(LABELS, 10, alpha, np.random.default_rng(0), min_size=10)
        return np.mean([np.bincount(LABELS[part]).max() / len(part) for part in parts])

    assert dominant_share(0.1) > 0.5 > 0.2 > dominant_share(1000.0)


def test_same_generator_state_gives_the_same_split():
    first = dirichlet_label_skew(LABELS, 7, 0.5, np.random.default_rng(3), min_size=10)
    second = dirichlet_label_skew(LABELS, 7, 0.5, np.random.default_rng(3), min_size=10)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_impossible_minimum_is_rejected():
    with pytest.raises(ValueError):
        dirichlet_label_skew(LABELS, 101, 0.5, np.random.default_rng(0), min_size=10)


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=20, max_size=200),
    num_clients=st.integers(1, 10),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_partition_property(labels, num_clients, alpha, seed):
    labels = np.array(labels)
    min_size = len(labels) // (2 * num_clients)
    parts = dirichlet_label_skew(labels, num_clients, alpha, np.random.default_rng(seed), min_size)
    assert len(parts) == num_clients
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))
    assert all(len(part) >= min_size for part in parts)
