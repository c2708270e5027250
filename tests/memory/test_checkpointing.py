"""Activation checkpointing: the same gradients, less memory kept for backward."""

import copy

import pytest
import torch

from fedlora.adapters import AdapterConfig, attach_adapters
from fedlora.client.memory_probe import measure_training
from fedlora.errors import FedloraError
from fedlora.metrics import cross_entropy
from fedlora.tasks.base import manual_seed_generator
from fedlora.train import TrainConfig, activation_checkpointing, checkpoint_units, train


def _grads(model, inputs, targets):
    model.zero_grad(set_to_none=True)
    cross_entropy(model(inputs), targets).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_same_gradients_and_forward_restored(small_lm):
    model, data = small_lm
    model = copy.deepcopy(model)
    attach_adapters(model, AdapterConfig(rank=4))
    for layer in model.modules():  # non-zero B, so every adapter gets a gradient through the others
        if hasattr(layer, "lora_B"):
            torch.nn.init.normal_(layer.lora_B, std=0.1)
    inputs, targets = data.sample(4, manual_seed_generator(3))
    plain = _grads(model, inputs, targets)
    with activation_checkpointing(model):
        assert all("forward" in unit.__dict__ for unit in checkpoint_units(model))
        recomputed = _grads(model, inputs, targets)
    assert not any("forward" in unit.__dict__ for unit in checkpoint_units(model))
    assert plain.keys() == recomputed.keys()
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=1e-5, atol=1e-7)


def test_training_with_checkpointing_gives_the_same_loss_and_keeps_less(small_lm):
    model, data = small_lm
    model = copy.deepcopy(model)
    attach_adapters(model, AdapterConfig(rank=4))
    config = TrainConfig(steps=2, batch_size=8, optimizer="sgd")
    losses = [train(copy.deepcopy(model), data, config.__class__(**{**config.__dict__, "checkpointing": c}), seed=5) for c in (False, True)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    plain, checkpointed = (measure_training(model, data, TrainConfig(batch_size=8, checkpointing=c)) for c in (False, True))
    assert checkpointed.held_bytes < 0.5 * plain.held_bytes
    assert checkpointed.peak_bytes < plain.peak_bytes


def test_models_without_blocks_cannot_checkpoint(small_mlp):
    model, data = small_mlp
    model = copy.deepcopy(model)
    attach_adapters(model, AdapterConfig(rank=2))
    with pytest.raises(FedloraError, match="activation checkpointing needs repeated blocks .* MLP has none"):
        train(model, data, TrainConfig(steps=1, batch_size=4, checkpointing=True), seed=0)
