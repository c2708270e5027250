/* fedlora int8 fully-connected reference kernels (portable C99, standard library only).
 *
 * Bit-accurate to the TFLM reference kernel
 * (tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h) and to
 * CMSIS-NN arm_fully_connected_s8, and to the numpy runtime in fedlora.device_runtime.
 *
 * Contract, for one layer and every batch row b and output channel out_c:
 *
 *   acc    = sum_d filter[out_c][d] * (input[b][d] + input_offset) + bias[out_c]   (int32)
 *   scaled = MultiplyByQuantizedMultiplier(acc, output_multiplier[out_c],
 *                                          output_shift[out_c])
 *   output[b][out_c] = clamp(scaled + output_offset,
 *                            output_activation_min, output_activation_max)       (int8)
 *
 * Value ranges: input, filter, output int8; input_offset = -input_zero_point in
 * [-127, 128]; output_offset = output_zero_point in [-128, 127]; output_multiplier in
 * [0, 2^31); output_shift in [-31, 30]; -128 <= activation_min <= activation_max <= 127.
 * The int32 accumulator wraps on overflow, as it does (in practice) in TFLM.
 * Assumes two's complement and an arithmetic >> on negative values, as TFLM and
 * CMSIS-NN do (implementation-defined in C99; true of gcc, clang, armcc, IAR).
 *
 * Rounding: FEDLORA_SINGLE_ROUNDING selects the requantization, like TFLM's
 * TFLITE_SINGLE_ROUNDING and CMSIS-NN's CMSIS_NN_USE_SINGLE_ROUNDING. 0 (the default):
 * double rounding, SaturatingRoundingDoublingHighMul then RoundingDivideByPOT. 1: one
 * rounding, (acc * M + 2^(30 - shift)) >> (31 - shift) in 64 bits. The multipliers and
 * shifts must come from the same mode (fedlora.device_runtime.export_c records it).
 */
#ifndef FEDLORA_FC_H_
#define FEDLORA_FC_H_

#include <stddef.h>
#include <stdint.h>

#ifndef FEDLORA_SINGLE_ROUNDING
#define FEDLORA_SINGLE_ROUNDING 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* One int8 FC layer: constant data (flash) and prepared parameters. */
typedef struct {
  int32_t accum_depth;               /* input features (depth of the dot product) */
  int32_t output_depth;              /* output features (channels) */
  int32_t input_offset;              /* -input zero point */
  int32_t output_offset;             /* output zero point */
  int32_t output_activation_min;     /* fused activation clamp, int8 range */
  int32_t output_activation_max;
  const int8_t *filter_data;         /* [output_depth][accum_depth], row-major */
  const int32_t *bias_data;          /* [output_depth], or NULL for no bias */
  const int32_t *output_multiplier;  /* [output_depth], Q0.31 */
  const int32_t *output_shift;       /* [output_depth], > 0 shifts left */
} fedlora_fc_params;

/* A named chain of layers with the quantization of its int8 input and output, which the
 * float code around it uses to quantize into it and dequantize out of it (real = scale *
 * (q - zero_point)). A model header (fedlora export) holds one per int8 part of a model. */
typedef struct {
  const char *name;                  /* e.g. "blocks.0.attn.q" */
  int32_t num_layers;
  const fedlora_fc_params *layers;   /* [num_layers] */
  float input_scale;
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
} fedlora_fc_chain;

/* TFLM MultiplyByQuantizedMultiplier: round(x * multiplier * 2^(shift - 31)) in the
 * rounding mode selected by FEDLORA_SINGLE_ROUNDING. */
int32_t fedlora_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift);

/* One layer. input: [batches][accum_depth]; output: [batches][output_depth]. */
void fedlora_fully_connected_s8(const fedlora_fc_params *params, int32_t batches,
                                const int8_t *input, int8_t *output);

/* Scratch bytes fedlora_fc_chain_s8 needs for the activations between layers:
 * 0 for one layer, batches * (widest intermediate) for two, twice that for more.
 * Call it before running to plan memory. */
size_t fedlora_fc_chain_get_buffer_size(const fedlora_fc_params *layers, int32_t num_layers,
                                        int32_t batches);

/* A chain of layers: layer i's output feeds layer i + 1. input: [batches][accum_depth of
 * layer 0]; output: [batches][output_depth of the last layer]; scratch: at least
 * fedlora_fc_chain_get_buffer_size bytes (may be NULL when that is 0).
 * Returns 0 on success, -1 if consecutive layers' depths do not match. */
int fedlora_fc_chain_s8(const fedlora_fc_params *layers, int32_t num_layers, int32_t batches,
                        const int8_t *input, int8_t *output, int8_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* FEDLORA_FC_H_ */
