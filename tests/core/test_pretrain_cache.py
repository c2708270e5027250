"""The pretrained-model cache is hash-pinned: a damaged file is pretrained again, loudly."""

import logging

import pytest
import torch

from fedlora.pretrain import PretrainConfig, pretrained_model
from fedlora.tasks.registry import load_task

CONFIG = PretrainConfig(steps=3, batch_size=8)


@pytest.fixture(scope="module")
def task():
    return load_task("digits", num_clients=2, seed=0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:-20]),  # truncated
        lambda path: path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1])),  # one bit flipped
        lambda path: path.with_suffix(".sha256").unlink(),  # the pin lost
    ],
    ids=["truncated", "bit flipped", "pin missing"],
)
def test_a_damaged_cached_model_is_pretrained_again_and_said_so(task, tmp_path, caplog, damage):
    first, cached = pretrained_model(task, CONFIG, seed=0, cache=tmp_path)
    assert not cached
    again, cached = pretrained_model(task, CONFIG, seed=0, cache=tmp_path)
    assert cached  # intact: loaded
    (path,) = (tmp_path / "pretrained").glob("*.safetensors")
    damage(path)
    with caplog.at_level(logging.WARNING, logger="fedlora"):
        rebuilt, cached = pretrained_model(task, CONFIG, seed=0, cache=tmp_path)
    assert not cached and "pretraining it again" in caplog.text
    for name, value in first.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[name])  # deterministic: the same model
    assert pretrained_model(task, CONFIG, seed=0, cache=tmp_path)[1]  # and cached again, intact
