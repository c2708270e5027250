"""The architectures this runtime can build, by the ``architecture.name`` of a manifest.

Each mirrors a task model of the core library, module name for module name:

* ``char_transformer`` (:mod:`.char_transformer`) — ``fedlora.tasks.char_transformer``;
* ``mlp`` (:mod:`.mlp`) — ``fedlora.tasks.mlp``.

Imports run one way: the architectures import :mod:`.models`, this module imports them.
"""

from __future__ import annotations

from .char_transformer import CharTransformerRuntime
from .mlp import MLPRuntime
from .models import RuntimeModel

__all__ = ["architecture"]

_ARCHITECTURES: dict[str, type[RuntimeModel]] = {cls.name: cls for cls in (CharTransformerRuntime, MLPRuntime)}


def architecture(name: str) -> type[RuntimeModel]:
    """The runtime class of architecture ``name``; ``ValueError`` naming the known ones."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; this runtime knows {', '.join(sorted(_ARCHITECTURES))}")
    return _ARCHITECTURES[name]
