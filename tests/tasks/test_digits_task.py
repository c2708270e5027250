"""digits: a fixed public split, Dirichlet-skewed clients, each seeing through its own lens."""

import json

import numpy as np
import pytest
import torch

from fedlora.errors import FedloraError
from fedlora.tasks import load_task


@pytest.fixture(scope="module")
def task():
    return load_task("digits")


def test_defaults(task):
    assert task.num_clients == 20
    assert task.describe().startswith("digits (20 clients")
    assert json.loads(json.dumps(task.config))["alpha"] == 0.5


def test_no_example_is_used_twice(task):
    parts = [task.client_indices(k) for k in range(task.num_clients)] + [task.public_indices()]
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined)) == 1797  # disjoint, and every image is used


def test_public_is_a_fifth_untransformed_and_independent_of_seed(task):
    other = load_task("digits", num_clients=5, seed=3)
    assert np.array_equal(other.public_indices(), task.public_indices())
    public = task.public()
    assert 0.19 < (len(public.train) + len(public.test)) / 1797 < 0.21
    assert public.train.inputs.min() >= 0 and public.train.inputs.max() <= 1
    # untransformed: the pixels are the dataset's own 0..16 counts over 16
    assert torch.equal(public.train.inputs * 16, (public.train.inputs * 16).round())


def test_same_seed_gives_identical_tensors_and_another_seed_another_split(task):
    again = load_task("digits", seed=0)
    for k in (0, 19):
        a, b = task.client(k), again.client(k)
        assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.test.targets, b.test.targets)
    other = load_task("digits", seed=1)
    assert not np.array_equal(other.client_indices(0), task.client_indices(0))


def test_each_client_has_its_own_lens_and_label_mix(task):
    angles = [task.lens(k).degrees for k in range(task.num_clients)]
    assert len(set(angles)) == task.num_clients and max(np.abs(angles)) <= 45
    mixes = [np.bincount(task.client(k).train.targets, minlength=10) for k in range(task.num_clients)]
    assert np.mean([mix.max() / mix.sum() for mix in mixes]) > 0.25  # IID would be ~0.1


def test_client_sets_hold_rotated_images_split_80_20(task):
    partition = task.client(3)
    n = len(partition.train) + len(partition.test)
    assert n == len(task.client_indices(3)) >= 10
    assert len(partition.test) == max(1, round(0.2 * n))
    assert partition.train.inputs.shape[1:] == (64,)


def test_model_shapes_and_targets(task):
    model = task.build_model()
    assert model(task.client(0).train.inputs[:5]).shape == (5, 10)
    assert sum(p.numel() for p in model.parameters()) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    import re

    assert [n for n, _ in model.named_modules() if re.search(task.default_targets, n)] == ["fc1", "fc2"]


def test_too_many_clients_is_a_user_error():
    with pytest.raises(FedloraError, match="at least 10 images.*synthetic"):
        load_task("digits", num_clients=500)


def test_bad_alpha_is_rejected():
    with pytest.raises(FedloraError, match="alpha=0.0 must be positive"):
        load_task("digits", alpha=0)
