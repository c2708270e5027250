"""Malformed client replies are refused with a reason and never reach aggregation."""

import re

import numpy as np
import pytest
from flwr.app import ArrayRecord, Error, Message, MetricRecord, RecordDict

from fedlora import protocol
from fedlora.records import to_record
from fedlora.server.validation import Accepted, Rejected, validate_train_reply
from fedlora.wire import FRAME, encode

from conftest import make_message

SHAPES = {"l.adapters.global.lora_A": (2, 8), "l.adapters.global.lora_B": (8, 2)}


def reply(content=None, error=None):
    request = make_message(RecordDict(), "train", dst_node_id=42)
    if error is not None:
        return Message(error, reply_to=request)
    return Message(content, reply_to=request)


def good_tensors():
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}


GOOD_METRICS = protocol.ClientMetrics(examples=10, loss=1.0, global_metric=0.5, personal=0.6)


def content(payload, metrics=None):
    """A train reply built by the protocol; ``metrics`` replaces its metric record (raw, to break it)."""
    built = protocol.train_reply_content(payload, GOOD_METRICS)
    if metrics is not None:
        built[protocol.METRICS] = MetricRecord(metrics)
    return built


@pytest.mark.parametrize("wire", ["fp32", "fp16", "int8"])
def test_a_well_formed_reply_is_accepted_and_decoded(wire):
    tensors = good_tensors()
    verdict = validate_train_reply(reply(content(encode(tensors, wire))), SHAPES, wire)
    assert isinstance(verdict, Accepted) and verdict.node_id == 42 and verdict.weight == 10
    tolerance = {"fp32": 0, "fp16": 1e-2, "int8": 2e-2}[wire]
    for name, value in tensors.items():
        np.testing.assert_allclose(verdict.update[name], value, atol=tolerance)


def bad_replies():
    tensors = good_tensors()
    fp32 = encode(tensors, "fp32")
    yield "missing", content({k: v for k, v in fp32.items() if "lora_B" not in k}), "fp32", "missing arrays"
    yield "extra", content({**fp32, "other.lora_A": np.zeros(2, np.float32)}), "fp32", "unexpected arrays"
    yield "shape", content({**fp32, "l.adapters.global.lora_A": np.zeros((8, 2), np.float32)}), "fp32", r"expected float32\(2, 8\)"
    yield "dtype", content({k: v.astype(np.float64) for k, v in fp32.items()}), "fp32", "float64"
    yield "nan", content({**fp32, "l.adapters.global.lora_A": np.full((2, 8), np.inf, np.float32)}), "fp32", "non-finite"
    frame = encode(tensors, "int8")[FRAME]
    yield "short frame", content({FRAME: frame[:-3]}), "int8", "expected uint8"
    yield "wrong layout", content(encode({"x": np.ones((2, 8), np.float32), "y": np.ones((8, 2), np.float32)}, "int8")), "int8", "disagree"
    yield "no update", protocol.evaluate_reply_content(GOOD_METRICS), "fp32", "no 'update'"
    yield "no metrics", RecordDict({protocol.UPDATE: to_record(fp32)}), "fp32", "no 'metrics'"
    yield "zero examples", content(fp32, {"num-examples": 0}), "fp32", "positive whole number"
    yield "float examples", content(fp32, {"num-examples": 2.5}), "fp32", "positive whole number"
    yield "nan metric", content(fp32, {"num-examples": 2, "loss": float("nan"), "global": 0.5, "personal": 0.5}), "fp32", "not finite"
    yield "no loss", content(fp32, {"num-examples": 2, "global": 0.5, "personal": 0.5}), "fp32", "'loss' must be a number"
    yield "list metric", content(fp32, {"num-examples": 2, "loss": [1.0, 2.0], "global": 0.5, "personal": 0.5}), "fp32", "'loss' must be a number"


@pytest.mark.parametrize("name, bad, wire, reason", list(bad_replies()), ids=[case[0] for case in bad_replies()])
def test_malformed_replies_are_rejected_with_a_reason(name, bad, wire, reason):
    verdict = validate_train_reply(reply(bad), SHAPES, wire)
    assert isinstance(verdict, Rejected) and verdict.node_id == 42
    assert re.search(reason, verdict.reason), verdict.reason


def test_a_client_error_is_rejected_with_its_last_line():
    verdict = validate_train_reply(reply(error=Error(code=0, reason="Traceback ...\n  File x\nValueError: out of memory")), SHAPES, "fp32")
    assert isinstance(verdict, Rejected) and verdict.reason == "client failed: ValueError: out of memory"


def test_an_empty_array_record_is_rejected():
    empty = content({})
    empty[protocol.UPDATE] = ArrayRecord()
    verdict = validate_train_reply(reply(empty), SHAPES, "fp32")
    assert isinstance(verdict, Rejected) and "missing arrays" in verdict.reason
