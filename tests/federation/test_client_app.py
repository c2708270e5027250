"""The ClientApp called directly with constructed Messages; replies checked key by key."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, MessageType, RecordDict

from fedlora.client.app import make_client_app
from fedlora.errors import FedloraError
from fedlora.records import from_record, to_record
from fedlora.server.federation import global_state
from fedlora.wire import FRAME, decode, encode

from conftest import make_message


def context(settings, partition_id=1):
    return Context(run_id=1, node_id=7, node_config={"partition-id": partition_id}, state=RecordDict(), run_config=settings.to_run_config())


def train_content(settings, base, with_base=True, server_round=1):
    state = global_state(settings, base)
    tensors = state.tensors_for(settings.rank)
    content = RecordDict(
        {
            "global": to_record(encode(tensors, settings.wire)),
            "config": ConfigRecord({"server-round": server_round, "rank": settings.rank, "base-id": base.bundle.id}),
        }
    )
    if with_base:
        content["base"] = to_record({name: np.frombuffer(data, np.uint8) for name, data in base.bundle.files().items()})
    return content, tensors


def test_query_reply_describes_the_client(small_settings):
    app = make_client_app()  # settings come from the run config, as under `flwr run`
    reply = app(make_message(RecordDict({"config": ConfigRecord({})}), MessageType.QUERY), context(small_settings, 2))
    plan = reply.content.config_records["plan"]
    assert set(plan) == {"partition", "name", "rank", "examples"}
    assert plan["partition"] == 2 and plan["rank"] == small_settings.rank and plan["name"].startswith("digits:")


@pytest.mark.parametrize("wire", ["fp32", "int8"])
def test_train_reply_carries_only_the_adapter_update_and_metrics(small_settings, small_base, tmp_path, wire):
    settings = small_settings.replace(wire=wire, out=str(tmp_path))
    content, sent = train_content(settings, small_base)
    reply = make_client_app(settings)(make_message(content, MessageType.TRAIN), context(settings))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert list(reply.content.array_records) == ["update"]
    assert list(reply.content.metric_records) == ["metrics"]
    metrics = reply.content.metric_records["metrics"]
    assert set(metrics) == {"num-examples", "loss", "global", "personal"}
    assert isinstance(metrics["num-examples"], int) and metrics["num-examples"] > 0
    assert 0 <= metrics["global"] <= 1 and 0 <= metrics["personal"] <= 1
    payload = from_record(reply.content.array_records["update"])
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
    content["base"] = to_record(files)
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
    assert set(reply.content.metric_records["metrics"]) == {"num-examples", "base", "global", "personal"}


def test_personal_and_kept_tensors_persist_on_the_client(small_settings, small_base, tmp_path):
    settings = small_settings.replace(method="fedsa", personal=True, out=str(tmp_path))
    content, sent = train_content(settings, small_base)
    reply = make_client_app(settings)(make_message(content, MessageType.TRAIN), context(settings))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert all(name.endswith(".lora_A") for name in from_record(reply.content.array_records["update"]))
    from safetensors.numpy import load_file

    files = list((tmp_path / "client-state" / "fedsa").glob("*.safetensors"))
    assert len(files) == 1
    kept = load_file(files[0])
    assert any(".adapters.personal." in key for key in kept), "the personal adapter is kept"
    assert any(key.endswith(".adapters.global.lora_B") for key in kept), "fedsa keeps B on the client"
    assert not any(key.endswith(".adapters.global.lora_A") for key in kept), "A travels, it is not kept"
