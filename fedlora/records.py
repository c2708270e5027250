"""Flower records: numpy tensors in and out of ``ArrayRecord`` by name, and message size.

Message size is what actually crosses the wire: Flower (≥ 1.20) sends a message as a tree
of content-addressed objects (Message → RecordDict → records → Array → ArrayChunk), each
serialized with a header naming its children. The size of a message is the sum of the
serialized sizes of the distinct objects in its tree — exactly the bytes Flower pushes.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Message
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def to_record(tensors: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in tensors.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def message_bytes(message: Message) -> int:
    """Serialized size of ``message`` as Flower sends it (all objects of its tree)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())
