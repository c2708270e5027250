"""The handshake refuses what no single reply shows wrong: two nodes claiming one partition,
and layer targets the model does not have. The run goes on without them (or fails, by the
policy), and names them."""

from pathlib import Path

import pytest
from flwr.app import Message

from fedlora import protocol
from fedlora.errors import FedloraError
from fedlora.protocol import NodeDescription
from fedlora.run_layout import InvocationLayout
from fedlora.server.federation import handshake
from fedlora.server.participation import Participation
from fedlora.server.results import RunRecorder
from fedlora.settings import FederationSettings

from conftest import make_message

pytestmark = pytest.mark.usefixtures("in_a_server_run")


class Answers:
    """A grid on which node n answers the query with ``descriptions[n]``."""

    def __init__(self, descriptions: dict[int, NodeDescription]):
        self.descriptions = descriptions

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            request = make_message(message.content, "query", dst_node_id=node)
            replies.append(Message(protocol.description_content(self.descriptions[node]), reply_to=request))
        return list(reversed(replies))  # arrival order is not node order


class LayersOf:
    """A global state that serves any rank on the layers ``fc2$`` names, and nothing else."""

    def tensors_for(self, rank, targets=None):
        if targets not in (None, "fc2$"):
            raise FedloraError(f"targets {targets!r} match no factorized layer")
        return {}


def run_handshake(tmp_path: Path, descriptions: dict[int, NodeDescription], min_clients: float = 0.5):
    settings = FederationSettings(method="flexlora", task="digits", clients=4, min_clients=min_clients, out=str(tmp_path))
    participation = Participation(settings.clients, settings.min_clients)
    recorder = RunRecorder(InvocationLayout(tmp_path).run(settings.name))
    plans = handshake(Answers(descriptions), sorted(descriptions), recorder, settings, participation, None, LayersOf())
    return plans, participation


def described(partition: int, targets: str | None = None) -> NodeDescription:
    return NodeDescription(partition, f"digits:{partition}", 4, 10, profile="p" if targets else None, targets=targets)


def test_a_second_claim_on_a_partition_is_lost_and_named(tmp_path):
    plans, participation = run_handshake(tmp_path, {11: described(0), 12: described(1), 13: described(0)})
    assert sorted(plans) == [11, 12]
    assert [(lost["node"], lost["reason"]) for lost in participation.lost] == [(13, "partition 0 is claimed by node 11 already")]


def test_targets_the_model_does_not_have_are_lost_and_named(tmp_path):
    plans, participation = run_handshake(tmp_path, {11: described(0, "fc2$"), 12: described(1, "zzz")})
    assert sorted(plans) == [11]
    assert participation.lost[0]["node"] == 12 and "'zzz' match no factorized layer" in participation.lost[0]["reason"]


def test_under_the_strict_policy_such_a_node_fails_the_run(tmp_path):
    with pytest.raises(FedloraError, match="partition 0 is claimed by node 11 already"):
        run_handshake(tmp_path, {11: described(0), 12: described(0)}, min_clients=1.0)
