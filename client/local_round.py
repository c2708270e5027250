"""One client's part of a round: load what arrived, train locally, return the update.

The ClientApp (``client/app.py``) only hands Flower messages to these functions; what the
messages hold is :mod:`fedlora.protocol`'s, read and built through it.

The ``global`` metric includes what the method keeps on the client (fedsa's B) but not a
``--personal`` adapter; ``personal`` includes everything the client would deploy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import RecordDict
from torch import nn

from fedlora import protocol
from fedlora.adapters import PERSONAL, load_adapter_state
from fedlora.adapters.keys import is_adapter_key
from fedlora.bundle import BaseBundle, install_bundle, read_base_bundle
from fedlora.cache import cache_root
from fedlora.client_state import ClientState, other_states, state_key
from fedlora.client.fleet import fleet_assignment
from fedlora.client.device_plan import plan_for
from fedlora.client.plan_search import Plan, PlanRefused
from fedlora.client.profiles import load_profile
from fedlora.errors import FedloraError
from fedlora.methods import Method, get_method
from fedlora.metrics import evaluate
from fedlora.participant import adapted_model, task_of
from fedlora.protocol import ClientMetrics, Instruction, NodeDescription
from fedlora.run_layout import InvocationLayout
from fedlora.settings import FederationSettings
from fedlora.tasks.base import Partition, Task
from fedlora.train import TrainConfig, train
from fedlora.wire import ErrorFeedback, FrameError, decode


@dataclass(frozen=True)
class ClientEnvironment:
    """Where this client is: its partition, its own folders and its device (node config)."""

    partition_id: int
    state_dir: Path
    cache_dir: Path
    profile: str | None = None  # device profile; None: no memory budget (a server-class client)
    #: the node has a cache of its own (node config ``cache-dir``), as a device does; simulated
    #: nodes share one, so none of them may claim what another one installed
    own_cache: bool = False

    @classmethod
    def from_node_config(cls, node_config: dict, settings: FederationSettings) -> ClientEnvironment:
        if "partition-id" not in node_config:
            raise FedloraError("node config lacks 'partition-id'; start the SuperNode with --node-config 'partition-id=N'")
        partition_id = int(node_config["partition-id"])
        if not 0 <= partition_id < settings.clients:
            raise FedloraError(f"partition-id {partition_id} is outside 0..{settings.clients - 1}")
        cache = cache_root(node_config.get("cache-dir") or settings.cache_dir or None)
        state = Path(str(node_config.get("state-dir") or InvocationLayout(Path(settings.out)).run(settings.name).client_state))
        profile = node_config.get("profile") or None
        if profile is None and settings.fleet:
            profile = fleet_assignment(settings.fleet, settings.clients, settings.seed)[partition_id]
        return cls(partition_id, state, cache, profile, own_cache=bool(node_config.get("cache-dir")))

    def received(self, base_id: str) -> Path:
        return self.cache_dir / "received" / base_id


@lru_cache(maxsize=64)
def device_plan(settings: FederationSettings, profile: str) -> Plan:
    """What this device trains (raises PlanRefused when nothing fits its memory)."""
    return plan_for(load_profile(profile), settings)


def _bundle(instruction: Instruction, env: ClientEnvironment) -> BaseBundle:
    """The base this round needs: installed from the message, or from this client's cache."""
    bundle_id = instruction.base_id
    if instruction.base_files is not None:
        return install_bundle(instruction.base_files, bundle_id, env.received(bundle_id).parent)
    if not env.received(bundle_id).is_dir():
        raise FedloraError(f"base {bundle_id[:12]} is not in this client's cache; the server must send it again")
    return read_base_bundle(env.received(bundle_id), expected_id=bundle_id)


def _as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in arrays.items()}


@dataclass
class LocalModel:
    """A client's model for one round, with what arrived and what it keeps."""

    method: Method
    task: Task
    data: Partition
    model: nn.Module
    state: ClientState
    received: dict[str, np.ndarray]
    config: TrainConfig  # how this client trains: the device's plan, or the run's settings

    def metric(self) -> float:
        # in batches no larger than a training pass's, so that evaluating never needs more
        # memory than the device's plan allows for training
        return evaluate(self.model, self.data.test, batch_size=self.config.micro_batch or self.config.batch_size)[self.task.primary_metric]

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        if self.method.dense:
            self.model.load_state_dict(_as_tensors(arrays))
        else:
            load_adapter_state(self.model, _as_tensors(arrays))

    def kept_keys(self) -> list[str]:
        """Trainable adapter tensors that never leave this client."""
        return [
            name
            for name, parameter in self.model.named_parameters()
            if parameter.requires_grad and is_adapter_key(name) and not self.method.travels(name)
        ]

    def load_kept(self, personal_adapter: bool) -> None:
        """Load kept tensors of the method (personal_adapter=False) or the personal adapter."""
        wanted = {k for k in self.kept_keys() if is_adapter_key(k, PERSONAL) == personal_adapter}
        kept = {k: v for k, v in self.state.personal.items() if k in wanted}
        if kept:
            self.load(kept)

    def train(self, seed: int) -> float:
        """Local training, as the device's plan says (micro-batch, optimizer, checkpointing)."""
        return train(self.model, self.data.train, self.config, seed=seed)


def local_train_config(settings: FederationSettings, env: ClientEnvironment, method: Method) -> TrainConfig:
    """The device's plan, or the run's settings for a client without a memory budget."""
    if env.profile is not None and not method.dense:
        return device_plan(settings, env.profile).train_config
    return TrainConfig(steps=settings.local_steps, batch_size=settings.batch_size, lr=settings.lr, optimizer=settings.optimizer)


