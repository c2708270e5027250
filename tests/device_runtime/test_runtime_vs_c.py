"""numpy runtime vs the portable C reference (device_runtime/c), on exported headers.

One C program per rounding mode includes every case's generated header and runs the case
named on its command line; it is built with the system compiler into tmp_path. The
numpy outputs must equal the C outputs bit for bit: 0 mismatches.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fc_cases import edge_cases, random_cases
from tflm_reference import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier

from fedlora.device_runtime import C_SOURCE_DIR, FullyConnectedChain, write_c_header

CASES = {**edge_cases(), **random_cases(seed=7, count=30)}
ROUNDINGS = ("double", "single")

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fedlora_fc.h"
%(includes)s

typedef struct { const fedlora_fc_params *layers; int32_t num_layers; } model_t;
static const model_t models[] = {
%(models)s
};

static void *read_file(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  void *data;
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END); *size = ftell(f); fseek(f, 0, SEEK_SET);
  data = malloc(*size > 0 ? (size_t)*size : 1);
  if (fread(data, 1, (size_t)*size, f) != (size_t)*size) { perror(path); exit(2); }
  fclose(f);
  return data;
}

static void write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size) { perror(path); exit(2); }
  fclose(f);
}

int main(int argc, char **argv) {
  long size;
  if (argc == 4 && strcmp(argv[1], "mbqm") == 0) {  /* int32 triples (x, M, shift) */
    int32_t *in = (int32_t *)read_file(argv[2], &size);
    long n = size / 12, i;
    int32_t *out = (int32_t *)malloc((size_t)(n > 0 ? n : 1) * 4);
    for (i = 0; i < n; ++i)
      out[i] = fedlora_multiply_by_quantized_multiplier(in[3 * i], in[3 * i + 1],
                                                        (int)in[3 * i + 2]);
    write_file(argv[3], out, (size_t)n * 4);
    return 0;
  }
  if (argc == 6 && strcmp(argv[1], "fc") == 0) {  /* model index, batch, input, output */
    const model_t *m = &models[atoi(argv[2])];
    const int32_t batches = atoi(argv[3]);
    const fedlora_fc_params *last = &m->layers[m->num_layers - 1];
    int8_t *input = (int8_t *)read_file(argv[4], &size);
    size_t out_size = (size_t)batches * (size_t)last->output_depth;
    size_t scratch_size = fedlora_fc_chain_get_buffer_size(m->layers, m->num_layers, batches);
    int8_t *output = (int8_t *)malloc(out_size);
    int8_t *scratch = (int8_t *)malloc(scratch_size > 0 ? scratch_size : 1);
    if (size != (long)batches * m->layers[0].accum_depth) return 3;
    if (fedlora_fc_chain_s8(m->layers, m->num_layers, batches, input, output, scratch) != 0)
      return 4;
    write_file(argv[5], output, out_size);
    return 0;
  }
  return 1;
}
"""


def find_compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module", params=ROUNDINGS)
def c_build(request, tmp_path_factory):
    """(rounding, harness binary, {case name: (index, chain)}) for one rounding mode."""
    compiler = find_compiler()
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: cannot build the C reference")
    rounding = request.param
    build = tmp_path_factory.mktemp(f"c_{rounding}")
    chains, includes, models = {}, [], []
    for index, (name, (specs, _)) in enumerate(CASES.items()):
        chain = FullyConnectedChain(specs, rounding)
        write_c_header(chain, build / f"case_{index}.h")
        chains[name] = (index, chain)
        includes.append(f'#include "case_{index}.h"')
        models.append(f"  {{case_{index}_layers, CASE_{index}_NUM_LAYERS}},")
    (build / "harness.c").write_text(
        HARNESS % {"includes": "\n".join(includes), "models": "\n".join(models)})
    binary = build / "harness"
    command = [
        compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
        f"-DFEDLORA_SINGLE_ROUNDING={int(rounding == 'single')}",
        f"-I{C_SOURCE_DIR}", f"-I{build}", str(build / "harness.c"),
        str(C_SOURCE_DIR / "fedlora_fc.c"), "-o", str(binary),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"C build failed:\n{' '.join(command)}\n{result.stderr}"
    return rounding, binary, chains


def run_c(binary: Path, index: int, x: np.ndarray, out_depth: int, tmp: Path) -> np.ndarray:
    (tmp / "in.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    subprocess.run([str(binary), "fc", str(index), str(x.shape[0]), str(tmp / "in.bin"),
                    str(tmp / "out.bin")], check=True)
    return np.frombuffer((tmp / "out.bin").read_bytes(), dtype=np.int8).reshape(-1, out_depth)


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_matches_c_reference(c_build, name, tmp_path):
    rounding, binary, chains = c_build
    index, chain = chains[name]
    x = CASES[name][1]
    expected = run_c(binary, index, x, chain.output_depth, tmp_path)
    got = chain(x)
    mismatches = int((got != expected).sum())
    assert mismatches == 0, f"{name} ({rounding}): {mismatches} of {got.size} outputs differ"


def test_multiply_by_quantized_multiplier_matches_c(c_build, tmp_path):
    """The C requantizer against the pure-Python one, including INT32_MIN·INT32_MIN."""
    rounding, binary, _ = c_build
    rng = np.random.default_rng(5)
    n = 20000
    x = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    x[:8] = [INT32_MIN, INT32_MAX, 0, 1, -1, INT32_MIN + 1, 2**30, -(2**30)]
    m = rng.integers(0, INT32_MAX, n, endpoint=True)
    shift = rng.integers(-31, 31, n)  # [-31, 30]
    if rounding == "double":  # only the double-rounding kernel is defined for M < 0
        m[:4] = INT32_MIN
        shift[:4] = 0
    triples = np.stack([x, m, shift], axis=1).astype("<i4")
    (tmp_path / "in.bin").write_bytes(triples.tobytes())
    subprocess.run([str(binary), "mbqm", str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                   check=True)
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype="<i4").tolist()
    single = rounding == "single"
    expected = [multiply_by_quantized_multiplier(int(a), int(b), int(c), single)
                for a, b, c in zip(x, m, shift)]
    assert got == expected
