"""The planner's breakdown for a small model, against bytes computed by hand.

MLP 8 → fc1 (16×8, factorized at rank 4) → relu → fc2 (16×16, rank 4) → relu → head (4×16,
dense). A rank-2 lora adapter on fc2 only; batches of 4 examples (8 float32 features and
an int64 label each).
"""

import copy

import pytest

from fedlora.adapters import AdapterConfig
from fedlora.client.memory_probe import measure_training
from fedlora.client.device_plan import planned_model
from fedlora.client.plan_search import Planner, PlanRequest
from fedlora.tasks.base import manual_seed_generator
from fedlora.train import TrainConfig

MCU = "name=t,kind=mcu,ram=64KiB,ram_reserve=8KiB,flash=64KiB,weights_in_flash=true,uplink=ble"
LINUX = "name=l,kind=linux,ram=1GiB,ram_reserve=256MiB,uplink=wifi"


@pytest.fixture(scope="module")
def planner(small_mlp):
    model, data = small_mlp
    return Planner(model, data.sample(2, manual_seed_generator(0)))


def request(optimizer="sgd", micro_batch=None):
    return PlanRequest(AdapterConfig(rank=2, targets="fc2"), TrainConfig(batch_size=4, micro_batch=micro_batch, optimizer=optimizer))


@pytest.mark.parametrize("optimizer, state", [("sgd", 0), ("momentum", 256), ("adam", 2 * 256 + 2 * 4)])
def test_breakdown_by_hand(planner, optimizer, state):
    b = planner.estimate(MCU, request(optimizer)).breakdown
    # frozen, INT8: fc1 u 16×4 + v 4×8 int8, scales 4·(16+4), bias 4·16 = 96 + 80 + 64 = 240;
    # fc2: 64 + 64 + 80 + 64 = 272; head (dense float32): 4·(4·16 + 4) = 272
    assert (b.frozen_bytes, b.frozen_in) == (240 + 272 + 272, "flash")
    # adapter: A 2×16 + B 16×2 = 64 float32 values; one gradient each; sgd 0, momentum 1×,
    # adam 2× plus a float32 step counter per tensor
    assert (b.adapter_bytes, b.gradient_bytes, b.optimizer_bytes) == (256, 256, state)
    # the batch: 4 × (8 float32 + 1 int64)
    assert b.batch_bytes == 4 * (32 + 8)
    # saved by the adapter: its input x (relu(fc1(x)), 4×16 float32) and Ax (4×2)
    assert b.adapter_input_bytes == 4 * 16 * 4 + 4 * 2 * 4
    # the path from the loss: relu's output after fc2 (4×16), log-softmax output (4×4),
    # nll's total weight and the loss (float32 scalars); nothing from fc1 or below
    assert b.path_bytes == 4 * 16 * 4 + 4 * 4 * 4 + 4 + 4
    # one layer dequantized: the largest is fc2, 4 · 4·(16+16)
    assert b.dequant_bytes == 4 * 4 * (16 + 16)
    assert b.runtime_bytes == 8 * 1024


def test_linux_holds_the_base_dequantized_in_ram(planner, small_mlp):
    b = planner.estimate(LINUX, request()).breakdown
    assert (b.frozen_in, b.dequant_bytes) == ("ram", 0)
    # float32 everything: fc1 (64 + 32 + 16) + fc2 (64 + 64 + 16) + head (64 + 4) values
    assert b.frozen_bytes == 4 * (112 + 144 + 68)
    assert b.training_bytes == b.host_bytes + b.frozen_bytes
    measured = measure_training(planned_model(copy.deepcopy(small_mlp[0]), planner.estimate(LINUX, request())), small_mlp[1], TrainConfig(batch_size=4))
    assert measured.frozen_bytes == b.frozen_bytes


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_total_matches_the_measured_step(planner, small_mlp, optimizer):
    model, data = small_mlp
    # accumulating micro-batches: gradients are resident during every pass after the first,
    # as the planner assumes, so the prediction is exact
    plan = planner.estimate(MCU, request(optimizer, micro_batch=2))
    measured = measure_training(planned_model(copy.deepcopy(model), plan), data, plan.train_config)
    assert (measured.adapter_bytes, measured.gradient_bytes, measured.optimizer_bytes) == (256, 256, plan.breakdown.optimizer_bytes)
    assert measured.held_bytes == plan.breakdown.activation_bytes
    assert abs(plan.breakdown.host_bytes - measured.peak_bytes) <= 16
    # one pass per step: torch allocates gradients during backward, the planner counts them
    # all along (a device allocates them up front), so it over-predicts by at most them
    plan = planner.estimate(MCU, request(optimizer))
    measured = measure_training(planned_model(copy.deepcopy(model), plan), data, plan.train_config)
    assert 0 <= plan.breakdown.host_bytes - measured.peak_bytes <= plan.breakdown.gradient_bytes + 16


def test_rows_add_up(planner):
    b = planner.estimate(MCU, request("adam")).breakdown
    ram = sum(size for name, size, where in b.rows() if where == "ram")
    assert ram == b.ram_bytes == b.training_bytes + b.runtime_bytes
    assert b.step_peak_bytes == b.activation_bytes + b.transient_bytes
