"""The message protocol: every builder's output reads back through its parser, and the
parsers refuse malformed content with a reason (the server's validation builds on them)."""

import dataclasses

import numpy as np
import pytest
from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

from fedlora import protocol
from fedlora.links import Link
from fedlora.methods import METHODS
from fedlora.protocol import ClientMetrics, MalformedMessage, NodeDescription
from fedlora.records import to_record
from fedlora.server.validation import NodePlan, Rejected, validate_description

from conftest import make_message

BLE = Link(name="ble", kind="ble", rate_bps=1e6)


def test_an_instruction_reads_back_as_sent():
    payload = {"l.adapters.global.lora_A": np.arange(6, dtype=np.float32).reshape(2, 3)}
    base = protocol.base_record({"manifest.json": b"{}", "weights.safetensors": b"\x00\x01"})
    content = protocol.instruction_content(3, 2, "fc2$", to_record(payload), "abc", base)
    instruction = protocol.parse_instruction(content)
    assert (instruction.server_round, instruction.rank, instruction.targets, instruction.base_id) == (3, 2, "fc2$", "abc")
    assert instruction.base_files == {"manifest.json": b"{}", "weights.safetensors": b"\x00\x01"}
    np.testing.assert_array_equal(instruction.payload["l.adapters.global.lora_A"], payload["l.adapters.global.lora_A"])


def test_a_query_names_the_base():
    assert protocol.parse_query(protocol.query_content("abc")) == "abc"
    assert protocol.parse_query(protocol.query_content()) is None


def test_an_instruction_without_base_or_targets():
    content = protocol.instruction_content(1, 4, None, to_record({}), None, None)
    instruction = protocol.parse_instruction(content)
    assert instruction.targets is None and instruction.base_id is None and instruction.base_files is None
    assert set(content) == {protocol.GLOBAL, protocol.CONFIG}


@pytest.mark.parametrize(
    "description",
    [
        NodeDescription(partition=0, name="stdlib:json", rank=4, examples=10),
        NodeDescription(partition=3, name="x", rank=2, examples=5, profile="nrf52840", targets="fc2$", plan="1 layer", link=BLE),
        NodeDescription(partition=1, name="y", rank=4, examples=5, profile="stm32wl55", refused="needs 195 KiB", link=BLE),
        NodeDescription(partition=2, name="z", rank=4, examples=5, holds_base=True, state=protocol.STATE_RESUMED),
    ],
    ids=["server-class", "device", "refused", "holds base and state"],
)
def test_a_description_reads_back_as_sent(description):
    assert protocol.parse_description(protocol.description_content(description)) == description


@pytest.mark.parametrize("train", [True, False])
def test_metrics_read_back_as_sent(train):
    metrics = ClientMetrics(examples=7, global_metric=0.25, personal=0.5, loss=1.5 if train else None, base=None if train else 0.125)
    content = protocol.train_reply_content({}, metrics) if train else protocol.evaluate_reply_content(metrics)
    assert protocol.parse_metrics(content, train=train) == metrics


def _description(**plan):
    fields = {"partition": 0, "name": "c", "rank": 4, "examples": 3, **plan}
    return RecordDict({protocol.PLAN: ConfigRecord({k: v for k, v in fields.items() if v is not None})})


def _link_description(**link):
    content = protocol.description_content(NodeDescription(0, "c", 2, 3, profile="p", targets="fc2$"))
    content[protocol.LINK] = ConfigRecord({**dataclasses.asdict(BLE), **link})
    return content


@pytest.mark.parametrize(
    "content, reason",
    [
        (RecordDict({}), "no 'plan' record"),
        (_description(partition=None), "'partition' must be a whole number"),
        (_description(partition=-1), "'partition' must be a whole number ≥ 0"),
        (_description(rank=None), "'rank' must be a whole number"),
        (_description(rank=-3), "'rank' must be a whole number ≥ 1"),
        (_description(rank=2.5), "'rank' must be a whole number"),
        (_description(name=3), "'name' must be text"),
        (_description(targets=7), "'targets' must be text"),
        (_description(**{"holds-base": "yes"}), "'holds-base' must be true or false"),
    ],
)
def test_malformed_descriptions_are_refused_with_a_reason(content, reason):
    with pytest.raises(MalformedMessage, match=reason):
        protocol.parse_description(content)


def test_a_malformed_link_is_refused():
    content = _description()
    content[protocol.LINK] = ConfigRecord({"name": "ble", "speed": 3})
    with pytest.raises(MalformedMessage, match="uplink description is malformed"):
        protocol.parse_description(content)


def _reply(content=None, error=None, node=42):
    request = make_message(protocol.query_content(), "query", dst_node_id=node)
    return Message(error, reply_to=request) if error is not None else Message(content, reply_to=request)


def test_the_handshake_accepts_a_plan_the_method_can_use():
    description = NodeDescription(partition=2, name="c", rank=2, examples=3, profile="nrf52840", targets="fc2$", plan="p", link=BLE)
    verdict = validate_description(_reply(protocol.description_content(description)), METHODS["flexlora"], rank=4, clients=10)
    assert verdict == NodePlan(42, 2, "c", 2, "fc2$", "nrf52840", BLE)


@pytest.mark.parametrize(
    "reply, method, reason",
    [
        (_reply(error=Error(code=0, reason="Traceback\n  ...\nValueError: boom")), "fedit", "client failed: ValueError: boom"),
        (_reply(_description(rank=-3)), "fedit", "'rank' must be"),
        (_reply(protocol.description_content(NodeDescription(0, "c", 4, 3, profile="p", refused="too small"))), "flexlora", "too small"),
        (_reply(protocol.description_content(NodeDescription(0, "c", 2, 3))), "fedit", "needs rank 4 on every client"),
        (_reply(protocol.description_content(NodeDescription(0, "c", 4, 3, profile="p", targets="x"))), "ffa", "needs rank 4"),
        (_reply(_description(partition=10)), "fedit", "partition 10, outside the run's 0..9"),
        (_reply(protocol.description_content(NodeDescription(0, "c", 100000, 3, profile="p", targets="fc2$"))), "flexlora", "rank 100000, above"),
        (_reply(protocol.description_content(NodeDescription(0, "c", 2, 3, profile="p", targets="("))), "flexlora", "not a regular expression"),
        (_reply(_link_description(rate_bps=0)), "flexlora", "rate_bps must be > 0"),
        (_reply(_link_description(rate_bps=float("inf"))), "flexlora", "rate_bps must be a finite number"),
    ],
    ids=["client error", "malformed", "refused", "other rank", "other layers", "partition out of range", "rank too high", "bad regex", "zero rate", "infinite rate"],
)
def test_the_handshake_refuses_with_the_node_and_reason(reply, method, reason):
    verdict = validate_description(reply, METHODS[method], rank=4, clients=10)
    assert isinstance(verdict, Rejected) and verdict.node_id == 42 and reason in verdict.reason


def test_a_refused_node_is_named_when_it_said_its_name():
    verdict = validate_description(_reply(_description(name="stdlib:json", rank=0)), METHODS["fedit"], rank=4, clients=10)
    assert isinstance(verdict, Rejected) and verdict.client == "stdlib:json"


def test_metrics_must_be_numbers():
    content = RecordDict({protocol.METRICS: MetricRecord({"num-examples": 3, "global": [0.1, 0.2], "personal": 0.1})})
    with pytest.raises(MalformedMessage, match="'global' must be a number"):
        protocol.parse_metrics(content, train=False)
