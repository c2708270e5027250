"""fedlora device runtime: int8 inference with numpy alone, bit-exact to TFLM / CMSIS-NN.

Imports numpy (and, lazily, ``cryptography`` for signatures) and nothing else: no torch,
no flwr, no ``fedlora`` core module. Parts, in dependency order:

* :mod:`.fixed_point` — QuantizeMultiplier and MultiplyByQuantizedMultiplier (double and
  single rounding), vectorised over numpy int arrays.
* :mod:`.quantization` — scales, zero points, bias and activation ranges as TFLite
  computes them.
* :mod:`.fully_connected` — the int8 FULLY_CONNECTED kernel, Prepare / Eval.
* :mod:`.post_training` — float weights and calibrated ranges in, int8 FC specs out
  (post-training quantization as TFLite's converter does it).
* :mod:`.chain` and :mod:`.factorized` — chained FCs, and ``y = U(Vx)`` on top of them.
* :mod:`.linear` — a float model's linear layer as an int8 chain with float32 quantize /
  dequantize around it.
* :mod:`.ops`, :mod:`.models`, :mod:`.char_transformer`, :mod:`.mlp` — whole-model
  inference: int8 linear layers, float32 glue (embeddings, layer norm, attention, GELU);
  :mod:`.registry` — the architectures by name.
* :mod:`.safetensors_io`, :mod:`.signing`, :mod:`.manifest`, :mod:`.bundle` — the device
  bundle on disk: written, signed, and checked before anything runs (:mod:`.manifest`
  checks the files a manifest pins, for the base bundle too).
* :mod:`.evaluation` — metrics and top-1 agreement in numpy.
* :mod:`.export_c` — a C header for the portable reference kernels in ``c/``.
"""

from .bundle import DeviceBundle, DeviceBundleError, Reference, load_device_bundle, write_device_bundle
from .chain import FullyConnectedChain
from .export_c import (
    C_SOURCE_DIR,
    render_c_header,
    render_c_model_header,
    write_c_header,
    write_c_model_header,
)
from .factorized import FactorizedLinear
from .fixed_point import multiply_by_quantized_multiplier, quantize_multiplier
from .fully_connected import (
    FullyConnectedSpec,
    PreparedFullyConnected,
    eval_fully_connected,
    fully_connected_int8,
    prepare_fully_connected,
)
from .linear import Int8Linear
from .models import RuntimeModel
from .post_training import quantize_linear
from .registry import architecture
from .quantization import (
    activation_range,
    asymmetric_params_from_range,
    dequantize_activation,
    dequantize_symmetric,
    effective_output_scale,
    quantize_activation,
    quantize_bias,
    quantize_symmetric,
)

__all__ = [
    "C_SOURCE_DIR",
    "DeviceBundle",
    "DeviceBundleError",
    "Int8Linear",
    "Reference",
    "RuntimeModel",
    "architecture",
    "load_device_bundle",
    "quantize_linear",
    "render_c_model_header",
    "write_c_model_header",
    "write_device_bundle",
    "FactorizedLinear",
    "FullyConnectedChain",
    "FullyConnectedSpec",
    "PreparedFullyConnected",
    "activation_range",
    "asymmetric_params_from_range",
    "dequantize_activation",
    "dequantize_symmetric",
    "effective_output_scale",
    "eval_fully_connected",
    "fully_connected_int8",
    "multiply_by_quantized_multiplier",
    "prepare_fully_connected",
    "quantize_activation",
    "quantize_bias",
    "quantize_multiplier",
    "quantize_symmetric",
    "render_c_header",
    "write_c_header",
]
