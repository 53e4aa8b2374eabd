// The quantizers of lib/quant/quantizer.ts and lib/quant/act.ts as element-wise tfjs ops, for the
// methods that keep weights on the backend (RTN, GPTQ, AWQ and SmoothQuant on big layers): GPTQ's
// min-max find_params, the codes and their dequantization, AWQ's per-group quantizer, SmoothQuant's
// absmax weight quantizer; the same fp32 steps as the host's (a GPU's division may round
// differently by an ulp).
import * as tf from '@tensorflow/tfjs';
import { awqGroupParams, checkAwqSpec, maxq, type QuantizedMatrix, type WeightQuantSpec } from './quantizer';
import { grid1d, paramsStruct, runKernel, u32 } from '../kernels/gpu';
import { webgpuDevice } from '../runtime/backend';
import { hostValues } from './weights';

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

/**
 * absmaxQuantizeMatrix (lib/quant/act.ts) of a weight w [rows, cols] on the backend: scale
 * max(max|w|, 1e-5) / (2^(bits−1) − 1) per row or for the whole tensor, code round(w / scale) +
 * 2^(bits−1). The codes and scales are read back; the fake-quantized weight stays on the backend;
 * w is not disposed.
 */
export async function absmaxQuantizeDevice(w: tf.Tensor2D, bits: number, granularity: 'per_channel' | 'per_tensor'): Promise<{ quantized: QuantizedMatrix; weight: tf.Tensor2D }> {
  const [rows, cols] = w.shape;
  const qmax = 2 ** (bits - 1) - 1;
  const zero = 2 ** (bits - 1);
  const [codesT, scaleT, weight] = tf.tidy(() => {
    const m = granularity === 'per_channel' ? tf.max(tf.abs(w), 1, true) : tf.reshape(tf.max(tf.abs(w)), [1, 1]); // [rows, 1] or [1, 1]
    const scale = tf.div(tf.maximum(m, 1e-5), qmax);
    const codes = tf.add(tf.round(tf.div(w, scale)), zero); // tf.round: half to even
    return [codes, scale, dequantDevice(codes, scale, tf.scalar(zero)) as tf.Tensor2D];
  });
  try {
    const codes = await codesToBytes(codesT);
    const s = (await scaleT.data()) as Float32Array;
    const scales = granularity === 'per_channel' ? Float32Array.from(s) : new Float32Array(rows).fill(s[0]);
    return { quantized: { rows, cols, bits, groupSize: -1, sym: true, codes, scales, zeros: new Float32Array(rows).fill(zero) }, weight };
  } catch (e) {
    weight.dispose();
    throw e;
  } finally {
    tf.dispose([codesT, scaleT]);
  }
}

/**
 * quantizeGroups (lib/quant/quantizer.ts) of a weight w [rows, cols] of whole groups on the tfjs
 * backend (big layers: a 7B block's 200M weights take seconds in host loops): the groups' min and
 * max are read back and `params` makes their scales and zeros on the host (the same values as the
 * host's), the codes and the dequantized weight are made on the backend (a GPU's division may round
 * differently by an ulp). Returns the codes and the weight (on the backend); w is not disposed.
 */
export async function quantizeGroupsDevice(
  w: tf.Tensor2D,
  spec: WeightQuantSpec,
  params: (mn: number, mx: number, row: number, group: number) => { scale: number; zero: number },
): Promise<{ quantized: QuantizedMatrix; weight: tf.Tensor2D }> {
  const [rows, cols] = w.shape;
  const gs = spec.groupSize === -1 ? cols : spec.groupSize;
  if (cols % gs !== 0) throw new Error(`quantization on the device: ${cols} columns are not whole groups of ${gs}`);
  const ng = cols / gs;
  const [mn, mx] = await Promise.all([tf.min, tf.max].map((f) => hostValues(() => f(tf.reshape(w, [rows, ng, gs]), 2)))); // [rows·ng] each
  const scales = new Float32Array(rows * ng);
  const zeros = new Float32Array(rows * ng);
  for (let r = 0; r < rows; r++) for (let g = 0; g < ng; g++) ({ scale: scales[r * ng + g], zero: zeros[r * ng + g] } = params(mn[r * ng + g], mx[r * ng + g], r, g));
  const [codesT, weight] = tf.tidy(() => {
    const [s, z] = [tf.tensor3d(scales, [rows, ng, 1]), tf.tensor3d(zeros, [rows, ng, 1])];
    const codes = quantCodesDevice(tf.reshape(w, [rows, ng, gs]), s, z, spec.bits); // [rows, ng, gs]
    return [codes, tf.reshape(dequantDevice(codes, s, z), [rows, cols]) as tf.Tensor2D];
  });
  try {
    return { quantized: { rows, cols, bits: spec.bits, groupSize: spec.groupSize, sym: spec.sym, codes: await codesToBytes(codesT), scales, zeros }, weight };
  } catch (e) {
    weight.dispose();
    throw e;
  } finally {
    codesT.dispose();
  }
}

/** awqQuantizeMatrix (codes, scales, zeros) and its dequantized weight on the backend: quantizeGroupsDevice with AWQ's group parameters. */
export function awqQuantizeDevice(w: tf.Tensor2D, spec: WeightQuantSpec): Promise<{ quantized: QuantizedMatrix; weight: tf.Tensor2D }> {
  checkAwqSpec(spec, w.shape[1]);
  return quantizeGroupsDevice(w, spec, (mn, mx) => awqGroupParams(mn, mx, spec.bits));
}

/** Four codes (float32, integers 0..255) a 32-bit word, the first in the low byte: the bytes in order on a little-endian host. */
const PACK_CODES = `
@group(0) @binding(0) var<storage, read_write> packed: array<u32>;
@group(0) @binding(1) var<storage, read> codes: array<vec4<f32>>;
${paramsStruct({ words: u32(0), gx: u32(0) })}
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * params.gx + wid.x) * 64u + lid;
  if (i >= params.words) { return; }
  let c = vec4<u32>(codes[i]);
  packed[i] = c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
}`;

/**
 * A float32 tensor of codes (integers 0..255) as bytes on the host, in t's order; t is not
 * disposed. On webgpu, when t.size is a multiple of 4, the codes are packed four to a word on the
 * device first (PACK_CODES): a quarter of the readback (a 7B block's codes are 808 MB as float32).
 */
export async function codesToBytes(t: tf.Tensor): Promise<Uint8Array> {
  if (webgpuDevice() && t.size % 4 === 0) {
    const words = t.size / 4;
    const workgroups = grid1d(Math.ceil(words / 64));
    const flat = tf.reshape(t, [t.size]);
    const [p] = runKernel({ name: 'pack-codes', code: PACK_CODES, inputs: [flat], outputs: [{ shape: [words], dtype: 'int32' }], params: { words: u32(words), gx: u32(workgroups[0]) }, workgroups });
    flat.dispose();
    try {
      const v = (await p.data()) as Int32Array;
      return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    } finally {
      p.dispose();
    }
  }
  const out = new Uint8Array(t.size);
  out.set((await t.data()) as Float32Array); // typed-array conversion, not a JavaScript loop
  return out;
}
