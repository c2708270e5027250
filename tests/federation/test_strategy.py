"""The strategy on constructed replies: aggregation does not depend on the order replies arrive in."""

import numpy as np
import pytest
from flwr.app import Error, Message

from fedlora import protocol
from fedlora.run_layout import RunLayout
from fedlora.server.global_state import ProductGlobal
from fedlora.server.participation import Participation
from fedlora.server.results import RunRecorder
from fedlora.server.strategy import AdapterFederation, _on_behalf_of
from fedlora.server.validation import NodePlan
from fedlora.settings import FederationSettings
from fedlora.wire import encode

from conftest import make_message

A, B = "l.adapters.global.lora_A", "l.adapters.global.lora_B"
NODES = [11, 22, 33, 44, 55, 66, 77, 88]


def initial(rank, targets):
    rng = np.random.default_rng(0)
    return {A: rng.normal(size=(rank, 6)).astype(np.float32), B: np.zeros((5, rank), np.float32)}


def aggregate(tmp_path, order):
    settings = FederationSettings(method="flexlora", clients=len(NODES), fraction=1.0, rounds=1, out=str(tmp_path))
    plans = {node: NodePlan(node, partition, f"c{partition}", rank=2) for partition, node in enumerate(NODES)}
    state = ProductGlobal(initial, scaling=2.0)
    strategy = AdapterFederation(settings, state, plans, RunRecorder(RunLayout(tmp_path / str(order))), Participation(len(NODES), 1.0, set(NODES)))
    sent = {message.metadata.dst_node_id: message for message in strategy.configure_train(1, None, None, None)}
    rng = np.random.default_rng(1)
    # magnitudes far apart, so that a floating-point sum depends on its order
    updates = {node: {A: rng.normal(size=(2, 6)).astype(np.float32) * 10.0 ** (i % 4 * 3), B: rng.normal(size=(5, 2)).astype(np.float32)} for i, node in enumerate(NODES)}
    replies = []
    for node in order:
        metrics = protocol.ClientMetrics(examples=10 + node, loss=1.0, global_metric=0.5, personal=0.5)
        reply = Message(protocol.train_reply_content(encode(updates[node], "fp32"), metrics), reply_to=sent[node])
        replies.append(reply)
    strategy.aggregate_train(1, replies)
    return state.products  # float64, before any rounding


@pytest.mark.usefixtures("in_a_server_run")
def test_the_aggregate_is_the_same_whatever_order_replies_arrive_in(tmp_path):
    first, second = aggregate(tmp_path, NODES), aggregate(tmp_path, NODES[::-1])
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_a_reply_the_superlink_sends_for_an_unreachable_node_counts_for_that_node():
    request = make_message(protocol.query_content(), "train", dst_node_id=1)  # the SuperLink answers as node 1
    unavailable = Message(Error(code=5, reason="Node Unavailable"), reply_to=request)
    assert unavailable.metadata.src_node_id == 1
    assert _on_behalf_of(unavailable, {request.metadata.message_id: 42}).metadata.src_node_id == 42
