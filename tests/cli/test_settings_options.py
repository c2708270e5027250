"""Settings are stated once: the CLI's options and the Flower app's run config follow the
fields of FederationSettings."""

import dataclasses

import click
import pytest
import typer
from typer.testing import CliRunner

from fedlora.cli.app import app
from fedlora.settings import FederationSettings

FIELDS = {f.name: f for f in dataclasses.fields(FederationSettings)}


def command_options(*path: str) -> dict[str, click.Option]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {param.name: param for param in command.params if isinstance(param, click.Option)}


def test_the_flower_app_runs_on_exactly_the_settings(tmp_path):
    from flwr.cli.config_utils import load_and_validate

    from fedlora.flower_app import write_flower_app

    folder = write_flower_app(tmp_path / "app", {"clients": 3, "out": "/tmp/it's \\ \"here\""})
    assert [path.name for path in folder.iterdir()] == ["pyproject.toml"], "no code travels: nodes run their installed fedlora"
    config, _ = load_and_validate(folder / "pyproject.toml", check_module=True)  # Flower's own check, components imported
    run_config = config["tool"]["flwr"]["app"]["config"]
    assert run_config == {**FederationSettings().to_run_config(), "clients": 3, "out": "/tmp/it's \\ \"here\""}
    assert FederationSettings.from_run_config(run_config).clients == 3


def test_the_flower_app_refuses_unknown_keys(tmp_path):
    from fedlora.errors import FedloraError
    from fedlora.flower_app import write_flower_app

    with pytest.raises(FedloraError, match="unknown run-config keys: round"):
        write_flower_app(tmp_path, {"round": 3})


def test_simulate_offers_every_setting_with_its_default_and_help():
    options = command_options("simulate")
    for name, field in FIELDS.items():
        if name == "run_name":
            assert name not in options  # set by the invocation for its baselines
            continue
        option = options[name]
        assert option.opts == ["--" + name.replace("_", "-")]
        assert option.default == field.default and option.help == field.metadata["help"]


def test_bench_federation_takes_its_settings_from_the_same_fields():
    options = command_options("bench", "federation")
    assert set(options) == {"task", "corpus", "clients", "rounds", "fraction", "seed", "out", "cache_dir"}
    assert options["out"].default == "runs/bench-federation"  # its own default, the rest the settings'
    assert all(options[name].default == FIELDS[name].default for name in options if name != "out")


def test_a_setting_reaches_the_command_validated(monkeypatch):
    seen = {}
    def run_invocation(runs, **_):
        seen["runs"] = runs
        return [{"status": "completed"} for _ in runs]

    monkeypatch.setattr("fedlora.simulations.driver.run_invocation", run_invocation)
    monkeypatch.setattr("fedlora.cli.common.require_training", lambda *_: None)
    result = CliRunner().invoke(app, ["simulate", "--rank", "2", "--local-steps", "5", "--baseline", "full"])
    assert result.exit_code == 0, result.output
    main, full = seen["runs"]
    assert (main.rank, main.local_steps, main.method) == (2, 5, "fedit")
    assert (full.method, full.run_name, full.wire) == ("full", "full", "fp32")
