"""``fedlora deploy`` must work from a regular (wheel) install, not only from the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


# pyproject.toml lists packages explicitly; this branch may not edit it. Merging it needs
# "fedlora.deploy" added to [tool.setuptools] packages, and then this marker removed.
@pytest.mark.xfail(strict=True, reason='pyproject.toml [tool.setuptools] packages lacks "fedlora.deploy"')
def test_the_wheel_carries_the_deploy_package(tmp_path):
    if not (REPOSITORY / "pyproject.toml").is_file():
        pytest.skip("needs the source checkout")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPOSITORY), "--no-deps", "-q", "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("fedlora-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "fedlora/cli/deploy.py" in names
    assert {f"fedlora/deploy/{module}.py" for module in ("certificates", "node_keys", "commands", "systemd")} <= names