def open_local_model(settings: FederationSettings, instruction: Instruction, env: ClientEnvironment, measure_base: bool = False):
    """Build the model, load what arrived and what the method keeps locally.

    Returns the local model and, with ``measure_base``, the untouched base's metric
    (new adapters are the identity, so it is measured before anything is loaded).
    """
    method = get_method(settings.method)
    task = task_of(settings)
    data = task.client(env.partition_id)
    if method.dense:  # the full-model baseline: the dense model, every weight trains
        model = task.build_model().requires_grad_(True)
    else:
        model = adapted_model(settings, _bundle(instruction, env), task, rank=instruction.rank, targets=instruction.targets)
    state = ClientState.load(env.state_dir, state_key(settings, instruction.base_id), data.name)
    local = LocalModel(method, task, data, model, state, {}, local_train_config(settings, env, method))
    base_metric = local.metric() if measure_base and not method.dense else None
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items() if method.travels(key)}
    try:
        local.received = decode(instruction.payload, settings.wire, shapes)
    except FrameError as exc:
        raise FedloraError(f"the global arrays do not fit this client's model: {exc}") from exc
    local.load(local.received)
    local.load_kept(personal_adapter=False)
    return local, base_metric


#: Local training draws its batches from a seed of (run seed, round, partition), so every
#: client and round differs and the same run seed repeats the same run. The multipliers
#: are primes larger than any round count or partition, so no two pairs collide.
_SEED_STRIDE, _ROUND_STRIDE = 1_000_003, 10_007
#: the final evaluation fine-tunes as if in a round 0 that no training round uses
_EVALUATION_ROUND = 0


def _round_seed(settings: FederationSettings, server_round: int, partition_id: int) -> int:
    return (settings.seed * _SEED_STRIDE + server_round * _ROUND_STRIDE + partition_id) % 2**63


def train_round(settings: FederationSettings, content: RecordDict, env: ClientEnvironment) -> RecordDict:
    """Train on local data; reply with the update of the travelling tensors and metrics."""
    instruction = protocol.parse_instruction(content)
    local, _ = open_local_model(settings, instruction, env)
    before = local.metric()
    local.load_kept(personal_adapter=True)
    loss = local.train(_round_seed(settings, instruction.server_round, env.partition_id))
    after = local.metric()

    trained = {key: value.detach().numpy() for key, value in local.model.state_dict().items()}
    update = {key: trained[key] - local.received[key] for key in local.received}
    feedback = ErrorFeedback(local.state.residual)
    payload = feedback.encode(update, settings.wire)
    local.state.residual = feedback.residual if settings.wire != "fp32" else {}
    local.state.personal = {key: trained[key].copy() for key in local.kept_keys()}
    local.state.save()

    metrics = ClientMetrics(examples=len(local.data.train), loss=float(loss), global_metric=before, personal=after)
    return protocol.train_reply_content(payload, metrics)


def evaluate_round(settings: FederationSettings, content: RecordDict, env: ClientEnvironment) -> RecordDict:
    """Final evaluation: the untouched base, what arrived, and the personalized model
    after the same local fine-tuning as a training round (nothing is kept)."""
    local, base = open_local_model(settings, protocol.parse_instruction(content), env, measure_base=True)
    arrived = local.metric()
    local.load_kept(personal_adapter=True)
    local.train(_round_seed(settings, _EVALUATION_ROUND, env.partition_id))
    metrics = ClientMetrics(examples=len(local.data.test), global_metric=arrived, personal=local.metric(), base=base)
    return protocol.evaluate_reply_content(metrics)


def _holds_intact(env: ClientEnvironment, base_id: str | None) -> bool:
    """Whether this node's own cache holds the base, verified file by file: a damaged copy
    counts as none, so the server sends the base again and installing it repairs the cache."""
    if base_id is None or not env.own_cache or not env.received(base_id).is_dir():
        return False
    try:
        read_base_bundle(env.received(base_id), expected_id=base_id)
    except FedloraError:
        return False
    return True


def describe(settings: FederationSettings, content: RecordDict, env: ClientEnvironment) -> RecordDict:
    """Answer the server's query: who this client is, whether it holds the run's base and
    state for this federation, its device and uplink, and what it will train — or, when
    nothing fits its memory, why not."""
    base_id = protocol.parse_query(content)
    data = task_of(settings).client(env.partition_id)
    key = state_key(settings, base_id)
    if ClientState.load(env.state_dir, key, data.name).path.is_file():
        state = protocol.STATE_RESUMED
    else:
        state = protocol.STATE_FRESH_OTHER_KEPT if other_states(env.state_dir, key, data.name) else protocol.STATE_FRESH
    description = NodeDescription(
        partition=env.partition_id, name=data.name, rank=settings.rank, examples=len(data.train),
        holds_base=_holds_intact(env, base_id), state=state,
    )  # fmt: skip
    if env.profile is None or get_method(settings.method).dense:
        return protocol.description_content(description)
    profile = load_profile(env.profile)
    description = dataclasses.replace(description, profile=profile.name, link=profile.uplink)
    try:
        device = device_plan(settings, env.profile)
    except PlanRefused as refused:
        return protocol.description_content(dataclasses.replace(description, refused=str(refused)))
    return protocol.description_content(
        dataclasses.replace(description, rank=device.rank, targets=device.adapter_targets, plan=device.describe())
    )
