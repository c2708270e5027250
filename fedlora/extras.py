"""Optional dependencies, imported with an error that names the extra to install.

``import fedlora`` needs numpy only, so that the device runtime installs alone. Commands
that train or federate call :func:`require` before they import torch or flwr.
"""

import importlib
from types import ModuleType

from fedlora.errors import FedloraError

# module -> the extra that provides it
_EXTRA_OF = {
    "torch": "client",
    "flwr": "client",
    "safetensors": "client",
    "sklearn": "client",
    "flatbuffers": "client",
    "ray": "server",
    "matplotlib": "server",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a FedloraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_OF.get(module.split(".")[0], "all")
        raise FedloraError(
            f"this command needs the Python package {module!r}, which is not installed "
            f"({exc}). Install it with: pip install 'fedlora[{extra}]' "
            "(see the README for the CPU build of torch)."
        ) from exc
