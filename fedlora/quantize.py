"""Freeze a factorized model into its INT8 base.

Each factor is a linear map whose output channels are its rows, so both ``U`` (m×k) and
``V`` (k×n) are quantized symmetric per row — exactly what the int8 fully-connected
kernels take. The maths lives in ``device_runtime.quantization`` so the host and the
device can never disagree about it. After quantization the torch factors hold the
*dequantized* INT8 values: clients train adapters against the base the device will run,
so the adapters learn to absorb the quantization error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedlora.device_runtime.quantization import dequantize_symmetric, quantize_symmetric
from fedlora.factorize import factorized_layers

FACTORS = ("u", "v")


def quantize_base(model: nn.Module) -> dict[str, np.ndarray]:
    """Quantize every factorized layer of ``model`` in place and freeze the model.

    Returns the INT8 tensors by name: ``<layer>.<u|v>.q`` (int8) and ``<layer>.<u|v>.scale``
    (float32, one per row).
    """
    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, layer in factorized_layers(model).items():
            for factor in FACTORS:
                parameter = getattr(layer, factor)
                q, scale = quantize_symmetric(parameter.detach().cpu().numpy())
                tensors[f"{name}.{factor}.q"] = q
                tensors[f"{name}.{factor}.scale"] = scale
                parameter.copy_(torch.from_numpy(dequantize_symmetric(q, scale)))
    model.requires_grad_(False)
    return tensors
