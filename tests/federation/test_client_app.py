"""The ClientApp called directly with constructed Messages; replies checked key by key."""

import numpy as np
import pytest
from flwr.app import Context, MessageType, RecordDict

from fedlora import protocol
from fedlora.client.app import make_client_app
from fedlora.errors import FedloraError
from fedlora.records import to_record
from fedlora.server.federation import global_state
from fedlora.wire import FRAME, decode, encode

from conftest import make_message


def context(settings, partition_id=1):
    return Context(run_id=1, node_id=7, node_config={"partition-id": partition_id}, state=RecordDict(), run_config=settings.to_run_config())


def train_content(settings, base, with_base=True, server_round=1):
    state = global_state(settings, base)
    tensors = state.tensors_for(settings.rank)
    base_files = protocol.base_record(base.bundle.files()) if with_base else None
    payload = to_record(encode(tensors, settings.wire))
    content = protocol.instruction_content(server_round, settings.rank, None, payload, base.bundle.id, base_files)
    return content, tensors


def test_query_reply_describes_the_client(small_settings):
    app = make_client_app()  # settings come from the run config, as under `flwr run`
    reply = app(make_message(protocol.query_content(), MessageType.QUERY), context(small_settings, 2))
    assert set(reply.content.config_records[protocol.PLAN]) == {"partition", "name", "rank", "examples"}
    description = protocol.parse_description(reply.content)
    assert description.partition == 2 and description.rank == small_settings.rank and description.name.startswith("digits:")
    assert description.profile is None and description.link is None


@pytest.mark.parametrize("wire", ["fp32", "int8"])
def test_train_reply_carries_only_the_adapter_update_and_metrics(small_settings, small_base, tmp_path, wire):
    settings = small_settings.replace(wire=wire, out=str(tmp_path))
    content, sent = train_content(settings, small_base)
    reply = make_client_app(settings)(make_message(content, MessageType.TRAIN), context(settings))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert list(reply.content.array_records) == [protocol.UPDATE]
    assert list(reply.content.metric_records) == [protocol.METRICS]
    assert set(reply.content.metric_records[protocol.METRICS]) == {"num-examples", "loss", "global", "personal"}
    metrics = protocol.parse_metrics(reply.content, train=True)
    assert metrics.examples > 0 and metrics.loss is not None
    assert 0 <= metrics.global_metric <= 1 and 0 <= metrics.personal <= 1
    payload = protocol.parse_update(reply.content)
    if wire == "int8":
        assert set(payload) == {FRAME}
    else:
        assert set(payload) == set(sent)
        assert all(name.endswith((".lora_A", ".lora_B")) and ".adapters.global." in name for name in payload)
    update = decode(payload, wire, {k: v.shape for k, v in sent.items()})
    assert any(np.abs(value).sum() > 0 for value in update.values()), "training changed nothing"
    # the reply is to this message
    assert reply.metadata.reply_to_message_id == "m-train-1"


def test_base_is_installed_once_and_then_found_in_the_cache(small_settings, small_base, tmp_path):
    settings = small_settings.replace(out=str(tmp_path), cache_dir=str(tmp_path / "client-cache"))
    app = make_client_app(settings)
    first, _ = train_content(settings, small_base, with_base=True)
    assert not app(make_message(first, MessageType.TRAIN), context(settings)).has_error()
    assert (tmp_path / "client-cache" / "received" / small_base.bundle.id / "manifest.json").is_file()
    second, _ = train_content(settings, small_base, with_base=False, server_round=2)
    assert not app(make_message(second, MessageType.TRAIN, server_round=2), context(settings)).has_error()


def test_a_tampered_base_is_refused(small_settings, small_base, tmp_path):
    settings = small_settings.replace(out=str(tmp_path), cache_dir=str(tmp_path / "client-cache"))
    content, _ = train_content(settings, small_base)
    files = {name: np.frombuffer(data, np.uint8).copy() for name, data in small_base.bundle.files().items()}
    files["weights.safetensors"][-1] ^= 0xFF
    content[protocol.BASE] = to_record(files)
    # the ClientApp raises; Flower turns that into an error reply the server logs
    with pytest.raises(FedloraError, match="corrupted or was tampered with"):
        make_client_app(settings)(make_message(content, MessageType.TRAIN), context(settings))
    assert not (tmp_path / "client-cache" / "received" / small_base.bundle.id).exists()


def test_evaluate_reply_reports_base_global_and_personalized(small_settings, small_base, tmp_path):
    settings = small_settings.replace(out=str(tmp_path))
    content, _ = train_content(settings, small_base)
    reply = make_client_app(settings)(make_message(content, MessageType.EVALUATE), context(settings))
    assert not reply.has_error()
    assert list(reply.content.array_records) == []
    assert set(reply.content.metric_records[protocol.METRICS]) == {"num-examples", "base", "global", "personal"}
    assert protocol.parse_metrics(reply.content, train=False).base is not None


def test_personal_and_kept_tensors_persist_on_the_client(small_settings, small_base, tmp_path):
    settings = small_settings.replace(method="fedsa", personal=True, out=str(tmp_path))
    content, sent = train_content(settings, small_base)
    reply = make_client_app(settings)(make_message(content, MessageType.TRAIN), context(settings))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert all(name.endswith(".lora_A") for name in protocol.parse_update(reply.content))
    from safetensors.numpy import load_file

    files = list((tmp_path / "client-state" / "fedsa").glob("*/*.safetensors"))
    assert len(files) == 1
    kept = load_file(files[0])
    assert any(".adapters.personal." in key for key in kept), "the personal adapter is kept"
    assert any(key.endswith(".adapters.global.lora_B") for key in kept), "fedsa keeps B on the client"
    assert not any(key.endswith(".adapters.global.lora_A") for key in kept), "A travels, it is not kept"
