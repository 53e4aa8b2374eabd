// Absmax (symmetric) int quantization as SmoothQuant's fake_quant.py does it: weights per output
// channel or per tensor, activations per token (dynamic) or per tensor (dynamic, or static with
// a calibrated scale), applied to the input of every linear through the forward hook.
import * as tf from '@tensorflow/tfjs';
import type { LinearInputHook } from '../models/types';
import { dequantizeMatrix, roundHalfEven, type QuantizedMatrix } from './quantizer';

export interface ActQuantSpec {
  bits: number; // activation bits (SmoothQuant paper: W8A8)
  granularity: 'per_token' | 'per_tensor'; // per-token dynamic (paper's O1/O3 rows) or one scale per tensor
  /** Static per-tensor scales per linear (full weight name → absmax); null = dynamic. */
  staticAbsmax: Record<string, number> | null;
}

export const actQuantDefaults: ActQuantSpec = {
  bits: 8, // W8A8
  granularity: 'per_token', // SmoothQuant reference --act_quant per_token
  staticAbsmax: null, // dynamic scales
};

const f = Math.fround;

/**
 * Absmax int quantization of W [rows, cols] (quantize_weight_per_channel_absmax / _per_tensor_absmax):
 * scale = max(max|w|, 1e-5) / (2^(bits-1) - 1), code = round(w / scale). Stored like every other
 * quantized matrix with zero = 2^(bits-1), so dequantization is scale * (code - zero).
 */
export function absmaxQuantizeMatrix(W: ArrayLike<number>, rows: number, cols: number, bits = 8, granularity: 'per_channel' | 'per_tensor' = 'per_channel'): QuantizedMatrix {
  const qmax = 2 ** (bits - 1) - 1;
  const zero = 2 ** (bits - 1);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  const zeros = new Float32Array(rows).fill(zero);
  let tensorMax = 0;
  if (granularity === 'per_tensor') for (let i = 0; i < rows * cols; i++) tensorMax = Math.max(tensorMax, Math.abs(f(W[i])));
  for (let r = 0; r < rows; r++) {
    let m = tensorMax;
    if (granularity === 'per_channel') for (let c = 0; c < cols; c++) m = Math.max(m, Math.abs(f(W[r * cols + c])));
    const s = f(f(Math.max(m, f(1e-5))) / qmax);
    scales[r] = s;
    for (let c = 0; c < cols; c++) codes[r * cols + c] = roundHalfEven(f(f(W[r * cols + c]) / s)) + zero;
  }
  return { rows, cols, bits, groupSize: -1, sym: true, codes, scales, zeros };
}

/** Fake-quantized absmax W (see absmaxQuantizeMatrix). */
export function absmaxQuantizeWeight(W: ArrayLike<number>, rows: number, cols: number, bits = 8, granularity: 'per_channel' | 'per_tensor' = 'per_channel'): Float32Array {
  return dequantizeMatrix(absmaxQuantizeMatrix(W, rows, cols, bits, granularity));
}

/** Per-token absmax fake quantization of x [tokens, in] (quantize_activation_per_token_absmax). */
export function quantizeActPerToken(x: tf.Tensor2D, bits = 8): tf.Tensor2D {
  const qmax = 2 ** (bits - 1) - 1;
  return tf.tidy(() => {
    const s = tf.div(tf.maximum(tf.max(tf.abs(x), 1, true), 1e-5), qmax); // [tokens, 1]
    return tf.mul(tf.round(tf.div(x, s)), s) as tf.Tensor2D;
  });
}

/** Per-tensor absmax fake quantization; absmax given (static) or taken from x (dynamic). */
export function quantizeActPerTensor(x: tf.Tensor2D, bits = 8, absmax?: number): tf.Tensor2D {
  const qmax = 2 ** (bits - 1) - 1;
  return tf.tidy(() => {
    const s = absmax === undefined ? tf.div(tf.maximum(tf.max(tf.abs(x)), 1e-5), qmax) : tf.scalar(f(Math.max(absmax, 1e-5) / qmax));
    // Static scales can be exceeded: clamp to the int range.
    const q = tf.clipByValue(tf.round(tf.div(x, s)), -qmax - 1, qmax);
    return tf.mul(q, s) as tf.Tensor2D;
  });
}

/** Key of a linear in ActQuantSpec.staticAbsmax: "<block>.<short name>", e.g. "3.q". */
export const actKey = (block: number, linear: string) => `${block}.${linear}`;

/**
 * The forward hook that fake-quantizes every linear input of one block. shortName maps the
 * name the hook reports to the short linear name (static scales are per block and linear).
 */
export function actQuantHook(spec: ActQuantSpec, block: number, shortName: (linear: string) => string = (l) => l): LinearInputHook {
  checkActSpec(spec);
  return (linear, x) => {
    if (spec.granularity === 'per_token') return quantizeActPerToken(x, spec.bits);
    if (spec.staticAbsmax) {
      const key = actKey(block, shortName(linear));
      const m = spec.staticAbsmax[key];
      if (m === undefined) throw new Error(`static activation quantization: no calibrated scale for linear '${key}'`);
      return quantizeActPerTensor(x, spec.bits, m);
    }
    return quantizeActPerTensor(x, spec.bits);
  };
}

export function checkActSpec(spec: ActQuantSpec): void {
  if (!Number.isInteger(spec.bits) || spec.bits < 2 || spec.bits > 16) throw new Error(`activation bits must be an integer in 2..16, got ${spec.bits}`);
  if (spec.granularity !== 'per_token' && spec.granularity !== 'per_tensor') throw new Error(`activation granularity must be 'per_token' or 'per_tensor', got '${spec.granularity}'`);
}

