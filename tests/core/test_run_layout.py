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
    assert client_state_file(Path("/s"), "stdlib:json") == Path("/s/stdlib_json.safetensors")
