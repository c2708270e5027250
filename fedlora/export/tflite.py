"""Write a chain of int8 FULLY_CONNECTED ops as a ``.tflite`` flatbuffer, without TensorFlow.

The model is built field by field with the pure-Python ``flatbuffers.Builder``. The
numbers below are the field slots (vtable indices) and enum values of the TFLite schema
(``tensorflow/lite/schema/schema.fbs``, file identifier ``TFL3``, schema version 3); they
are written out here so that this module needs nothing but ``flatbuffers`` and numpy.

Graph: ``input (batch, depth) int8 → FC → … → FC → output (batch, out) int8``, or
several such chains side by side in one subgraph (the int8 parts of a model). Each FC
has int8 weights (out, depth) with one scale per output channel (``quantized_dimension``
0) or one per tensor, zero points 0; an optional int32 bias with scale ``s_in·s_w[c]``;
a fused activation; and int8 activations with asymmetric scale and zero point. These are
exactly the tensors and parameters of a :class:`FullyConnectedChain`, so TFLM derives the
same multipliers, shifts and clamps from the file as the numpy runtime does.

Per-channel weights need a recent TFLM: its FULLY_CONNECTED kernel gained them in
tflite-micro PR #2673 (2024-09). Builds from 2024-05 to then reject such models in
Prepare (PR #2602); older ones silently run them with a wrong, per-tensor multiplier.
The ``tflite-micro`` wheel this project tests against runs them bit-exactly. For an old
interpreter, build the chain with one weight scale per layer (per-tensor).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fedlora.device_runtime.chain import FullyConnectedChain

TFLITE_SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"
# Buffer data is 16-byte aligned, as the converter writes it (schema: force_align: 16).
BUFFER_ALIGNMENT = 16

# enum TensorType
TENSOR_INT32 = 2
TENSOR_INT8 = 9
# enum BuiltinOperator
BUILTIN_FULLY_CONNECTED = 9
# TFLite's op version for FULLY_CONNECTED with int8 inputs (informational: TFLM ignores it).
FULLY_CONNECTED_INT8_VERSION = 4
# union BuiltinOptions: the FullyConnectedOptions member
BUILTIN_OPTIONS_FULLY_CONNECTED = 8
# enum ActivationFunctionType
FUSED_ACTIVATION = {"none": 0, "relu": 1, "relu6": 3}

# Field slots, per table, in schema order.
MODEL_VERSION, MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_DESCRIPTION, MODEL_BUFFERS = range(5)
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_OPERATORS, SUBGRAPH_NAME = range(5)
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_NAME, TENSOR_QUANTIZATION = range(5)
QUANT_SCALE, QUANT_ZERO_POINT, QUANT_QUANTIZED_DIMENSION = 2, 3, 6  # 0, 1: min, max
BUFFER_DATA = 0
OPERATOR_OPCODE_INDEX, OPERATOR_INPUTS, OPERATOR_OUTPUTS = 0, 1, 2
OPERATOR_BUILTIN_OPTIONS_TYPE, OPERATOR_BUILTIN_OPTIONS = 3, 4
OPCODE_DEPRECATED_BUILTIN_CODE, OPCODE_VERSION, OPCODE_BUILTIN_CODE = 0, 2, 3  # 1: custom
FC_OPTIONS_FUSED_ACTIVATION = 0  # 1: weights_format (DEFAULT = 0), 2: keep_num_dims
# Number of fields each table declares (the vtable size StartObject needs).
NUM_FIELDS = {"Model": 10, "SubGraph": 6, "Tensor": 11, "QuantizationParameters": 7,
              "Buffer": 3, "Operator": 14, "OperatorCode": 4, "FullyConnectedOptions": 6}

NO_TENSOR = -1  # an omitted optional operator input (a FC without bias)


def build_tflite_model(
    chains: FullyConnectedChain | Mapping[str, FullyConnectedChain],
    batch: int = 1,
    description: str = "fedlora int8 FC chain",
) -> bytes:
    """Serialize one chain, or several named ones, as a ``.tflite`` model with a fixed batch.

    One chain: one subgraph with one int8 input (batch, input_depth) and one int8 output
    (batch, output_depth). Several chains (the int8 parts of a model, by name): still one
    subgraph, holding every chain side by side, unconnected — input ``i`` and output ``i``
    belong to the ``i``-th chain of the mapping, and tensor names start with the chain's
    name. One ``invoke()`` runs them all; TFLM plans their memory together. Returns the
    flatbuffer bytes.
    """
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    named = {"": chains} if isinstance(chains, FullyConnectedChain) else dict(chains)
    if not named:
        raise ValueError("a .tflite model needs at least one chain")
    try:
        import flatbuffers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("writing .tflite needs the 'flatbuffers' package") from error
    writer = _ModelWriter(flatbuffers.Builder(1024))
    return writer.build(named, int(batch), description)


def write_tflite_model(
    chains: FullyConnectedChain | Mapping[str, FullyConnectedChain], path: str | Path, batch: int = 1,
    description: str = "fedlora int8 FC chain",
) -> Path:
    """Write :func:`build_tflite_model` to ``path``."""
    path = Path(path)
    path.write_bytes(build_tflite_model(chains, batch, description))
    return path


class _ModelWriter:
    """Collects tensors and buffers of one subgraph, then serializes them bottom-up.

    Flatbuffers are built from the leaves: every vector, string and child table must be
    finished before the table that points at it is started.
    """

    def __init__(self, builder):
        self.b = builder
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty buffer activations use
        self.tensors: list[dict] = []

    def build(self, chains: dict[str, FullyConnectedChain], batch: int, description: str) -> bytes:
        operators, inputs, outputs = [], [], []
        for label, chain in chains.items():
            prefix = f"{label}/" if label else ""
            first = chain.layers[0].spec
            x = self._add_tensor(f"{prefix}input", (batch, chain.input_depth), TENSOR_INT8,
                                 [first.input_scale], [first.input_zero_point])
            inputs.append(x)
            for i, layer in enumerate(chain.layers):
                spec = layer.spec
                w_scale = np.asarray(spec.weight_scale, dtype=np.float32).reshape(-1)
                weights = self._add_tensor(
                    f"{prefix}fc{i}/weights", spec.weights.shape, TENSOR_INT8, w_scale,
                    np.zeros(w_scale.size, dtype=np.int64), data=spec.weights.astype(np.int8),
                )
                bias = NO_TENSOR
                if spec.bias is not None:
                    bias_scale = np.float32(spec.input_scale) * w_scale  # float32 product
                    bias = self._add_tensor(
                        f"{prefix}fc{i}/bias", (layer.output_depth,), TENSOR_INT32, bias_scale,
                        np.zeros(bias_scale.size, dtype=np.int64), data=layer.bias.astype("<i4"),
                    )
                y_name = f"{prefix}output" if i == len(chain.layers) - 1 else f"{prefix}fc{i}/output"
                y = self._add_tensor(y_name, (batch, layer.output_depth), TENSOR_INT8,
                                     [spec.output_scale], [spec.output_zero_point])
                operators.append(((x, weights, bias), (y,), FUSED_ACTIVATION[spec.activation]))
                x = y
            outputs.append(x)
        return self._serialize(operators, inputs, outputs, description=description)

    def _add_tensor(self, name, shape, tensor_type, scales, zero_points, data=None) -> int:
        buffer = 0
        if data is not None:
            buffer = len(self.buffers)
            self.buffers.append(np.ascontiguousarray(data).tobytes())
        self.tensors.append(dict(
            name=name, shape=np.asarray(shape, dtype="<i4"), type=tensor_type, buffer=buffer,
            scale=np.asarray(scales, dtype="<f4").reshape(-1),
            zero_point=np.asarray(zero_points, dtype="<i8").reshape(-1),
        ))
        return len(self.tensors) - 1

    def _serialize(self, operators, graph_inputs, graph_outputs, description) -> bytes:
        b = self.b
        buffers = [self._buffer(data) for data in self.buffers]
        tensors = [self._tensor(t) for t in self.tensors]
        ops = [self._operator(inputs, outputs, act) for inputs, outputs, act in operators]

        tensor_vec = self._offsets(tensors)
        inputs_vec = b.CreateNumpyVector(np.array(graph_inputs, dtype="<i4"))
        outputs_vec = b.CreateNumpyVector(np.array(graph_outputs, dtype="<i4"))
        ops_vec = self._offsets(ops)
        name = b.CreateString("main")
        b.StartObject(NUM_FIELDS["SubGraph"])
        b.PrependUOffsetTRelativeSlot(SUBGRAPH_TENSORS, tensor_vec, 0)
        b.PrependUOffsetTRelativeSlot(SUBGRAPH_INPUTS, inputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(SUBGRAPH_OUTPUTS, outputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(SUBGRAPH_OPERATORS, ops_vec, 0)
        b.PrependUOffsetTRelativeSlot(SUBGRAPH_NAME, name, 0)
        subgraph = b.EndObject()

        b.StartObject(NUM_FIELDS["OperatorCode"])
        b.PrependInt8Slot(OPCODE_DEPRECATED_BUILTIN_CODE, BUILTIN_FULLY_CONNECTED, 0)
        b.PrependInt32Slot(OPCODE_VERSION, FULLY_CONNECTED_INT8_VERSION, 1)
        b.PrependInt32Slot(OPCODE_BUILTIN_CODE, BUILTIN_FULLY_CONNECTED, 0)
        opcode = b.EndObject()

        opcodes_vec = self._offsets([opcode])
        subgraphs_vec = self._offsets([subgraph])
        description_str = b.CreateString(description)
        buffers_vec = self._offsets(buffers)
        b.StartObject(NUM_FIELDS["Model"])
        b.PrependUint32Slot(MODEL_VERSION, TFLITE_SCHEMA_VERSION, 0)
        b.PrependUOffsetTRelativeSlot(MODEL_OPERATOR_CODES, opcodes_vec, 0)
        b.PrependUOffsetTRelativeSlot(MODEL_SUBGRAPHS, subgraphs_vec, 0)
        b.PrependUOffsetTRelativeSlot(MODEL_DESCRIPTION, description_str, 0)
        b.PrependUOffsetTRelativeSlot(MODEL_BUFFERS, buffers_vec, 0)
        model = b.EndObject()
        b.Finish(model, file_identifier=FILE_IDENTIFIER)
        return bytes(b.Output())

    def _buffer(self, data: bytes) -> int:
        b = self.b
        data_vec = self._aligned_bytes(data) if data else None
        b.StartObject(NUM_FIELDS["Buffer"])
        if data_vec is not None:
            b.PrependUOffsetTRelativeSlot(BUFFER_DATA, data_vec, 0)
        return b.EndObject()

    def _aligned_bytes(self, data: bytes) -> int:
        # CreateByteVector aligns to 4 only; reserve the bytes with a 16-byte alignment
        # and copy them in, as Builder.CreateNumpyVector does internally.
        b = self.b
        b.StartVector(1, len(data), BUFFER_ALIGNMENT)
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        return b.EndVector()

    def _tensor(self, t: dict) -> int:
        b = self.b
        scale = b.CreateNumpyVector(t["scale"])
        zero_point = b.CreateNumpyVector(t["zero_point"])
        b.StartObject(NUM_FIELDS["QuantizationParameters"])
        b.PrependUOffsetTRelativeSlot(QUANT_SCALE, scale, 0)
        b.PrependUOffsetTRelativeSlot(QUANT_ZERO_POINT, zero_point, 0)
        b.PrependInt32Slot(QUANT_QUANTIZED_DIMENSION, 0, 0)  # output channels: dim 0
        quantization = b.EndObject()
        shape = b.CreateNumpyVector(t["shape"])
        name = b.CreateString(t["name"])
        b.StartObject(NUM_FIELDS["Tensor"])
        b.PrependUOffsetTRelativeSlot(TENSOR_SHAPE, shape, 0)
        b.PrependInt8Slot(TENSOR_TYPE, t["type"], 0)
        b.PrependUint32Slot(TENSOR_BUFFER, t["buffer"], 0)
        b.PrependUOffsetTRelativeSlot(TENSOR_NAME, name, 0)
        b.PrependUOffsetTRelativeSlot(TENSOR_QUANTIZATION, quantization, 0)
        return b.EndObject()

    def _operator(self, inputs, outputs, activation: int) -> int:
        b = self.b
        inputs_vec = b.CreateNumpyVector(np.asarray(inputs, dtype="<i4"))
        outputs_vec = b.CreateNumpyVector(np.asarray(outputs, dtype="<i4"))
        b.StartObject(NUM_FIELDS["FullyConnectedOptions"])
        b.PrependInt8Slot(FC_OPTIONS_FUSED_ACTIVATION, activation, 0)
        options = b.EndObject()
        b.StartObject(NUM_FIELDS["Operator"])
        b.PrependUint32Slot(OPERATOR_OPCODE_INDEX, 0, 0)
        b.PrependUOffsetTRelativeSlot(OPERATOR_INPUTS, inputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(OPERATOR_OUTPUTS, outputs_vec, 0)
        b.PrependUint8Slot(OPERATOR_BUILTIN_OPTIONS_TYPE, BUILTIN_OPTIONS_FULLY_CONNECTED, 0)
        b.PrependUOffsetTRelativeSlot(OPERATOR_BUILTIN_OPTIONS, options, 0)
        return b.EndObject()

    def _offsets(self, offsets: list[int]) -> int:
        b = self.b
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()
