"""Test vectors from a real exported model, and the two oracles that replay them: the C
reference compiled with the system compiler, and the TFLM interpreter."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from fedlora.device_runtime import RuntimeModel
from fedlora.export.tflite import build_tflite_model

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "%(header)s"

/* argv: chain index, batches, input file, output file. */
int main(int argc, char **argv) {
  const fedlora_fc_chain *chain;
  int32_t batches;
  long size;
  FILE *f;
  int8_t *input, *output, *scratch;
  size_t out_size, scratch_size;
  if (argc != 5) return 1;
  chain = &%(name)s_chains[atoi(argv[1])];
  batches = atoi(argv[2]);
  f = fopen(argv[3], "rb");
  if (!f) return 2;
  fseek(f, 0, SEEK_END); size = ftell(f); fseek(f, 0, SEEK_SET);
  if (size != (long)batches * chain->layers[0].accum_depth) return 3;
  input = (int8_t *)malloc((size_t)size);
  if (fread(input, 1, (size_t)size, f) != (size_t)size) return 2;
  fclose(f);
  out_size = (size_t)batches * (size_t)chain->layers[chain->num_layers - 1].output_depth;
  scratch_size = fedlora_fc_chain_get_buffer_size(chain->layers, chain->num_layers, batches);
  output = (int8_t *)malloc(out_size);
  scratch = (int8_t *)malloc(scratch_size > 0 ? scratch_size : 1);
  if (fedlora_fc_chain_s8(chain->layers, chain->num_layers, batches, input, output, scratch) != 0) return 4;
  f = fopen(argv[4], "wb");
  if (!f || fwrite(output, 1, out_size, f) != out_size) return 2;
  fclose(f);
  return 0;
}
"""


def chain_vectors(model: RuntimeModel, inputs: np.ndarray, rows: int = 128) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per int8 chain of ``model``: up to ``rows`` int8 inputs it saw while running on
    ``inputs``, and the int8 outputs the numpy runtime gave."""
    chains = model.int8_chains()
    if set(chains) == {"mlp"}:  # the whole MLP is one chain from quantized features
        q = model.linears["fc1"].quantize(model.check_inputs(inputs)[:rows])
        return {"mlp": (q, chains["mlp"](q))}
    seen: dict[str, list] = {name: [] for name in chains}
    for name, linear in model.linears.items():
        linear.tracer = lambda q, out, name=name: seen[name].append((q, out))
    try:
        model(inputs)
    finally:
        for linear in model.linears.values():
            linear.tracer = None
    return {
        name: (np.concatenate([q for q, _ in calls])[:rows], np.concatenate([o for _, o in calls])[:rows])
        for name, calls in seen.items()
    }


def find_compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return path
    return None


def build_c_harness(c_dir: Path, header: Path, name: str, rounding: str, build: Path) -> Path:
    """Compile the exported header with the fedlora_fc.c the export copied next to it."""
    (build / "harness.c").write_text(HARNESS % {"header": header.name, "name": name})
    binary = build / "harness"
    command = [
        find_compiler(), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
        f"-DFEDLORA_SINGLE_ROUNDING={int(rounding == 'single')}", f"-I{c_dir}",
        str(build / "harness.c"), str(c_dir / "fedlora_fc.c"), "-o", str(binary),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"C build failed:\n{' '.join(command)}\n{done.stderr}"
    return binary


def run_c(binary: Path, index: int, x: np.ndarray, out_depth: int, tmp: Path) -> np.ndarray:
    (tmp / "in.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    subprocess.run([str(binary), str(index), str(len(x)), str(tmp / "in.bin"), str(tmp / "out.bin")], check=True)
    return np.frombuffer((tmp / "out.bin").read_bytes(), dtype=np.int8).reshape(-1, out_depth)


def run_tflm(model_bytes: bytes, inputs: list[np.ndarray], activation_bytes: int = 0) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    # The default arena (10× the model) is too small for large batches of activations.
    arena = 10 * len(model_bytes) + 2 * activation_bytes
    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    return [interpreter.get_output(i) for i in range(len(inputs))]


def tflm_outputs(model: RuntimeModel, vectors: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """TFLM on a .tflite of every chain with the vectors' batch size, all chains at once."""
    rows = min(len(q) for q, _ in vectors.values())
    chains = model.int8_chains()
    activations = rows * sum(chain.input_depth + sum(layer.output_depth for layer in chain.layers)
                             for chain in chains.values())
    outputs = run_tflm(build_tflite_model(chains, batch=rows), [vectors[name][0][:rows] for name in chains], activations)
    return dict(zip(chains, outputs))
