"""The base pipeline end to end on a small config: pretrain → factorize → heal → INT8 → bundle."""

import time

import pytest

from fedlora.bundle import load_base_model, read_base_bundle
from fedlora.compress import DENSE, FACTORIZED, FACTORIZED_INT8, HEALED, HEALED_INT8, CompressConfig, build_base
from fedlora.metrics import evaluate
from fedlora.pretrain import PretrainConfig
from fedlora.rank import RankRule
from fedlora.tasks.registry import load_task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")  # its own, not the suite's shared bases: a cold build
    task = load_task("digits", num_clients=4, seed=0)
    config = CompressConfig(rank=RankRule("budget", 0.5), heal_steps=40, calibration_batches=4)
    started = time.perf_counter()
    result = build_base(task, PretrainConfig(steps=150), config, seed=0, cache=cache)
    return task, config, cache, result, time.perf_counter() - started


def test_every_stage_is_measured_and_the_bundle_is_what_was_measured(built):
    task, _, _, result, seconds = built
    assert list(result.metrics) == [DENSE, FACTORIZED, FACTORIZED_INT8, HEALED, HEALED_INT8]
    assert seconds < 60
    loaded = load_base_model(read_base_bundle(result.bundle.path, expected_id=result.bundle.id), task)
    assert evaluate(loaded, task.public().test) == pytest.approx(result.metrics[HEALED_INT8], abs=1e-6)
    assert all(0.4 <= layer.factorized_params / layer.dense_params <= 0.5 for layer in result.layers)


def test_the_base_is_built_once_then_read_from_the_cache(built):
    task, config, cache, result, _ = built
    again = build_base(task, PretrainConfig(steps=150), config, seed=0, cache=cache)
    assert again.cached and again.bundle.id == result.bundle.id and again.metrics == result.metrics
    other = build_base(task, PretrainConfig(steps=150), CompressConfig(rank=RankRule("budget", 0.25), heal_steps=0, calibration_batches=4), seed=0, cache=cache)
    assert not other.cached and other.bundle.id != result.bundle.id
    assert FACTORIZED_INT8 in other.metrics and HEALED not in other.metrics
