"""Byte accounting: what fedlora reports for a message is what Flower pushes for it."""

import numpy as np
from flwr.app import RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents, push_objects

from fedlora import protocol
from fedlora.records import message_bytes, to_record
from fedlora.wire import encode

from conftest import make_message


def pushed(message) -> dict[str, bytes]:
    """Everything Flower's transport pushes for ``message``, captured at the push function."""
    contents: dict[str, bytes] = {}
    push_objects(get_all_nested_objects(message), lambda object_id, content: contents.__setitem__(object_id, content))
    return contents


def sample_message(seed: int = 0):
    rng = np.random.default_rng(seed)
    tensors = {f"blocks.{i}.attn.q.adapters.global.lora_A": rng.normal(size=(4, 64)).astype(np.float32) for i in range(3)}
    metrics = protocol.ClientMetrics(examples=120, loss=1.25, global_metric=0.5, personal=0.5)
    return make_message(protocol.train_reply_content(encode(tensors, "int8"), metrics), "train"), tensors


def test_reported_bytes_equal_the_bytes_flower_pushes():
    message, _ = sample_message()
    contents = pushed(message)
    assert message_bytes(message) == sum(len(c) for c in contents.values())


def test_the_pushed_bytes_are_enough_to_rebuild_the_message():
    message, _ = sample_message()
    contents = pushed(message)
    rebuilt = inflate_object_from_contents(message.object_id, contents)
    original = protocol.parse_update(message.content)
    assert np.array_equal(protocol.parse_update(rebuilt.content)["int8-frame"], original["int8-frame"])
    assert protocol.parse_metrics(rebuilt.content, train=True).examples == 120


def test_bytes_grow_with_the_payload_by_its_size():
    small = make_message(RecordDict({protocol.UPDATE: to_record({"x": np.zeros(1000, np.uint8) + 1})}), "train")
    large = make_message(RecordDict({protocol.UPDATE: to_record({"x": np.zeros(5000, np.uint8) + 1})}), "train")
    assert message_bytes(large) - message_bytes(small) == 4000
