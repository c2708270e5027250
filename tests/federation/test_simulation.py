"""One end-to-end run on Flower's simulation engine (Ray): a handful of clients, 2 rounds."""

import json
from pathlib import Path

import pytest

from fedlora import protocol
from fedlora.run_layout import RunLayout
from fedlora.simulations.simulate import simulate

pytestmark = pytest.mark.e2e


def recording_mod(log_dir: str):
    """A Flower client mod that writes the array names every message carried, both ways."""

    def mod(message, context, call_next):
        reply = call_next(message, context)
        entry = {
            "type": message.metadata.message_type,
            "in": {name: sorted(record) for name, record in message.content.array_records.items()},
            "out": {name: sorted(record) for name, record in reply.content.array_records.items()} if reply.has_content() else {},
        }
        with open(Path(log_dir) / f"node-{context.node_id}.jsonl", "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        return reply

    return mod


@pytest.fixture(scope="module")
def run(small_settings, small_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("simulation")
    settings = small_settings.replace(out=str(out / "run"), rounds=2, fraction=0.5)
    records = []
    summary = simulate(settings, on_record=records.append, cpus=2, client_mods=[recording_mod(str(out))])
    messages = [json.loads(line) for path in out.glob("node-*.jsonl") for line in path.read_text().splitlines()]
    return settings, summary, records, messages


def test_personalized_metrics_improve_over_the_base(run):
    _, summary, _, _ = run
    final = summary["final"]
    assert final["accepted"] == 4 and not final["rejected"]
    assert final["personal"]["mean"] > final["base"]["mean"] + 0.02, final


def test_only_adapter_tensors_travel(run):
    _, _, _, messages = run
    travelled = {name for m in messages for record in ("in", "out") for r, names in m[record].items() if r != protocol.BASE for name in names}
    assert travelled, "no arrays travelled"
    assert all(".adapters.global.lora_" in name for name in travelled), travelled
    # the base bundle went to each node exactly once
    base_deliveries = [m for m in messages if protocol.BASE in m["in"]]
    assert len(base_deliveries) == 4 and sorted(base_deliveries[0]["in"][protocol.BASE]) == ["manifest.json", "weights.safetensors"]


def test_rounds_are_recorded_with_measured_bytes(run):
    settings, summary, records, _ = run
    kinds = [r["kind"] for r in records]
    assert kinds == ["handshake", "train", "train", "final"]
    lines = RunLayout(Path(settings.out) / settings.name).rounds.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == kinds
    for record in records[1:3]:
        assert record["clients"] == 2 and record["accepted"] == 2
        assert record["bytes_up"] > 0 and record["bytes_down"] > record["bytes_up"] / 10
        assert record["aggregation_error"]["mean"] > 0  # fedit is not exact
        assert record["personal"]["clients"] == 2 and record["wall_time"] > 0
    assert summary["bundle_bytes_total"] == 4 * summary["base"]["bytes"]
    assert summary["total_bytes"] == sum(r["bytes_up"] + r["bytes_down"] for r in records)


def failing_mod(partition: int, message_type: str):
    """A client mod that makes one client fail as fedlora's ClientApp reports failures."""
    from fedlora.errors import FedloraError

    def mod(message, context, call_next):
        if context.node_config["partition-id"] == partition and message.metadata.message_type == message_type:
            raise FedloraError(protocol.failure_reason(partition, RuntimeError("injected failure")))
        return call_next(message, context)

    return mod


def test_a_lost_client_fails_a_strict_run_and_is_named(small_settings, small_base, tmp_path):
    from fedlora.errors import FedloraError
    from fedlora.participant import task_of

    settings = small_settings.replace(out=str(tmp_path / "run"), rounds=1)
    name = task_of(settings).client(2).name
    with pytest.raises(FedloraError, match=rf"needs 4\. Lost: {name} \(handshake\): .*injected failure"):
        simulate(settings, cpus=2, client_mods=[failing_mod(2, "query")])
    summary = json.loads(RunLayout(Path(settings.out) / settings.name).summary.read_text())
    assert summary["status"] == "failed" and [lost["client"] for lost in summary["lost"]] == [name]


def test_a_relaxed_run_goes_on_without_the_lost_client_and_says_so(small_settings, small_base, tmp_path):
    from fedlora.participant import task_of

    settings = small_settings.replace(out=str(tmp_path / "run"), rounds=1, min_clients=0.5)
    summary = simulate(settings, cpus=2, client_mods=[failing_mod(2, "query")])
    assert summary["status"] == "degraded"
    assert [(lost["client"], lost["stage"]) for lost in summary["lost"]] == [(task_of(settings).client(2).name, "handshake")]
    assert summary["final"]["accepted"] == 3 and summary["final"]["clients"] == 3
