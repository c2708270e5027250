/* fedlora int8 fully-connected reference kernels; see fedlora_fc.h for the contract. */
#include "fedlora_fc.h"

/* int32 arithmetic that wraps on overflow, as the TFLM kernel's int32 accumulator does
 * in practice. Signed overflow is undefined in C, so go through uint32_t (defined to
 * wrap) and convert back (two's complement on every target we support). */
static int32_t wrapping_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

#if !FEDLORA_SINGLE_ROUNDING
/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating the one
 * overflowing case INT32_MIN * INT32_MIN. The division truncates toward zero, hence the
 * sign-dependent nudge. */
static int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  const int overflow = (a == b) && (a == INT32_MIN);
  const int64_t ab_64 = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab_64 >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t ab_x2_high32 = (int32_t)((ab_64 + nudge) / ((int64_t)1 << 31));
  return overflow ? INT32_MAX : ab_x2_high32;
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, ties away from zero; 0 <= exponent <= 31. */
static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}
#endif

int32_t fedlora_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
#if FEDLORA_SINGLE_ROUNDING
  const int total_shift = 31 - shift; /* 1..62 */
  const int64_t round = (int64_t)1 << (total_shift - 1);
  const int64_t result = ((int64_t)x * multiplier + round) >> total_shift;
  return (int32_t)(uint32_t)(uint64_t)result; /* keep the low 32 bits, like the C++ cast */
#else
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  /* TFLM computes x * (1 << left_shift) in int32; do the same, wrapping. */
  const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
  return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier),
                                right_shift);
#endif
}

void fedlora_fully_connected_s8(const fedlora_fc_params *params, int32_t batches,
                                const int8_t *input, int8_t *output) {
  const int32_t accum_depth = params->accum_depth;
  const int32_t output_depth = params->output_depth;
  const int32_t input_offset = params->input_offset;
  const int32_t output_offset = params->output_offset;
  int32_t b, out_c, d;
  for (b = 0; b < batches; ++b) {
    for (out_c = 0; out_c < output_depth; ++out_c) {
      int32_t acc = 0;
      for (d = 0; d < accum_depth; ++d) {
        const int32_t input_val = input[b * accum_depth + d];
        const int32_t filter_val = params->filter_data[out_c * accum_depth + d];
        acc = wrapping_add(acc, filter_val * (input_val + input_offset));
      }
      if (params->bias_data != NULL) {
        acc = wrapping_add(acc, params->bias_data[out_c]);
      }
      acc = fedlora_multiply_by_quantized_multiplier(acc, params->output_multiplier[out_c],
                                                     params->output_shift[out_c]);
      acc = wrapping_add(acc, output_offset);
      if (acc < params->output_activation_min) acc = params->output_activation_min;
      if (acc > params->output_activation_max) acc = params->output_activation_max;
      output[b * output_depth + out_c] = (int8_t)acc;
    }
  }
}

/* Widest activation passed between two layers, in int8 elements per batch row. */
static size_t widest_intermediate(const fedlora_fc_params *layers, int32_t num_layers) {
  size_t widest = 0;
  int32_t i;
  for (i = 0; i + 1 < num_layers; ++i) {
    const size_t width = (size_t)layers[i].output_depth;
    if (width > widest) widest = width;
  }
  return widest;
}

size_t fedlora_fc_chain_get_buffer_size(const fedlora_fc_params *layers, int32_t num_layers,
                                        int32_t batches) {
  /* Layer i reads one buffer while writing the other (ping-pong); two layers need one. */
  const size_t buffers = num_layers > 2 ? 2 : (num_layers == 2 ? 1 : 0);
  return buffers * (size_t)batches * widest_intermediate(layers, num_layers);
}

int fedlora_fc_chain_s8(const fedlora_fc_params *layers, int32_t num_layers, int32_t batches,
                        const int8_t *input, int8_t *output, int8_t *scratch) {
  const size_t stride = (size_t)batches * widest_intermediate(layers, num_layers);
  const int8_t *in = input;
  int32_t i;
  for (i = 0; i + 1 < num_layers; ++i) {
    if (layers[i].output_depth != layers[i + 1].accum_depth) return -1;
  }
  for (i = 0; i < num_layers; ++i) {
    int8_t *out = (i == num_layers - 1) ? output : scratch + (size_t)(i % 2) * stride;
    fedlora_fully_connected_s8(&layers[i], batches, in, out);
    in = out;
  }
  return 0;
}
