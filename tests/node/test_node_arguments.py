"""fedlora-node refuses what it cannot run, before it connects anywhere."""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fedlora.client.node import FEDLORA_CLIENT_APP, _check_client_app
from fedlora.errors import FedloraError

NODE = Path(sys.executable).parent / "fedlora-node"


def _node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(NODE), "--insecure", "--superlink", "127.0.0.1:9", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "partition-id"),
        (("--node-config", "partition-id=-1"), "partition-id=-1"),
        (("--node-config", "partition-id='zero'"), "partition-id='zero'"),
        (("--node-config", "partition-id=0", "--isolation", "subprocess"), "drop --isolation subprocess"),
    ],
)
def test_a_bad_command_line_exits_2_and_says_why(args, says):
    done = _node(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "fedlora-node: error:" in done.stderr and says in done.stderr


def _fab(clientapp: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as fab:
        fab.writestr("pyproject.toml", f'[tool.flwr.app.components]\nserverapp = "x:app"\nclientapp = "{clientapp}"\n')
    return buffer.getvalue()


def test_only_fedlora_s_client_app_runs():
    _check_client_app(_fab(FEDLORA_CLIENT_APP), "fedlora/app")
    with pytest.raises(FedloraError, match="asks for 'evil.app:app'"):
        _check_client_app(_fab("evil.app:app"), "someone/app")
