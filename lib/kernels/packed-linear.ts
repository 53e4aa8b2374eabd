// Quantized linear weights kept on the GPU in the form the quantized kernels read (w8a8.ts,
// wq-gemm.ts), built once from a method's QuantizedMatrix results or from a packed directory's
// raw codes (lib/quant/pack.ts). Host-side packing only: no GPU work happens here but the upload.
//
//   W8A8 (SmoothQuant, any per-token W8A8 model): signed INT8 codes c - zero, 4 per 32-bit word
//     (first code in the lowest byte: the i8 memory order the subgroup-matrix loads expect), each
//     row padded with zero codes to `kWords` words (a multiple of 4 words = 16 bytes, so rows can be
//     read as vec4<u32>); scales [out, n_groups] fp32.
//   Weight-only (RTN/GPTQ/AWQ W4/W8): pack.ts's rows unchanged (u4: two codes per byte, low nibble
//     first; u8: one per byte), each row padded to `rowWords` words (multiple of 4); scales and
//     integer zero points [out, n_groups] as fp32, so W = scale * (code - zero) exactly as
//     dequantizeMatrix computes it.
import * as tf from '@tensorflow/tfjs';
import type { ActQuantSpec } from '../quant/act';
import { packCodes, type PackedModule } from '../quant/pack';
import { numGroups, type QuantizedMatrix } from '../quant/quantizer';

export interface PackedW8A8 {
  kind: 'w8a8';
  outFeatures: number; // N
  inFeatures: number; // K
  kWords: number; // 32-bit words per row (multiple of 4)
  groupSize: number; // -1 = per output channel
  codes: tf.Tensor2D; // int32 [N, kWords], 4 signed i8 codes per word
  scales: tf.Tensor2D; // float32 [N, n_groups]
}

export interface PackedWeightOnly {
  kind: 'wq';
  outFeatures: number; // N
  inFeatures: number; // K
  bits: 4 | 8;
  groupSize: number; // -1 = per output channel
  rowWords: number; // 32-bit words per packed row (multiple of 4)
  qweight: tf.Tensor2D; // int32 [N, rowWords], pack.ts u4/u8 rows
  scales: tf.Tensor2D; // float32 [N, n_groups]
  zeros: tf.Tensor2D; // float32 [N, n_groups], integer zero points
}

export type PackedLinear = PackedW8A8 | PackedWeightOnly;

/** Words per row holding `bytes` bytes, rounded up to whole vec4<u32> (16 bytes). */
const wordsFor16 = (bytes: number) => Math.ceil(bytes / 16) * 4;

/** Why a quantized matrix cannot take the W8A8 kernel, or null when it can. */
export function w8a8Unsupported(q: { bits: number; sym: boolean; groupSize: number; zeros: ArrayLike<number> }): string | null {
  if (q.bits > 8) return `${q.bits}-bit weights do not fit INT8`;
  const zero = 2 ** (q.bits - 1);
  for (let i = 0; i < q.zeros.length; i++) if (q.zeros[i] !== zero) return `zero point ${q.zeros[i]} ≠ ${zero} (asymmetric weights)`;
  if (q.groupSize !== -1 && q.groupSize % 4 !== 0) return `group size ${q.groupSize} is not a multiple of 4 (codes per word)`;
  return null;
}

/** Why a quantized matrix cannot take the weight-only kernels, or null when it can. */
export function weightOnlyUnsupported(q: { bits: number; groupSize: number; actOrder?: boolean }): string | null {
  if (q.bits !== 4 && q.bits !== 8) return `${q.bits}-bit codes (the kernels read 4- and 8-bit codes)`;
  if (q.actOrder) return 'act-order (g_idx) grouping';
  const perWord = 32 / q.bits;
  if (q.groupSize !== -1 && q.groupSize % perWord !== 0) return `group size ${q.groupSize} is not a multiple of ${perWord} (codes per word)`;
  return null;
}

