"""The search: requests that fit stay as asked, tight budgets get a changed plan that the
trainer then runs, and impossible budgets are refused with the reason."""

import copy
import re

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from fedlora.adapters import AdapterConfig, adapted_layers
from fedlora.client.memory_probe import measure_training
from fedlora.client.device_plan import planned_model
from fedlora.client.plan_search import LEVERS, PlanRefused, PlanRequest
from fedlora.client.profiles import load_profile
from fedlora.errors import FedloraError
from fedlora.optim import SGD, Adam
from fedlora.train import TrainConfig, checkpoint_units, train

KiB = 1024
REQUEST = PlanRequest(AdapterConfig(rank=4), TrainConfig(steps=2, batch_size=8, optimizer="adam"))


def device(usable_kib: float, flash: str = "1MiB") -> str:
    return f"name=tight,kind=mcu,ram={int(usable_kib * KiB) + 16 * KiB},ram_reserve=16KiB,flash={flash},weights_in_flash=true,uplink=lorawan-eu868-sf7"


def test_a_request_that_fits_is_kept_as_asked(lm_planner, roomy):
    plan = lm_planner.plan(roomy, REQUEST)
    assert plan.fits and plan.changes == ()
    assert plan.adapter_config == REQUEST.adapter and plan.train_config == REQUEST.train
    assert len(plan.adapted_layers) == 12


@pytest.mark.parametrize(
    "between, levers",
    [
        (0.5, {"micro-batch"}),
        (0.05, {"optimizer", "activation checkpointing", "micro-batch"}),
        (0.02, {"adapted layers", "rank", "activation checkpointing", "micro-batch"}),
    ],
)
def test_tight_budget_changes_the_plan_and_the_trainer_runs_it(lm_planner, roomy, small_lm, between, levers):
    """Budgets between the smallest configuration and the request (``between`` of the way)."""
    model, data = small_lm
    requested = lm_planner.estimate(roomy, REQUEST).breakdown.training_bytes
    smallest = lm_planner.estimate(roomy, PlanRequest(AdapterConfig(rank=1, targets=r"blocks\.1\.ffn\.fc2$"), TrainConfig(batch_size=8, micro_batch=1, optimizer="sgd"))).breakdown.training_bytes
    budget = (smallest + between * (requested - smallest)) / KiB
    plan = lm_planner.plan(device(budget), REQUEST)

    assert plan.fits and plan.breakdown.training_bytes <= plan.budget_bytes
    assert {change.lever for change in plan.changes} == levers
    targeted = [name for name in lm_planner.layer_order if re.search(plan.adapter_targets or "", name)]
    assert tuple(targeted) == plan.adapted_layers
    # the search took the best configuration: one step up on the last lever it moved no longer fits
    if plan.micro_batch < 8:
        bigger = PlanRequest(plan.adapter_config, TrainConfig(batch_size=8, micro_batch=plan.micro_batch * 2, optimizer=plan.optimizer, checkpointing=plan.checkpointing))
        assert not lm_planner.estimate(device(budget), bigger).fits

    # the trainer runs exactly the plan: its layers, optimizer, passes and checkpointing
    follower = planned_model(copy.deepcopy(model), plan)
    assert tuple(adapted_layers(follower)) == plan.adapted_layers
    assert {a.rank for layer in adapted_layers(follower).values() for a in layer.adapters.values()} == {plan.rank}
    optimizers, passes, block_calls = [], [0], [0]
    hook = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: optimizers.append(optimizer))
    counter = next(checkpoint_units(follower)[-1].children()).register_forward_hook(  # a layer inside the top block
        lambda *args: block_calls.__setitem__(0, block_calls[0] + 1))

    def counted_loss(model, inputs, targets):
        passes[0] += 1
        return torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())

    try:
        train(follower, data, plan.train_config, seed=0, loss_fn=counted_loss)
    finally:
        hook.remove()
        counter.remove()
    expected = {"adam": Adam, "momentum": SGD, "sgd": SGD}[plan.optimizer]
    assert isinstance(optimizers[0], expected)
    assert (optimizers[0].param_groups[0].get("momentum", 0) > 0) == (plan.optimizer == "momentum")
    assert passes[0] == plan.train_config.steps * plan.train_config.accumulation
    # with checkpointing, the top block's layers run again in backward
    assert block_calls[0] == passes[0] * (2 if plan.checkpointing else 1)
    # and what it allocates stays within the budget
    measured = measure_training(planned_model(copy.deepcopy(model), plan), data, plan.train_config)
    assert measured.peak_bytes <= plan.breakdown.host_bytes * 1.02
    assert measured.peak_bytes + plan.breakdown.dequant_bytes <= plan.budget_bytes


