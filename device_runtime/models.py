"""Whole-model inference: what every architecture provides.

An architecture is a float model whose linear layers run as :class:`Int8Linear` s and
whose other operations run in float32 (:mod:`.ops`). It declares, from its
hyper-parameters, which linear layers it has and their shapes, which float32 tensors it
needs, and which activation each linear layer fuses; the bundle loader checks a bundle
against exactly that before building the model. The architectures themselves live in
their own modules and are looked up by name in :mod:`.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .chain import FullyConnectedChain
from .linear import Int8Linear

__all__ = ["RuntimeModel", "check_keys", "positive_int"]


class RuntimeModel(ABC):
    """A model run by the device runtime: integer linear layers, float32 glue."""

    #: the ``architecture.name`` of a bundle manifest
    name: ClassVar[str]
    #: "tokens" (integer ids, (N, T)) or "features" (float, (N, in_features))
    input_kind: ClassVar[str]
    #: True when each linear layer's int8 output is the next one's int8 input (the whole
    #: model is one chain); False when float32 code runs between linear layers
    chained: ClassVar[bool] = False

    def __init__(self, config: Any, linears: Mapping[str, Int8Linear], floats: Mapping[str, np.ndarray]):
        self.config = config
        self.linears = dict(linears)
        self.floats = dict(floats)

    # What a bundle of this architecture must hold (checked by the loader before __init__).

    @classmethod
    @abstractmethod
    def parse_config(cls, architecture: Mapping[str, Any]) -> Any:
        """Validated hyper-parameters from a manifest's ``architecture`` (``ValueError`` if bad)."""

    @classmethod
    @abstractmethod
    def linear_shapes(cls, config: Any) -> dict[str, tuple[int, int]]:
        """``{layer: (in_features, out_features)}`` of every linear layer, in model order."""

    @classmethod
    def fused_activation(cls, config: Any, layer: str) -> str:
        """The activation fused on a linear layer's last FC ("none" unless overridden)."""
        return "none"

    @classmethod
    @abstractmethod
    def float_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of every float32 tensor (embeddings, layer norms)."""

    @classmethod
    def channel_affine_allowed(cls, config: Any, layer: str) -> bool:
        """Whether a linear layer's output may carry a per-channel float affine."""
        return True

    # Running.

    @abstractmethod
    def check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs`` validated and converted; ``ValueError`` naming what is wrong."""

    @abstractmethod
    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Logits, float32, last axis the classes (vocabulary)."""

    @abstractmethod
    def int8_chains(self) -> dict[str, FullyConnectedChain]:
        """The parts that run in int8 from end to end, by name: what the C header and the
        ``.tflite`` export."""

    @abstractmethod
    def peak_activation_bytes(self, batch: int = 1) -> int:
        """Peak bytes of activations live at once in one forward pass (see the subclass)."""

    # Derived, shared.

    def architecture(self) -> dict[str, Any]:
        """The manifest's ``architecture``: the name and every hyper-parameter."""
        values = {key: list(v) if isinstance(v, tuple) else v for key, v in vars(self.config).items()}
        return {"name": self.name, **values}

    def flash_bytes(self) -> dict[str, int]:
        """Read-only bytes: int8 weights, int32 biases, quantization parameters (int32
        multipliers and shifts, per-layer scalars), float32 tensors (embeddings, layer
        norms, per-channel output affines)."""
        totals = {"weights": 0, "biases": 0, "quant_params": 0}
        for chain in self.int8_chains().values():
            for key, value in chain.flash_bytes().items():
                if key in totals:
                    totals[key] += value
        floats = sum(4 * int(np.prod(shape)) for shape in self.float_shapes(self.config).values())
        floats += sum(8 * linear.out_features for linear in self.linears.values()
                      if linear.channel_scale is not None)
        totals["float32_tensors"] = floats
        totals["total"] = sum(totals.values())
        return totals


#: the largest width, depth or vocabulary a bundle may declare: checked before anything is
#: built, so a hostile manifest cannot make the loader allocate (the models fedlora exports
#: are far smaller; a larger one would not fit a device anyway)
MAX_SIZE = 1 << 16
MAX_LAYERS = 256


def positive_int(architecture: Mapping[str, Any], key: str, maximum: int = MAX_SIZE) -> int:
    """``architecture[key]`` as an int in 1..``maximum``, or ``ValueError`` naming the key."""
    value = architecture.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"architecture {key!r} must be a positive integer, got {value!r}")
    if value > maximum:
        raise ValueError(f"architecture {key!r} is {value}, and a device bundle may declare at most {maximum}")
    return value


def check_keys(architecture: Mapping[str, Any], expected: set[str]) -> None:
    keys = set(architecture) - {"name"}
    if keys != expected:
        missing, unknown = sorted(expected - keys), sorted(keys - expected)
        raise ValueError(
            "architecture has "
            + "; ".join(part for part in (
                f"missing keys {missing}" if missing else "", f"unknown keys {unknown}" if unknown else ""
            ) if part)
        )