/** Signed codes (code - zero) of a [rows, cols] matrix packed 4 per word, rows padded to kWords. */
export function packI8Rows(codes: ArrayLike<number>, zero: number, rows: number, cols: number): { words: Int32Array; kWords: number } {
  const kWords = wordsFor16(cols);
  const bytes = new Uint8Array(rows * kWords * 4);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c] - zero;
      if (v < -128 || v > 127) throw new Error(`packI8Rows: code ${codes[r * cols + c]} - zero ${zero} at [${r}, ${c}] is outside INT8`);
      bytes[r * kWords * 4 + c] = v & 0xff;
    }
  }
  return { words: new Int32Array(bytes.buffer), kWords };
}

/** Byte rows (rowBytes each) copied into rows of rowWords 32-bit words (zero padded). */
export function padRowsToWords(packed: Uint8Array, rows: number, rowBytes: number): { words: Int32Array; rowWords: number } {
  if (packed.length !== rows * rowBytes) throw new Error(`padRowsToWords: ${packed.length} bytes for ${rows} rows of ${rowBytes}`);
  const rowWords = wordsFor16(rowBytes);
  const out = new Uint8Array(rows * rowWords * 4);
  for (let r = 0; r < rows; r++) out.set(packed.subarray(r * rowBytes, (r + 1) * rowBytes), r * rowWords * 4);
  return { words: new Int32Array(out.buffer), rowWords };
}

/** W8A8 form of a symmetric quantized matrix (codes stored with zero = 2^(bits-1)). */
export function packW8A8(q: QuantizedMatrix): PackedW8A8 {
  const why = w8a8Unsupported(q);
  if (why) throw new Error(`packW8A8: [${q.rows}, ${q.cols}] matrix: ${why}`);
  const { words, kWords } = packI8Rows(q.codes, 2 ** (q.bits - 1), q.rows, q.cols);
  const G = numGroups(q.cols, q.groupSize);
  return {
    kind: 'w8a8',
    outFeatures: q.rows,
    inFeatures: q.cols,
    kWords,
    groupSize: q.groupSize,
    codes: tf.tensor2d(words, [q.rows, kWords], 'int32'),
    scales: tf.tensor2d(q.scales, [q.rows, G], 'float32'),
  };
}

/** Weight-only form from pack.ts rows (qweight bytes [rows, rowBytes]) and per-group scales/zeros. */
export function weightOnlyFromRows(m: { rows: number; cols: number; bits: 4 | 8; groupSize: number; qweight: Uint8Array; scales: ArrayLike<number>; zeros: ArrayLike<number> }): PackedWeightOnly {
  const rowBytes = Math.ceil((m.cols * m.bits) / 8);
  const { words, rowWords } = padRowsToWords(m.qweight, m.rows, rowBytes);
  const G = numGroups(m.cols, m.groupSize);
  if (m.scales.length !== m.rows * G || m.zeros.length !== m.rows * G) throw new Error(`weightOnlyFromRows: ${m.scales.length} scales / ${m.zeros.length} zeros for ${m.rows} rows × ${G} groups`);
  // The GEMV subtracts zero points exactly as integers (wq-gemm.ts): QuantizedMatrix's zeros are integers stored as floats.
  for (let i = 0; i < m.zeros.length; i++) {
    if (!(Number.isInteger(m.zeros[i]) && Math.abs(m.zeros[i]) < 2 ** 22)) throw new Error(`weightOnlyFromRows: zero point ${m.zeros[i]} (group ${i}) is not an integer below 2^22 in magnitude`);
  }
  return {
    kind: 'wq',
    outFeatures: m.rows,
    inFeatures: m.cols,
    bits: m.bits,
    groupSize: m.groupSize,
    rowWords,
    qweight: tf.tensor2d(words, [m.rows, rowWords], 'int32'),
    scales: tf.tensor2d(Float32Array.from(m.scales), [m.rows, G], 'float32'),
    zeros: tf.tensor2d(Float32Array.from(m.zeros), [m.rows, G], 'float32'),
  };
}

/** Weight-only form of a quantized matrix (4 or 8 bits), packed as pack.ts would write it. */
export function packWeightOnly(q: QuantizedMatrix): PackedWeightOnly {
  const why = weightOnlyUnsupported(q);
  if (why) throw new Error(`packWeightOnly: [${q.rows}, ${q.cols}] matrix: ${why}`);
  const bits = q.bits as 4 | 8;
  const qweight = packCodes(q.codes, q.rows, q.cols, bits, bits === 8 ? 'u8' : 'u4');
  return weightOnlyFromRows({ rows: q.rows, cols: q.cols, bits, groupSize: q.groupSize, qweight, scales: q.scales, zeros: q.zeros });
}

