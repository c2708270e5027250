"""The planner predicts what a real training step allocates, across the levers it moves."""

import copy

import pytest

from fedlora.adapters import AdapterConfig
from fedlora.client.memory_probe import measure_training
from fedlora.client.device_plan import planned_model
from fedlora.client.plan_search import PlanRequest
from fedlora.train import TrainConfig

CONFIGS = {  # id: (variant, targets, rank, micro-batch, optimizer, checkpointing); batch 8
    "all layers, rank 4, one pass, adam": ("lora", None, 4, 8, "adam", False),
    "all layers, rank 8, micro-batch 2, sgd": ("lora", None, 8, 2, "sgd", False),
    "top block, rank 4, micro-batch 4, momentum": ("lora", r"blocks\.1\.", 4, 4, "momentum", False),
    "top layer, rank 1, micro-batch 1, sgd": ("lora", r"blocks\.1\.ffn\.fc2$", 1, 1, "sgd", False),
    "ffn layers, rank 16, micro-batch 4, adam": ("lora", r"ffn", 16, 4, "adam", False),
    "all layers, checkpointing, micro-batch 4, adam": ("lora", None, 4, 4, "adam", True),
    "lora-fa, all layers, micro-batch 2": ("lora-fa", None, 4, 2, "adam", False),
    "core, top block, checkpointing": ("core", r"blocks\.1\.", 4, 8, "momentum", True),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_prediction_within_15_percent_of_measured(lm_planner, small_lm, roomy, config):
    variant, targets, rank, micro, optimizer, checkpointing = config
    model, data = small_lm
    request = PlanRequest(
        AdapterConfig(variant=variant, rank=rank, targets=targets),
        TrainConfig(batch_size=8, micro_batch=micro, optimizer=optimizer, checkpointing=checkpointing),
    )
    plan = lm_planner.estimate(roomy, request)
    measured = measure_training(planned_model(copy.deepcopy(model), plan), data, plan.train_config)
    predicted = plan.breakdown
    assert predicted.host_bytes == pytest.approx(measured.peak_bytes, rel=0.15)
    # the components the planner computes from sizes are exact
    assert (predicted.adapter_bytes, predicted.gradient_bytes, predicted.optimizer_bytes) == (
        measured.adapter_bytes, measured.gradient_bytes, measured.optimizer_bytes,
    )  # fmt: skip
    assert predicted.activation_bytes == pytest.approx(measured.held_bytes, rel=0.05)
    assert measured.optimizer == optimizer and measured.passes == plan.train_config.accumulation


def test_activations_stop_at_the_lowest_adapter(lm_planner, roomy):
    """Nothing below the lowest adapter is kept: adapting the top layer keeps a fraction of
    what adapting every layer keeps, and the top block alone sits in between."""
    held = {
        targets: lm_planner.estimate(roomy, PlanRequest(AdapterConfig(targets=targets), TrainConfig(batch_size=4))).breakdown.activation_bytes
        for targets in (r"blocks\.1\.ffn\.fc2$", r"blocks\.1\.", None)
    }
    top, block, everything = held.values()
    assert top < block < everything
    assert block < 0.6 * everything
