"""textlm over the standard library: disjoint, deterministic, different clients, a held-out tail."""

import itertools
import json
import time

import numpy as np
import pytest
import torch

from fedlora.errors import FedloraError
from fedlora.tasks import load_task
from fedlora.tasks.corpus import stdlib_documents
from fedlora.tasks.textlm import TextLMTask
from fedlora.tasks.vocab import VOCAB_SIZE, encode


@pytest.fixture(scope="module")
def task():
    return load_task("textlm")


def unigrams(tokens) -> np.ndarray:
    counts = np.bincount(np.asarray(tokens), minlength=VOCAB_SIZE).astype(np.float64)
    return counts / counts.sum()


def total_variation(p, q) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def test_default_is_every_eligible_module_not_public(task):
    assert task.num_clients >= 50  # ~110 on CPython 3.11
    names = task.client_names + task.public_names
    assert len(set(names)) == len(names), "a module is both a client and public, or two clients"
    assert {"test", "idlelib", "ensurepip", "site-packages"}.isdisjoint(names)
    assert 0.15 < len(task.public_names) / len(names) < 0.30


def test_clients_and_public_share_no_file(task):
    documents = {d.name: d for d in stdlib_documents(task.options.max_chars)}
    files = [f for name in task.client_names + task.public_names for f, _ in documents[name].files]
    assert len(files) == len(set(files))
    assert not any("/test/" in f or "/tests/" in f or f.startswith("test/") for f in files)


def test_public_split_does_not_depend_on_seed_or_client_count(task):
    assert load_task("textlm", num_clients=3, seed=7).public_names == task.public_names


def test_same_seed_gives_identical_partitions_and_another_seed_another_selection():
    first, again = load_task("textlm", num_clients=5, seed=1), load_task("textlm", num_clients=5, seed=1)
    assert first.client_names == again.client_names
    for k in range(5):
        assert torch.equal(first.client(k).train.tokens, again.client(k).train.tokens)
        assert torch.equal(first.client(k).test.tokens, again.client(k).test.tokens)
    assert load_task("textlm", num_clients=5, seed=2).client_names != first.client_names
    assert first.fingerprint == again.fingerprint


def test_client_tests_on_the_tail_of_its_own_text(task):
    partition = task.client(0)
    document = next(d for d in stdlib_documents(task.options.max_chars) if d.name == task.client_names[0])
    assert partition.name == f"stdlib:{document.name}"
    whole = torch.cat([partition.train.tokens, partition.test.tokens])
    assert torch.equal(whole, torch.from_numpy(encode(document.text)).long())
    assert len(whole) <= task.options.max_chars + 1000  # a cut document (tabs may add a few)
    assert len(partition.test.tokens) == int(len(whole) * 0.15)


def test_clients_character_distributions_really_differ(task):
    """Two clients differ far more than two halves of one client.

    The halves interleave 512-character blocks, so they differ by sampling noise only and
    not by drift along a module (e.g. ``locale`` ends in a long alias table).
    """
    tokens = [task.client(k).train.tokens.numpy() for k in range(0, task.num_clients, 3)]
    between = [total_variation(unigrams(a), unigrams(b)) for a, b in itertools.combinations(tokens, 2)]
    blocks = [t[: len(t) // 512 * 512].reshape(-1, 512) for t in tokens]
    within = [total_variation(unigrams(b[0::2].ravel()), unigrams(b[1::2].ravel())) for b in blocks]
    assert np.median(between) > 2 * np.median(within)


def test_partitions_feed_the_model():
    task = load_task("textlm", num_clients=2, context=16, d_model=32, n_heads=2, d_ff=64, n_layers=1)
    model = task.build_model()
    inputs, targets = task.client(1).train.sample(4, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (4, 16)
    assert model(inputs).shape == (4, 16, VOCAB_SIZE)
    assert len(task.public().test) > 0


def test_config_is_json_and_holds_every_model_hyper_parameter(task):
    config = json.loads(json.dumps(task.config))
    assert config["task"] == "textlm" and config["num_clients"] == task.num_clients
    for name in ("context", "d_model", "n_layers", "n_heads", "d_ff"):
        assert name in config
    assert sum(p.numel() for p in task.build_model().parameters()) == 116_705


def test_construction_is_fast_once_the_corpus_is_read(task):
    start = time.perf_counter()
    load_task("textlm")
    assert time.perf_counter() - start < 0.5


def test_more_clients_than_modules_says_how_many_exist_and_what_to_do(task):
    with pytest.raises(FedloraError, match=rf"has {task.num_clients} client documents.*--corpus.*synthetic"):
        load_task("textlm", num_clients=task.num_clients + 1)


def test_client_index_out_of_range_is_a_user_error(task):
    with pytest.raises(FedloraError, match="out of range"):
        task.client(task.num_clients)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_heads": 3}, "divisible by n_heads"),
        ({"contxt": 32}, "no option 'contxt'.*context=64"),
        ({"context": "wide"}, "whole number"),
        ({"min_chars": 100}, "too small.*at least 434"),
        ({"test_fraction": 0.9}, r"\(0, 0.5\]"),
    ],
)
def test_bad_options_are_rejected_with_the_fix(options, message):
    with pytest.raises(FedloraError, match=message):
        TextLMTask(**options)


def test_options_given_as_strings_are_converted():
    task = load_task("textlm", num_clients=2, context="32", test_fraction="0.2")
    assert task.config["context"] == 32 and task.config["test_fraction"] == 0.2