/** Whether activation quantization is the per-token dynamic INT8 the W8A8 kernel implements. */
export function isPerTokenInt8(act: ActQuantSpec | null | undefined): boolean {
  return !!act && act.bits === 8 && act.granularity === 'per_token';
}

/**
 * Packed linears for a model's quantized weights (weight name → QuantizedMatrix, e.g.
 * CompressResult.quantized): W8A8 when the model quantizes activations per token to INT8, else
 * weight-only. Matrices the kernels cannot take are left out (the model keeps its fp32 path for
 * them) and reported in `skipped` with the reason.
 */
export function packLinears(quantized: Map<string, QuantizedMatrix>, actQuant: ActQuantSpec | null | undefined): { linears: Map<string, PackedLinear>; skipped: Map<string, string> } {
  const linears = new Map<string, PackedLinear>();
  const skipped = new Map<string, string>();
  const noKernel = actQuantUnsupported(actQuant);
  for (const [name, q] of quantized) {
    const why = noKernel ?? (actQuant ? w8a8Unsupported(q) : weightOnlyUnsupported(q));
    if (why) skipped.set(name, why);
    else linears.set(name, actQuant ? packW8A8(q) : packWeightOnly(q));
  }
  return { linears, skipped };
}

/** Why a model's activation quantization has no kernel (only per-token dynamic INT8 has), or null. */
function actQuantUnsupported(act: ActQuantSpec | null | undefined): string | null {
  if (!act || isPerTokenInt8(act)) return null;
  return `activation quantization ${act.granularity} ${act.bits}-bit${act.staticAbsmax ? ' (static)' : ''} has no kernel`;
}

/**
 * Packed linears from a packed directory's raw modules (pack.ts readPackedModules): codes are read
 * in their on-disk layout, without unpacking to one code per byte.
 */
export function packLinearsFromModules(modules: Map<string, PackedModule>, actQuant: ActQuantSpec | null | undefined): { linears: Map<string, PackedLinear>; skipped: Map<string, string> } {
  const linears = new Map<string, PackedLinear>();
  const skipped = new Map<string, string>();
  const noKernel = actQuantUnsupported(actQuant);
  for (const [name, m] of modules) {
    const actOrder = !!m.gIdx;
    let why: string | null;
    if (noKernel) why = noKernel;
    else if (actQuant) why = actOrder ? 'act-order (g_idx) grouping' : m.packing !== 'u8' ? `packing '${m.packing}' (W8A8 reads u8)` : w8a8Unsupported(m);
    else why = weightOnlyUnsupported({ bits: m.bits, groupSize: m.groupSize, actOrder }) ?? (m.packing !== (m.bits === 8 ? 'u8' : 'u4') ? `packing '${m.packing}' for ${m.bits} bits` : null);
    if (why) skipped.set(name, why);
    else linears.set(name, actQuant ? w8a8FromU8Rows(m) : weightOnlyFromRows({ ...m, bits: m.bits as 4 | 8 }));
  }
  return { linears, skipped };
}

/** W8A8 form of u8 rows (one code per byte) whose zero point is 2^(bits-1) everywhere. */
function w8a8FromU8Rows(m: PackedModule): PackedW8A8 {
  const { words, kWords } = packI8Rows(m.qweight, 2 ** (m.bits - 1), m.rows, m.cols);
  return {
    kind: 'w8a8',
    outFeatures: m.rows,
    inFeatures: m.cols,
    kWords,
    groupSize: m.groupSize,
    codes: tf.tensor2d(words, [m.rows, kWords], 'int32'),
    scales: tf.tensor2d(Float32Array.from(m.scales), [m.rows, numGroups(m.cols, m.groupSize)], 'float32'),
  };
}

/** Frees the GPU tensors of packed linears. */
export function disposePackedLinears(linears: Map<string, PackedLinear>): void {
  for (const p of linears.values()) {
    if (p.kind === 'w8a8') tf.dispose([p.codes, p.scales]);
    else tf.dispose([p.qweight, p.scales, p.zeros]);
  }
  linears.clear();
}
