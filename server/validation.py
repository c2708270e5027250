"""Checking client replies at the boundary: anything malformed is refused, with a reason.

A reply is accepted only if it carries exactly the tensors the server expects from that
client (names, dtypes and shapes for the run's wire format, or an int8 frame whose layout
digest, length and scales check out), finite values, and a ``num-examples`` that is a
positive whole number. A refused reply is
logged with the node id, the client's name and the reason; it never reaches aggregation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from fedlora.records import from_record
from fedlora.wire import FrameError, Shapes, WireFormat, decode


@dataclass(frozen=True)
class Accepted:
    node_id: int
    update: dict[str, np.ndarray]  # decoded float32 tensors
    weight: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class Rejected:
    node_id: int
    reason: str


class InvalidReply(ValueError):
    pass


def _check_metrics(message: Message) -> dict[str, float]:
    records = message.content.metric_records
    if "metrics" not in records:
        raise InvalidReply("no 'metrics' record")
    metrics = dict(records["metrics"])
    examples = metrics.get("num-examples")
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
        raise InvalidReply(f"num-examples must be a positive whole number, got {examples!r}")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise InvalidReply(f"metric {key!r} is not finite ({value})")
    return metrics


def _check_update(message: Message, shapes: Shapes, wire: WireFormat) -> dict[str, np.ndarray]:
    if "update" not in message.content.array_records:
        raise InvalidReply("no 'update' array record")
    try:
        payload = from_record(message.content.array_records["update"])
    except Exception as exc:  # a corrupted Array fails to deserialize
        raise InvalidReply(f"update arrays cannot be read ({exc})") from exc
    try:
        return decode(payload, wire, shapes)
    except FrameError as exc:
        raise InvalidReply(f"update does not fit: {exc}") from exc


def _failure(message: Message) -> str:
    """The client's error, shortened to its last line (Ray wraps it in a long traceback)."""
    lines = [line.strip() for line in message.error.reason.strip().splitlines() if line.strip()]
    return f"client failed: {lines[-1][-500:] if lines else 'no reason given'}"


def validate_train_reply(message: Message, shapes: dict[str, tuple[int, ...]], wire: WireFormat) -> Accepted | Rejected:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Rejected(node_id, _failure(message))
    try:
        metrics = _check_metrics(message)
        update = _check_update(message, shapes, wire)
    except InvalidReply as error:
        return Rejected(node_id, str(error))
    return Accepted(node_id, update, float(metrics["num-examples"]), metrics)


def validate_evaluate_reply(message: Message) -> Accepted | Rejected:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Rejected(node_id, _failure(message))
    try:
        metrics = _check_metrics(message)
    except InvalidReply as error:
        return Rejected(node_id, str(error))
    return Accepted(node_id, {}, float(metrics["num-examples"]), metrics)
