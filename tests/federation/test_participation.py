"""Lost clients are named and counted: the run fails below --min-clients and says who and why."""

import pytest
from flwr.app import Context, MessageType, RecordDict

from fedlora import protocol
from fedlora.client.app import make_client_app
from fedlora.errors import FedloraError
from fedlora.server.participation import Participation

from conftest import make_message


def test_any_lost_client_fails_a_strict_run():
    participation = Participation(expected=4, min_clients=1.0, taking_part={1, 2, 3, 4})
    participation.check()
    participation.lose(3, "stdlib:json", "round 2", "client failed: boom")
    assert participation.status == "failed"
    with pytest.raises(FedloraError, match=r"only 3 of the 4 .* needs 4. Lost: stdlib:json \(round 2\): client failed: boom"):
        participation.check()


def test_a_relaxed_run_goes_on_degraded_until_too_few_are_left():
    participation = Participation(expected=4, min_clients=0.5, taking_part={1, 2, 3, 4})
    participation.lose(1, "a", "handshake", "x")
    participation.lose(2, "b", "round 1", "y")
    participation.check()
    assert participation.status == "degraded" and [lost["client"] for lost in participation.lost] == ["a", "b"]
    participation.lose(3, "c", "round 2", "z")
    with pytest.raises(FedloraError, match="needs 2"):
        participation.check()


def test_devices_that_fit_no_plan_are_excluded_not_lost():
    participation = Participation(expected=4, min_clients=1.0, taking_part={1, 2, 3})
    participation.exclude(4, "d", "stm32wl55", "smallest plan needs 195 KiB")
    participation.check()
    assert participation.able == 3 and participation.status == "completed"


def test_a_failure_names_the_partition_it_came_from():
    reason = protocol.failure_reason(3, ValueError("out of\nmemory"))
    assert reason == "[partition 3] out of memory" and protocol.failed_partition(f"Traceback ...\nFedloraError: {reason}") == 3
    assert protocol.failed_partition(protocol.failure_reason(None, ValueError("x"))) is None


@pytest.mark.parametrize(
    "node_config, reason",
    [
        ({}, r"\[a node without a partition-id\] node config lacks 'partition-id'"),
        ({"partition-id": 9}, r"\[partition 9\] partition-id 9 is outside 0..3"),
    ],
)
def test_a_misconfigured_node_fails_loudly_with_its_identity(small_settings, node_config, reason):
    context = Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config=small_settings.to_run_config())
    with pytest.raises(FedloraError, match=reason):
        make_client_app()(make_message(protocol.query_content(), MessageType.QUERY), context)
