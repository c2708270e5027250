"""synthetic: FedProx's Synthetic(α, β), generated lazily, one independent stream per client."""

import time

import numpy as np
import pytest
import torch

from fedlora.errors import FedloraError
from fedlora.tasks import load_task
from fedlora.tasks.synthetic import MIN_EXAMPLES, generate_client


def test_ten_thousand_clients_construct_fast_and_the_last_one_works():
    start = time.perf_counter()
    task = load_task("synthetic", num_clients=10_000)
    assert time.perf_counter() - start < 0.1
    partition = task.client(9999)
    assert partition.name == "synthetic:9999"
    assert len(partition.train) + len(partition.test) >= MIN_EXAMPLES
    with pytest.raises(FedloraError, match="out of range"):
        task.client(10_000)


def test_a_client_does_not_depend_on_the_federation_size():
    small, large = load_task("synthetic", num_clients=3), load_task("synthetic", num_clients=1000)
    assert torch.equal(small.client(2).train.inputs, large.client(2).train.inputs)


def test_same_seed_gives_identical_tensors_and_another_seed_other_data():
    a, b, c = (load_task("synthetic", num_clients=4, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.client(1).train.inputs, b.client(1).train.inputs)
    assert torch.equal(a.public().test.targets, b.public().test.targets)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not torch.equal(a.client(1).train.inputs[0], c.client(1).train.inputs[0])


def test_clients_and_public_share_no_example():
    task = load_task("synthetic", num_clients=5)
    rows = [task.client(k).train.inputs for k in range(5)] + [task.public().train.inputs]
    joined = torch.cat(rows).numpy()
    assert len(np.unique(joined, axis=0)) == len(joined)


def test_generator_follows_the_paper():
    x, y = generate_client(np.random.default_rng(0), alpha=1.0, beta=1.0)
    assert x.shape[1] == 60 and x.dtype == np.float32 and y.dtype == np.int64
    assert len(x) >= MIN_EXAMPLES and set(np.unique(y)) <= set(range(10))
    # feature j has variance j^-1.2 around the client's mean: later features spread less
    big, _ = generate_client(np.random.default_rng(1), alpha=0.0, beta=0.0)
    spread = big.std(axis=0)
    assert spread[0] > spread[-1]


def test_alpha_and_beta_control_heterogeneity():
    # with α = β = 0 every client still differs (W_k, v_k ~ N(·, 1)), but far less in input means
    def mean_spread(beta):
        means = [generate_client(np.random.default_rng([0, k]), 0.0, beta)[0].mean(0) for k in range(20)]
        return np.std([m.mean() for m in means])

    assert mean_spread(5.0) > 2 * mean_spread(0.0)


def test_model_shapes_and_targets():
    task = load_task("synthetic")
    model = task.build_model()
    assert model(task.client(0).train.inputs[:7]).shape == (7, 10)
    assert sum(p.numel() for p in model.parameters()) == 60 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert task.config["alpha"] == 1.0 and task.config["hidden"] == [64, 64]


def test_bad_options_are_rejected():
    with pytest.raises(FedloraError, match="beta=-1.0"):
        load_task("synthetic", beta=-1)


def test_fingerprint_follows_the_data_not_the_model():
    assert load_task("synthetic", hidden="32").fingerprint == load_task("synthetic").fingerprint
    assert load_task("synthetic", alpha=0.5).fingerprint != load_task("synthetic").fingerprint
