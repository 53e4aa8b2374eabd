// The quantizers of lib/quant/quantizer.ts as element-wise tfjs ops, for the methods that keep
// weights on the backend (RTN, GPTQ and AWQ on big layers): GPTQ's min-max find_params, the codes
// and their dequantization, AWQ's per-group quantizer; the same fp32 steps as the host's (a GPU's
// division may round differently by an ulp).
import * as tf from '@tensorflow/tfjs';
import { maxq } from './quantizer';

/**
 * Scale and zero of each group from its min and max (any same-shaped tensors): the range widened
 * to include 0, symmetric about 0 when sym, [-1, 1] for an all-zero group; zero rounded half to even.
 * Call inside tf.tidy (intermediates are not disposed here).
 */
export function findParamsDevice(mn: tf.Tensor, mx: tf.Tensor, bits: number, sym: boolean): { scale: tf.Tensor; zero: tf.Tensor } {
  const q = maxq(bits);
  let xmin = tf.minimum(mn, 0);
  let xmax = tf.maximum(mx, 0);
  if (sym) {
    xmax = tf.maximum(tf.abs(xmin), xmax);
    xmin = tf.where(tf.less(xmin, 0), tf.neg(xmax), xmin);
  }
  const flat = tf.logicalAnd(tf.equal(xmin, 0), tf.equal(xmax, 0));
  xmin = tf.where(flat, tf.fill(xmin.shape, -1), xmin);
  xmax = tf.where(flat, tf.fill(xmax.shape, 1), xmax);
  const scale = tf.div(tf.sub(xmax, xmin), q);
  const zero = sym ? tf.fill(scale.shape, (q + 1) / 2) : tf.round(tf.div(tf.neg(xmin), scale)); // tf.round: half to even
  return { scale, zero };
}

/** Codes clamp(round(x / scale) + zero, 0, maxq) of x against broadcastable scale and zero (inside tf.tidy). */
export function quantCodesDevice(x: tf.Tensor, scale: tf.Tensor, zero: tf.Tensor, bits: number): tf.Tensor {
  return tf.clipByValue(tf.add(tf.round(tf.div(x, scale)), zero), 0, maxq(bits));
}

/** Dequantized codes scale · (codes − zero) (dequantCode; inside tf.tidy). */
export function dequantDevice(codes: tf.Tensor, scale: tf.Tensor, zero: tf.Tensor): tf.Tensor {
  return tf.mul(scale, tf.sub(codes, zero));
}

/**
 * awqQuantizeMatrix's fake quantization, each group along the last axis of x [..., gs]: its own
 * [min, max], scale max(max − min, 1e-5) / maxq, zero clamp(−round(min / scale), 0, maxq).
 */
export function awqFakeQuantDevice(x: tf.Tensor, bits: number): tf.Tensor {
  const q = maxq(bits);
  return tf.tidy(() => {
    const mn = tf.min(x, -1, true);
    const scale = tf.div(tf.maximum(tf.sub(tf.max(x, -1, true), mn), 1e-5), q);
    const zero = tf.clipByValue(tf.neg(tf.round(tf.div(mn, scale))), 0, q);
    return dequantDevice(quantCodesDevice(x, scale, zero, bits), scale, zero);
  });
}

/** A float32 tensor of small non-negative integers (codes) as bytes on the host; t is not disposed. */
export async function codesToBytes(t: tf.Tensor): Promise<Uint8Array> {
  const out = new Uint8Array(t.size);
  out.set((await t.data()) as Float32Array); // typed-array conversion, not a JavaScript loop
  return out;
}
