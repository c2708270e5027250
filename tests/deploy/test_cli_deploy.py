"""``fedlora deploy``: the three commands from the real entry point, and errors a user can act on."""

from __future__ import annotations

import re
import stat

import pytest

from fedlora.cli.app import main


def fedlora(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point; return (status, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["fedlora", *map(str, args)])
    try:
        main()
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("command", ["deploy", "deploy ca", "deploy node-keys", "deploy commands", "deploy app"])
def test_help(monkeypatch, capsys, command):
    status, out, _ = fedlora(monkeypatch, capsys, *command.split(), "--help")
    assert status == 0 and "Usage" in out


def test_ca_keys_and_commands_in_a_row(monkeypatch, capsys, tmp_path):
    status, out, _ = fedlora(monkeypatch, capsys, "deploy", "ca", "--out", tmp_path / "tls", "--address", "192.168.1.10")
    assert status == 0 and "192.168.1.10, 127.0.0.1, ::1, localhost" in out
    status, out, _ = fedlora(monkeypatch, capsys, "deploy", "node-keys", "--out", tmp_path / "keys", "--name", "pi-a", "--name", "pi-b")
    assert status == 0 and "pi-b.pub" in out
    assert stat.S_IMODE((tmp_path / "keys" / "pi-a.key").stat().st_mode) == 0o600
    status, out, _ = fedlora(
        monkeypatch, capsys, "deploy", "commands", "--tls", tmp_path / "tls", "--keys", tmp_path / "keys", "--flwr-home", tmp_path / "home", "--node", "pi-b"
    )
    assert status == 0
    assert "--host 0.0.0.0 --port 8000" in out and "--superlink 192.168.1.10:8000" in out
    assert "flwr supernode register" in out and "pi-b.pub" in out and "pi-a.pub" not in out
    assert "--port 9095" in out, "pi-b keeps its own Runtime API port when printed alone"
    assert "[Service]" in out and "RestartSec=" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["ca", "--address", "https://superlink.lan"], "--address 'https://superlink.lan' is neither an IP address nor a host name"),
        (["ca", "--days", "0"], "--days must be at least 1"),
        (["node-keys"], "give either --nodes N or one --name per node"),
        (["node-keys", "--name", "a b"], "--name 'a b'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(monkeypatch, capsys, tmp_path, args, message):
    status, _, err = fedlora(monkeypatch, capsys, "deploy", *args, "--out", tmp_path / "out")
    assert status == 2
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_folder_needs_force(monkeypatch, capsys, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    status, _, err = fedlora(monkeypatch, capsys, "deploy", "node-keys", "--nodes", "1", "--out", tmp_path / "out")
    assert status == 2 and "is not empty; choose a new folder, or pass --force" in " ".join(err.split())
    status, _, _ = fedlora(monkeypatch, capsys, "deploy", "node-keys", "--nodes", "1", "--out", tmp_path / "out", "--force")
    assert status == 0 and (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--superlink", "10.0.0.5:8000"], r"valid for 127\.0\.0\.1, ::1, localhost only.*fedlora deploy ca --address 10\.0\.0\.5"),
        (["--superlink", "127.0.0.1"], "needs a port 1..65535"),
        (["--superlink", "fd00::1:8000"], "write an IPv6 address in brackets"),
        (["--bind", "localhost", "--superlink", "localhost:8000"], None),  # fine: all on one host
        (["--device-dir", "opt/fedlora"], "--device-dir 'opt/fedlora' must be an absolute path"),
        (["--device-dir", "/opt/fed lora"], "must be an absolute path of letters"),
        (["--device-user", "Pi User"], "not a valid Linux user name"),
        (["--node", "node7"], "--node node7: no such node; the keys are for node0"),
        (["--first-runtime-port", "65535"], "the nodes need ports"),
    ],
)
def test_commands_refuse_what_would_fail_on_a_device(monkeypatch, capsys, tmp_path, args, message):
    assert fedlora(monkeypatch, capsys, "deploy", "ca", "--out", tmp_path / "tls")[0] == 0
    assert fedlora(monkeypatch, capsys, "deploy", "node-keys", "--out", tmp_path / "keys", "--nodes", "2")[0] == 0
    status, _, err = fedlora(monkeypatch, capsys, "deploy", "commands", "--tls", tmp_path / "tls", "--keys", tmp_path / "keys", *args)
    if message is None:
        assert status == 0, err
        return
    assert status == 2 and re.search(message, " ".join(err.split())), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "bind, message",
    [
        ("127.0.0.1", "cannot be reached at 192.168.1.10 by the devices"),
        ("10.0.0.2", "the SuperLink's own flower-superexec connects to this address over TLS"),
        ("192.168.1.10", None),
        ("::", None),
    ],
)
def test_the_superlink_binds_where_devices_and_its_own_superexec_reach_it(monkeypatch, capsys, tmp_path, bind, message):
    fedlora(monkeypatch, capsys, "deploy", "ca", "--out", tmp_path / "tls", "--address", "192.168.1.10")
    fedlora(monkeypatch, capsys, "deploy", "node-keys", "--out", tmp_path / "keys", "--nodes", "1")
    status, out, err = fedlora(monkeypatch, capsys, "deploy", "commands", "--tls", tmp_path / "tls", "--keys", tmp_path / "keys", "--bind", bind)
    if message is None:
        assert status == 0 and f"--host {bind} --port 8000" in out
    else:
        assert status == 2 and message in " ".join(err.split()), err


def test_missing_folders_name_the_command_that_makes_them(monkeypatch, capsys, tmp_path):
    status, _, err = fedlora(monkeypatch, capsys, "deploy", "commands", "--tls", tmp_path / "none", "--keys", tmp_path / "none")
    assert status == 2 and "fedlora deploy ca --out" in " ".join(err.split())


def test_deploy_app_writes_an_app_of_the_installed_fedlora(monkeypatch, capsys, tmp_path):
    import tomllib

    status, out, err = fedlora(monkeypatch, capsys, "deploy", "app", "--out", tmp_path / "app", "-c", "clients=3", "-c", "task='digits'")
    assert status == 0, err
    config = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert config["components"] == {"serverapp": "fedlora.server.app:app", "clientapp": "fedlora.client.app:app"}
    assert (config["config"]["clients"], config["config"]["task"]) == (3, "digits")


@pytest.mark.parametrize(
    "item, message",
    [("rounds", "takes KEY=VALUE"), ("rounds=0", "--rounds must be ≥ 1"), ("roundz=3", "unknown run-config keys: roundz")],
)
def test_deploy_app_refuses_bad_config(monkeypatch, capsys, tmp_path, item, message):
    status, _, err = fedlora(monkeypatch, capsys, "deploy", "app", "--out", tmp_path / "app", "-c", item)
    assert status == 2 and message in err and not (tmp_path / "app").exists()


def test_an_unknown_device_profile_is_refused_with_the_known_ones(monkeypatch, capsys, tmp_path):
    fedlora(monkeypatch, capsys, "deploy", "ca", "--out", tmp_path / "tls")
    fedlora(monkeypatch, capsys, "deploy", "node-keys", "--out", tmp_path / "keys", "--nodes", "1")
    status, _, err = fedlora(monkeypatch, capsys, "deploy", "commands", "--tls", tmp_path / "tls", "--keys", tmp_path / "keys", "--profile", "my-pi")
    assert status == 2 and "'my-pi' is not a built-in device profile" in err and "rpi-zero-2w-headless" in err