def test_levers_in_order_micro_batch_before_depth(lm_planner, roomy):
    """Just below the requested size, only free levers move: the micro-batch shrinks (or
    checkpointing comes on) before any adapted layer or rank is given up."""
    requested = lm_planner.estimate(roomy, REQUEST).breakdown.training_bytes
    plan = lm_planner.plan(device(requested * 0.9 / KiB), REQUEST)
    assert len(plan.adapted_layers) == 12 and plan.rank == 4 and plan.optimizer == "adam"
    assert plan.micro_batch < 8 or plan.checkpointing


def test_nothing_fits_is_refused_naming_the_budget_and_largest_component(lm_planner):
    with pytest.raises(PlanRefused) as refused:
        lm_planner.plan(device(20), REQUEST)
    message = str(refused.value)
    assert "nothing fits tight: 20.0 KiB of RAM are usable (36.0 KiB minus a 16.0 KiB reserve)" in message
    closest = refused.value.closest
    name, size = closest.breakdown.largest()
    assert re.search(rf"largest component is {re.escape(name.split(' (')[0])}, {size / KiB:.1f} KiB", message)
    assert closest.adapted_layers == ("blocks.1.ffn.fc2",) and closest.rank == 1 and closest.micro_batch == 1 and closest.optimizer == "sgd"
    assert not closest.fits


def test_a_base_too_big_for_flash_is_refused(lm_planner):
    with pytest.raises(PlanRefused, match=r"the frozen INT8 base needs .* of flash and 4.0 KiB are left after the firmware"):
        lm_planner.plan("name=tiny,kind=mcu,ram=64MiB,ram_reserve=0,flash=8KiB,flash_reserve=4KiB,weights_in_flash=true,uplink=ble", REQUEST)


def test_margin_keeps_ram_free(lm_planner, roomy):
    requested = lm_planner.estimate(roomy, REQUEST).breakdown.training_bytes
    profile = load_profile(device(requested / KiB + 1))
    assert lm_planner.plan(profile, REQUEST).changes == ()
    careful = lm_planner.plan(profile, REQUEST, margin=0.2)
    assert careful.changes and careful.breakdown.training_bytes <= 0.8 * profile.usable_ram


def test_levers_can_be_held_fixed(lm_planner, roomy):
    """A federation that wants every client on the same layers leaves out "adapted layers"."""
    keep_layers = tuple(lever for lever in LEVERS if lever != "adapted layers")
    request = PlanRequest(REQUEST.adapter, REQUEST.train, levers=keep_layers)
    all_layers_smallest = lm_planner.estimate(roomy, PlanRequest(AdapterConfig(rank=1), TrainConfig(batch_size=8, micro_batch=1, optimizer="sgd", checkpointing=True))).breakdown.training_bytes
    plan = lm_planner.plan(device(all_layers_smallest * 1.05 / KiB), request)
    assert len(plan.adapted_layers) == 12 and plan.adapter_targets == REQUEST.adapter.targets
    assert "adapted layers" not in {change.lever for change in plan.changes}
    with pytest.raises(PlanRefused, match=r"the smallest configuration \(keeping adapted layers as asked\) \(12 layers, rank 1"):
        lm_planner.plan(device(all_layers_smallest * 0.9 / KiB), request)
    with pytest.raises(FedloraError, match="unknown planner levers 'depth'; choose from adapted layers, rank"):
        PlanRequest(levers=("depth",))
