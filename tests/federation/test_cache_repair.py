"""A device whose cached base is damaged says it holds none, and the base it is sent then
repairs its cache: it never fails round after round on a broken file."""

import pytest
from flwr.app import Context, MessageType, RecordDict

from fedlora import protocol
from fedlora.client.app import make_client_app
from fedlora.errors import FedloraError
from fedlora.records import to_record
from fedlora.server.federation import global_state
from fedlora.wire import encode

from conftest import make_message


def device(settings, cache):
    node_config = {"partition-id": 1, "cache-dir": str(cache), "state-dir": str(cache.parent / "state")}
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config=settings.to_run_config())


def holds_base(settings, base, cache) -> bool:
    reply = make_client_app()(make_message(protocol.query_content(base.bundle.id), MessageType.QUERY), device(settings, cache))
    return protocol.parse_description(reply.content).holds_base


def train(settings, base, cache, with_base: bool):
    tensors = global_state(settings, base).tensors_for(settings.rank)
    files = protocol.base_record(base.bundle.files()) if with_base else None
    content = protocol.instruction_content(1, settings.rank, None, to_record(encode(tensors, settings.wire)), base.bundle.id, files)
    return make_client_app()(make_message(content, MessageType.TRAIN), device(settings, cache))


def test_a_damaged_cached_base_is_reported_absent_and_repaired_by_the_next_delivery(small_settings, small_base, tmp_path):
    settings = small_settings.replace(out=str(tmp_path / "out"))
    cache = tmp_path / "device" / "cache"
    assert not holds_base(settings, small_base, cache)
    assert not train(settings, small_base, cache, with_base=True).has_error()
    assert holds_base(settings, small_base, cache)

    (weights,) = (cache / "received" / small_base.bundle.id).glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:-7])  # a damaged SD card, a killed write
    assert not holds_base(settings, small_base, cache)  # so the server sends the base again
    with pytest.raises(FedloraError, match="truncated or replaced"):  # round after round, had it claimed to hold it
        train(settings, small_base, cache, with_base=False)
    assert not train(settings, small_base, cache, with_base=True).has_error()
    assert holds_base(settings, small_base, cache)  # repaired
