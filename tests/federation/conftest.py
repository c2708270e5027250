import socket
import time

import pytest

from fedlora.settings import FederationSettings


@pytest.fixture(scope="session")
def small_settings(tmp_path_factory, shared_bases) -> FederationSettings:
    """A federation small enough for the test suite: 4 digits clients, a quick base."""
    root = tmp_path_factory.mktemp("federation")
    return FederationSettings(
        task="digits",
        clients=4,
        rounds=2,
        fraction=0.5,
        rank=4,
        local_steps=15,
        batch_size=16,
        lr=0.01,
        pretrain_steps=150,
        heal_steps=30,
        seed=0,
        out=str(root / "out"),
        cache_dir=str(shared_bases.cache_folder(root / "cache")),
    )


@pytest.fixture(scope="session")
def small_base(small_settings, shared_bases):
    from fedlora.server.federation import base_for

    with shared_bases.building(small_settings.task):
        return base_for(small_settings)


def make_message(content, message_type: str, dst_node_id: int = 7, server_round: int = 1):
    """A Message as a SuperNode hands it to the ClientApp (metadata filled in)."""
    from flwr.app import Message, Metadata

    metadata = Metadata(
        run_id=1,
        message_id=f"m-{message_type}-{server_round}",
        src_node_id=0,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id=str(server_round),
        created_at=time.time(),
        ttl=3600.0,
        message_type=message_type,
    )
    return Message(metadata=metadata, content=content)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private_local_superlink(monkeypatch):
    """`flwr run` without a SuperLink starts a local one on fixed ports (39091, 39093), and
    reuses whatever already answers there, such as another checkout's tests: give it ports
    of its own."""
    monkeypatch.setenv("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", str(free_port()))
    monkeypatch.setenv("FLWR_LOCAL_CONTROL_API_PORT", str(free_port()))


@pytest.fixture
def in_a_server_run(monkeypatch):
    """What a ServerApp's run sets before a strategy or the handshake builds messages."""
    from flwr.supercore.task_identity import TaskIdentity

    for attribute in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)
