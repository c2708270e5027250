"""A federation's device plans: what each client of a run trains on its device.

The glue between a federation and the search (:mod:`.plan_search`): the request a
federation's settings make (:func:`request_from_settings`), the layer ranks of its base
(:func:`base_ranks`), one cached planner per task and base (:func:`plan_for`), the model a
plan trains (:func:`planned_model`) and the size of the reply that carries its update
(:func:`update_message_bytes`).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from fedlora.adapters import GLOBAL, PERSONAL, attach_adapters
from fedlora.client.plan_search import LEVERS, Plan, Planner, PlanRequest
from fedlora.client.profiles import DeviceProfile
from fedlora.errors import FedloraError
from fedlora.train import LossFn, TrainConfig, task_loss

#: examples in the batch a task's planner dry-runs with: only their shapes, dtypes and
#: layout count (each dry run resizes the batch to its micro-batch), so a small one does
DRY_RUN_EXAMPLES = 2


def request_from_settings(settings, task, levers: tuple[str, ...] = LEVERS) -> PlanRequest:
    """What a federation's settings ask every client of ``task`` to train."""
    from fedlora.participant import adapter_config

    train = TrainConfig(steps=settings.local_steps, batch_size=settings.batch_size, lr=settings.lr, optimizer=settings.optimizer)
    return PlanRequest(adapter_config(settings, task), train, settings.personal, tuple(levers))


def base_ranks(task, param_ratio: float = 0.5, bundle=None) -> dict[str, int]:
    """Ranks of the factorized layers: from a base bundle, or from the parameter-budget rule
    a federation builds its base with (which depends on layer shapes only)."""
    if bundle is not None:
        return dict(bundle.ranks)
    from fedlora.factorize import target_linears
    from fedlora.rank import RankRule

    rule = RankRule("budget", param_ratio)
    with torch.device("meta"):
        model = task.build_model()
    return {name: rule.choose(None, *linear.weight.shape) for name, linear in target_linears(model, task.default_targets)}


def task_planner(task, ranks: dict[str, int], loss_fn: LossFn = task_loss) -> Planner:
    """A planner for ``task``'s model factorized with ``ranks`` (built on meta: no weights)."""
    from fedlora.factorize import factorize_like
    from fedlora.tasks.base import manual_seed_generator

    with torch.device("meta"):
        model = task.build_model()
        factorize_like(model, ranks)
    example = task.client(0).train.sample(DRY_RUN_EXAMPLES, manual_seed_generator(0))
    return Planner(model, example, loss_fn)


@lru_cache(maxsize=8)
def _cached_planner(task, ranks: tuple[tuple[str, int], ...]) -> Planner:
    return task_planner(task, dict(ranks))


def plan_for(
    profile: DeviceProfile | str, settings, bundle=None, request: PlanRequest | None = None, search: bool = True, margin: float = 0.0
) -> Plan:
    """The plan one client of a federation trains on ``profile``.

    ``settings`` (FederationSettings) give the task and what to train; ``bundle`` (the
    run's base) gives the exact layer ranks (without it, the settings' ``param_ratio``
    does). Planners are cached, so calling this per client is cheap. Raises
    :class:`PlanRefused` (a ``FedloraError``) when nothing fits; with ``search=False`` it
    returns the request's own plan, fitting or not.
    """
    from fedlora.methods import get_method
    from fedlora.participant import task_of

    if get_method(settings.method).variant is None:
        raise FedloraError(f"method {settings.method!r} trains the dense model; the planner plans adapter training")
    task = task_of(settings)  # cached per process, so the same settings give the same task object
    planner = _cached_planner(task, tuple(sorted(base_ranks(task, settings.param_ratio, bundle).items())))
    request = request or request_from_settings(settings, task)
    return planner.plan(profile, request, margin) if search else planner.estimate(profile, request, margin)


def update_message_bytes(plan: Plan, travels=None, wire: str = "int8") -> int:
    """Bytes of the Flower reply that carries one update of ``plan``: a train reply of the
    protocol (the update in the wire format and the client's metrics), serialized as Flower
    sends it (about 1 KB of framing on the payload)."""
    import time

    import numpy as np
    from flwr.app import Message, Metadata

    from fedlora import protocol
    from fedlora.records import message_bytes
    from fedlora.wire import encode

    rng = np.random.default_rng(0)  # sizes do not depend on the values
    tensors = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in plan.adapter_shapes.items() if travels is None or travels(name)}
    metadata = Metadata(
        run_id=1, message_id="0" * 64, src_node_id=2**63 - 1, dst_node_id=1, reply_to_message_id="0" * 64,
        group_id="1", created_at=time.time(), ttl=3600.0, message_type="train",
    )  # fmt: skip
    metrics = protocol.ClientMetrics(examples=1, loss=0.0, global_metric=0.0, personal=0.0)
    return message_bytes(Message(metadata=metadata, content=protocol.train_reply_content(encode(tensors, wire), metrics)))


def planned_model(base: nn.Module, plan: Plan) -> nn.Module:
    """``base`` (a frozen factorized model without adapters) with the plan's adapters attached."""
    attach_adapters(base, plan.adapter_config, GLOBAL)
    if plan.personal:
        attach_adapters(base, plan.adapter_config.personal(), PERSONAL)
    return base
