// The linear layer of a packed quantized weight: y = x · Wᵀ (+ b) through the W8A8 kernels
// (activations quantized per token inside) or the weight-only kernels. transformer.ts's linear()
// calls this when kernels are on and the weight has a packed form (InferenceModel.packedLinears).
import type * as tf from '@tensorflow/tfjs';
import type { PackedLinear } from './packed-linear';
import { w8a8Linear, type Int8Options } from './w8a8';
import { weightOnlyLinear, type WeightOnlyOptions } from './wq-gemm';

export interface QuantLinearOptions {
  int8?: Int8Options; // W8A8 GEMM path and tile (default INT8_DEFAULTS)
  weightOnly?: WeightOnlyOptions; // GEMV batch limit (default WEIGHT_ONLY_DEFAULTS)
}

/** x [N, in] → y [N, out]. For W8A8, x is the unquantized input: the kernel quantizes it per token. */
export function quantLinear(p: PackedLinear, x: tf.Tensor2D, bias?: tf.Tensor, opts: QuantLinearOptions = {}): tf.Tensor2D {
  return p.kind === 'w8a8' ? w8a8Linear(x, p, bias, opts.int8) : weightOnlyLinear(x, p, bias, opts.weightOnly);
}
