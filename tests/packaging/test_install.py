"""Packaging: a regular wheel install, the subpackage layout, and light imports."""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPOSITORY / "pyproject.toml").is_file():
        pytest.skip("needs the source checkout")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPOSITORY), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("fedlora-*.whl")
    return built


@pytest.mark.e2e
def test_the_wheel_installs_parts_as_fedlora_subpackages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"fedlora"}, f"generic top-level names would land in site-packages: {tops}"
    for expected in (
        "fedlora/server/app.py",
        "fedlora/client/app.py",
        "fedlora/device_runtime/fully_connected.py",
        "fedlora/device_runtime/c/fedlora_fc.c",
        "fedlora/simulations/simulate.py",
        "fedlora/cli/app.py",
    ):
        assert expected in names, expected


def test_the_wheel_carries_every_source_package(wheel):
    """pyproject lists packages by hand (its folders map to fedlora.*): a new folder that
    is not listed would be missing from every regular install."""
    names = set(zipfile.ZipFile(wheel).namelist())
    roots = {"fedlora": "fedlora", "server": "fedlora/server", "client": "fedlora/client", "device_runtime": "fedlora/device_runtime", "simulations": "fedlora/simulations"}
    for folder, installed in roots.items():
        for init in (REPOSITORY / folder).rglob("__init__.py"):
            package = (Path(installed) / init.parent.relative_to(REPOSITORY / folder)).as_posix()
            assert f"{package}/__init__.py" in names, f"{init.parent} is not in the wheel: add it to [tool.setuptools] packages"


@pytest.mark.e2e
def test_a_regular_install_imports_from_site_packages(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    code = "import fedlora, fedlora.server.app, fedlora.client.app, fedlora.device_runtime.fully_connected as fc; print(fedlora.__file__); print(fc.__file__)"
    # -S: skip site processing, so this environment's editable install (a .pth hook) is not
    # active; its site-packages still provide the dependencies, after the wheel's target.
    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    done = subprocess.run([sys.executable, "-S", "-c", code], env={"PYTHONPATH": path, "PATH": ""}, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert all(line.startswith(str(target)) for line in done.stdout.split()), done.stdout


def test_importing_fedlora_does_not_import_torch_or_flwr():
    code = "import sys, fedlora, fedlora.cli.app; print(sorted(m for m in ('torch', 'flwr', 'ray') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "flwr", "ray"):
                raise ImportError(f"No module named {name!r} (blocked)")
    sys.meta_path.insert(0, Block())
    sys.argv = ["fedlora"] + sys.argv[1:]
    from fedlora.cli.app import main
    main()
    """
)


def test_a_command_that_needs_a_missing_extra_names_it():
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "compress"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'fedlora[client]'" in done.stderr
    assert "Traceback" not in done.stderr
    helped = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "simulate" in helped.stdout
    node = BLOCK_TORCH.replace("from fedlora.cli.app import main", "from fedlora.client.node import main")
    done = subprocess.run([sys.executable, "-c", node, "--insecure", "--node-config", "partition-id=0"], capture_output=True, text=True)
    assert done.returncode == 2 and "pip install 'fedlora[client]'" in done.stderr and "Traceback" not in done.stderr
