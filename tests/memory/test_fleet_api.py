"""What a federation calls per client: plan_for(profile, settings), update sizes, the CLI."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fedlora.cli.app import app
from fedlora.links import airtime
from fedlora.client.device_plan import plan_for, update_message_bytes
from fedlora.client.plan_search import PlanRefused
from fedlora.client.profiles import load_link
from fedlora.methods import get_method
from fedlora.participant import adapter_config, task_of
from fedlora.settings import FederationSettings

SETTINGS = FederationSettings(task="textlm", clients=10)


def test_a_pi_trains_what_the_settings_ask():
    plan = plan_for("rpi4", SETTINGS)
    asked = adapter_config(SETTINGS, task_of(SETTINGS))
    assert plan.fits and plan.changes == ()
    assert (plan.adapter_targets, plan.rank, plan.optimizer, plan.micro_batch) == (asked.targets, SETTINGS.rank, SETTINGS.optimizer, SETTINGS.batch_size)
    assert plan.train_config.steps == SETTINGS.local_steps and plan.train_config.lr == SETTINGS.lr


def test_a_microcontroller_gets_a_smaller_plan_or_a_reason():
    esp = plan_for("esp32s3", SETTINGS)
    assert esp.fits and esp.changes
    assert esp.adapted_layers == ("blocks.1.ffn.fc2",)
    assert not plan_for("esp32s3", SETTINGS, search=False).fits
    # the 256 KB board trains at the full context, with every lever pulled
    nrf = plan_for("nrf52840", SETTINGS)
    assert nrf.fits and nrf.optimizer == "sgd" and nrf.micro_batch == 1
    assert nrf.breakdown.training_bytes <= 200 * 1024
    with pytest.raises(PlanRefused, match=r"nothing fits stm32wl55: 40.0 KiB of RAM are usable") as refused:
        plan_for("stm32wl55", SETTINGS)
    assert "peak at" in str(refused.value)  # what the peak is made of


def test_update_size_of_the_planned_adapter():
    plan = plan_for("esp32s3", SETTINGS)
    r = plan.rank
    # fc2 is 64×256: A (r×256) and B (64×r) travel as int8 with one float32 scale per rank
    # slice, after an 8-byte layout digest
    assert plan.update_bytes(get_method("fedit").travels, "int8") == 8 + r * (4 + 256) + r * (4 + 64)
    assert plan.update_bytes(get_method("ffa").travels, "int8") == 8 + r * (4 + 64)  # B only
    assert plan.update_bytes(wire="fp32") == 4 * r * (256 + 64)
    message = update_message_bytes(plan, get_method("fedit").travels, "int8")
    assert 900 < message - plan.update_bytes(get_method("fedit").travels, "int8") < 1200  # Flower's framing
    assert airtime(message, load_link("lorawan-eu868-sf7")).fits == (message <= 2048)


def test_cli_prints_the_table_and_exits_2_when_nothing_fits():
    done = subprocess.run(
        [sys.executable, "-c", "from fedlora.cli.app import main; main()", "plan", "--profile", "stm32wl55", "--task", "textlm"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120,
    )
    assert done.returncode == 2
    assert "activations: adapter inputs (x, Ax)" in done.stdout and "runtime reserve" in done.stdout
    assert "nothing fits stm32wl55" in done.stderr and "largest component" in done.stderr


def test_cli_fits_and_lists():
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "--profile", "rpi4", "--task", "textlm"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fits rpi4" in result.output
    listing = runner.invoke(app, ["plan", "--list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "nrf52840" in listing.output and "rpi-zero-2w" in listing.output
