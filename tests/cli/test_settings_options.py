"""Settings are stated once: the CLI's options and the Flower app's run config follow the
fields of FederationSettings."""

import dataclasses
import tomllib
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from fedlora.cli.app import app
from fedlora.settings import FederationSettings

FIELDS = {f.name: f for f in dataclasses.fields(FederationSettings)}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def command_options(*path: str) -> dict[str, click.Option]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {param.name: param for param in command.params if isinstance(param, click.Option)}


@pytest.mark.skipif(not PYPROJECT.is_file(), reason="runs from a source checkout")
def test_the_flower_run_config_has_exactly_the_settings_keys():
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    assert sorted(config) == sorted(FederationSettings().to_run_config())
    FederationSettings.from_run_config(config)  # and its values are valid settings


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
