"""The run layout: every file of a run is named in one place."""

from pathlib import Path

from fedlora.run_layout import InvocationLayout, RunLayout, client_state_file, safe_name


def test_a_run_and_its_clients_state_sit_under_the_invocation(tmp_path):
    invocation = InvocationLayout(tmp_path)
    run = invocation.run("fedit")
    assert run.directory == tmp_path / "fedit" and run.name == "fedit"
    assert (run.rounds.name, run.summary.name, run.global_state.name) == ("rounds.jsonl", "summary.json", "global.safetensors")
    assert run.client_state == tmp_path / "client-state" / "fedit"
    assert invocation.summary.parent == invocation.plot.parent == invocation.flower_log.parent == tmp_path


def test_run_folders_are_the_ones_with_rounds(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        RunLayout(tmp_path / name).rounds.write_text("")
    (tmp_path / "client-state").mkdir()
    assert [run.name for run in InvocationLayout(tmp_path).runs()] == ["a", "b"]


def test_client_names_become_safe_file_names():
    assert safe_name("stdlib:json/../x y") == "stdlib_json_.._x_y"
    assert client_state_file(Path("/s"), "fedit-0123", "stdlib:json") == Path("/s/fedit-0123/stdlib_json.safetensors")


def test_state_is_filed_per_federation_and_base(tmp_path):
    from fedlora.client_state import ClientState, other_states, state_key
    from fedlora.settings import FederationSettings

    settings = FederationSettings()
    key = state_key(settings, "base-1")
    assert key.startswith("fedit-") and key == state_key(settings.replace(rounds=3, lr=0.1, out="x"), "base-1")
    assert len({key, state_key(settings, "base-2"), state_key(settings.replace(rank=2), "base-1"), state_key(settings.replace(run_name="b"), "base-1")}) == 4
    import numpy as np

    state = ClientState.load(tmp_path, state_key(settings, "base-2"), "stdlib:json")
    state.personal = {"x": np.ones(2, np.float32)}
    state.save()
    assert not ClientState.load(tmp_path, key, "stdlib:json").path.is_file(), "another base's state is never read"
    assert other_states(tmp_path, key, "stdlib:json") == [state.path]
