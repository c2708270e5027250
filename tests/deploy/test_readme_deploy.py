"""The README's "Deploy to Raspberry Pis" shows what `fedlora deploy commands` prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedlora.deploy.certificates import TlsFiles
from fedlora.deploy.commands import render
from fedlora.deploy.plan import plan_deployment

README = Path(__file__).resolve().parents[2] / "README.md"
# lines a user types, not printed by `fedlora deploy commands`
TYPED = ("fedlora deploy ", "sudo python3 -m venv", "sudo /opt/fedlora/venv/bin/pip install")


def section_code_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Deploy to Raspberry Pis") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith(TYPED)]


@pytest.mark.skipif(not README.is_file(), reason="needs the source checkout")
def test_the_readme_shows_the_printed_lines(make_deployment, tmp_path):
    made = make_deployment(hosts=["192.168.1.10"], nodes=["node0", "node1", "node2"])
    deployment = plan_deployment(TlsFiles.existing(made.tls.folder), made.nodes, flwr_home=Path("/home/me/.flwr"))
    printed = render(deployment).replace(str(tmp_path), "/home/me/fedlora/deploy").splitlines()
    missing = [line for line in section_code_lines() if line not in printed]
    assert not missing, "README lines that `fedlora deploy commands` no longer prints:\n" + "\n".join(missing)
