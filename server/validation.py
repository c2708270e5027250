"""Checking what nodes send at the boundary: anything malformed is refused, with a reason.

Every reply becomes :class:`Accepted` (or, for the handshake, a :class:`NodePlan`) or
:class:`Rejected` here; nothing behind this module re-checks. The form of each message
(records present, types, a positive whole ``num-examples``, finite metrics) is the
protocol's (:mod:`fedlora.protocol`); this module adds what only the server can judge:
whether an update carries exactly the tensors the server sent that client (names, dtypes
and shapes for the run's wire format, or an int8 frame whose layout digest, length and
scales check out, all finite), and whether a node's plan suits the run's method. The
strategy logs every rejection with the node id, the client's name and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fedlora import protocol
from fedlora.links import Link
from fedlora.methods import Method
from fedlora.protocol import MalformedMessage
from fedlora.wire import FrameError, Shapes, WireFormat, decode


@dataclass(frozen=True)
class Accepted:
    node_id: int
    update: dict[str, np.ndarray]  # decoded float32 tensors (empty for evaluate replies)
    metrics: protocol.ClientMetrics

    @property
    def weight(self) -> float:
        return float(self.metrics.examples)


@dataclass(frozen=True)
class Rejected:
    node_id: int
    reason: str
    client: str | None = None  # the client's name, where the reply gave one
    profile: str | None = None
    device_refused: bool = False  # the client's device fits no plan: excluded, not failed


@dataclass(frozen=True)
class NodePlan:
    """What a node told the server about itself in the handshake, accepted: who it is, what
    it trains (its device may cap the rank and which layers carry adapters), and its uplink."""

    node_id: int
    partition: int
    name: str
    rank: int
    targets: str | None = None  # None: the run's adapter targets
    profile: str | None = None
    link: Link | None = None
    holds_base: bool = False  # it holds the run's base: the base is not sent to it
    state: str = protocol.STATE_FRESH


def _failure(message: Message) -> str:
    """The client's error, shortened to its last line (Ray wraps it in a long traceback)."""
    lines = [line.strip() for line in message.error.reason.strip().splitlines() if line.strip()]
    return f"client failed: {lines[-1][-500:] if lines else 'no reason given'}"


def validate_train_reply(message: Message, shapes: Shapes, wire: WireFormat) -> Accepted | Rejected:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Rejected(node_id, _failure(message))
    try:
        metrics = protocol.parse_metrics(message.content, train=True)
        update = decode(protocol.parse_update(message.content), wire, shapes)
    except MalformedMessage as error:
        return Rejected(node_id, str(error))
    except FrameError as error:
        return Rejected(node_id, f"update does not fit: {error}")
    return Accepted(node_id, update, metrics)


def _impossible(description: protocol.NodeDescription, rank: int, clients: int) -> str | None:
    if description.partition >= clients:
        return f"it claims partition {description.partition}, outside the run's 0..{clients - 1}"
    if description.refused is not None:
        return None  # nothing about training is set
    if description.rank > rank:
        return f"it would train rank {description.rank}, above the run's rank {rank}"
    if description.targets is not None:
        try:
            re.compile(description.targets)
        except re.error as error:
            return f"its layer targets {description.targets!r} are not a regular expression ({error})"
    return None


def validate_evaluate_reply(message: Message) -> Accepted | Rejected:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Rejected(node_id, _failure(message))
    try:
        metrics = protocol.parse_metrics(message.content, train=False)
    except MalformedMessage as error:
        return Rejected(node_id, str(error))
    return Accepted(node_id, {}, metrics)


def validate_description(message: Message, method: Method, rank: int, clients: int) -> NodePlan | Rejected:
    """A node's answer to the handshake. A node is refused when it failed or its answer is
    malformed or impossible — a partition outside the run's ``clients``, a rank above the
    run's ``rank`` (a device may lower it, never raise it), layer targets that are no
    regular expression — (a failure), or when its device fits no plan or would train
    another rank or other layers than a method that needs one rank for all allows (an
    exclusion: ``device_refused``). Whether the targets name layers of the model, and
    whether two nodes claim one partition, the handshake checks with the whole run in view."""
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Rejected(node_id, _failure(message))
    try:
        description = protocol.parse_description(message.content)
    except MalformedMessage as error:
        return Rejected(node_id, str(error), client=protocol.described_name(message.content))
    impossible = _impossible(description, rank, clients)
    if impossible is not None:
        return Rejected(node_id, impossible, client=description.name)
    reason = description.refused
    if reason is None and not method.heterogeneous_rank and (description.rank != rank or description.targets is not None):
        reason = (
            f"its device trains rank {description.rank} on {description.targets or 'the default layers'}, "
            f"but {method.name} needs rank {rank} on every client"
        )
    if reason is not None:  # what its device can train does not fit the run: excluded, not failed
        return Rejected(node_id, reason, client=description.name, profile=description.profile, device_refused=True)
    return NodePlan(
        node_id, description.partition, description.name, description.rank, description.targets, description.profile, description.link,
        description.holds_base, description.state,
    )  # fmt: skip
