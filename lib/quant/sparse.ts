// Sparse weight storage with real size accounting:
// - N:M compressed layout: the M−N kept values of every group of M input columns (fp32), plus
//   each kept value's position inside its group in ceil(log2 M) bits (2 bits for 2:4, as NVIDIA's
//   sparse tensor core metadata; 3 bits for 4:8), packed LSB-first into bytes.
// - Bitmask layout for unstructured sparsity: the non-zero values in row-major order (fp32) plus
//   one bit per weight (1 = stored), LSB-first.
// Both decode bit-exactly to the dense matrix, so a loaded model gives identical logits.
// A sparse model file is a safetensors file (U8 and F32 tensors, layout in __metadata__).
import * as tf from '@tensorflow/tfjs';
import { blockLinears, linearName } from '../models/arch';
import { byteView, readSafetensorsHeader, readTensorBytes, writeSafetensorsRaw, type RawWriteTensor } from '../models/safetensors';
import type { Model } from '../models/types';

export interface NMPacked {
  layout: 'nm';
  shape: [number, number]; // [out, in]
  n: number; // pruned per group
  m: number; // group size
  values: Float32Array; // [out, in·(M−N)/M] kept values, group by group
  indices: Uint8Array; // bit-packed positions (ceil(log2 M) bits each) of the kept values
}

export interface BitmaskPacked {
  layout: 'bitmask';
  shape: [number, number]; // [out, in]
  values: Float32Array; // [nnz] non-zeros in row-major order
  mask: Uint8Array; // [ceil(out·in / 8)] bit i set = weight i stored
}

export type SparsePacked = NMPacked | BitmaskPacked;

export function indexBits(m: number): number {
  return Math.max(1, Math.ceil(Math.log2(m)));
}

/** Packs a dense [rows, cols] matrix that has at least n zeros in every group of m columns. */
export function encodeNM(w: ArrayLike<number>, rows: number, cols: number, n: number, m: number, name = 'weight'): NMPacked {
  if (cols % m !== 0) throw new Error(`encodeNM '${name}': ${cols} columns are not a multiple of M = ${m}`);
  const keep = m - n;
  const bits = indexBits(m);
  const nKept = (rows * cols * keep) / m;
  const values = new Float32Array(nKept);
  const indices = new Uint8Array(Math.ceil((nKept * bits) / 8));
  let k = 0;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += m) {
      const base = r * cols + c0;
      let nz = 0;
      for (let j = 0; j < m; j++) if (w[base + j] !== 0) nz++;
      if (nz > keep) {
        throw new Error(`encodeNM '${name}': row ${r}, columns ${c0}..${c0 + m - 1} have ${nz} non-zeros, a ${n}:${m} pattern allows ${keep}`);
      }
      // store all non-zeros, then fill with the first zero positions so every group has `keep` slots
      let fill = keep - nz;
      for (let j = 0; j < m; j++) {
        const v = w[base + j];
        if (v === 0) {
          if (fill === 0) continue;
          fill--;
        }
        values[k] = v;
        const bit = k * bits;
        for (let b = 0; b < bits; b++) if ((j >> b) & 1) indices[(bit + b) >> 3] |= 1 << ((bit + b) & 7);
        k++;
      }
    }
  }
  return { layout: 'nm', shape: [rows, cols], n, m, values, indices };
}

export function decodeNM(p: NMPacked): Float32Array {
  const [rows, cols] = p.shape;
  const keep = p.m - p.n;
  const bits = indexBits(p.m);
  const out = new Float32Array(rows * cols);
  let k = 0;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += p.m) {
      for (let s = 0; s < keep; s++, k++) {
        let j = 0;
        const bit = k * bits;
        for (let b = 0; b < bits; b++) if (p.indices[(bit + b) >> 3] & (1 << ((bit + b) & 7))) j |= 1 << b;
        out[r * cols + c0 + j] = p.values[k];
      }
    }
  }
  return out;
}

export function encodeBitmask(w: ArrayLike<number>, rows: number, cols: number): BitmaskPacked {
  const numel = rows * cols;
  const mask = new Uint8Array(Math.ceil(numel / 8));
  let nnz = 0;
  for (let i = 0; i < numel; i++) {
    if (w[i] !== 0 || Object.is(w[i], -0)) {
      mask[i >> 3] |= 1 << (i & 7);
      nnz++;
    }
  }
  const values = new Float32Array(nnz);
  for (let i = 0, k = 0; i < numel; i++) if (mask[i >> 3] & (1 << (i & 7))) values[k++] = w[i];
  return { layout: 'bitmask', shape: [rows, cols], values, mask };
}

export function decodeBitmask(p: BitmaskPacked): Float32Array {
  const numel = p.shape[0] * p.shape[1];
  const out = new Float32Array(numel);
  for (let i = 0, k = 0; i < numel; i++) if (p.mask[i >> 3] & (1 << (i & 7))) out[i] = p.values[k++];
  return out;
}

export function decodeSparse(p: SparsePacked): Float32Array {
  return p.layout === 'nm' ? decodeNM(p) : decodeBitmask(p);
}

export interface SizeBreakdown {
  valueBytes: number; // stored values
  indexBytes: number; // N:M positions or bitmask
  totalBytes: number;
  denseBytes: number; // the same matrix dense, at the same value width
}

/**
 * Stored size of a packed matrix; valueBytes defaults to the fp32 the kit stores (pass 2 to
 * account an fp16 deployment of the same layout).
 */
export function packedSize(p: SparsePacked, bytesPerValue = 4): SizeBreakdown {
  const valueBytes = p.values.length * bytesPerValue;
  const indexBytes = p.layout === 'nm' ? p.indices.length : p.mask.length;
  return { valueBytes, indexBytes, totalBytes: valueBytes + indexBytes, denseBytes: p.shape[0] * p.shape[1] * bytesPerValue };
}

/** Picks the layout: N:M when asked and the matrix fits it, otherwise the bitmask. */
export function packMatrix(w: ArrayLike<number>, rows: number, cols: number, layout: { n: number; m: number } | 'bitmask', name = 'weight'): SparsePacked {
  return layout === 'bitmask' ? encodeBitmask(w, rows, cols) : encodeNM(w, rows, cols, layout.n, layout.m, name);
}

// ---- model files -----------------------------------------------------------------------------

/** Where each packed weight's parts live in the file, kept in __metadata__.sparse as JSON. */
interface SparseMeta {
  layout: 'nm' | 'bitmask';
  shape: [number, number];
  n?: number;
  m?: number;
}

export interface SparseSaveReport {
  file: string;
  /** Bytes of the file's tensors (excluding the JSON header). */
  tensorBytes: number;
  /** The same model stored dense in fp32. */
  denseBytes: number;
  /** Per packed weight: its size breakdown. */
  packed: Record<string, SizeBreakdown>;
}

/**
 * Writes the model's weights to one safetensors file: every block linear packed (N:M when
 * `pattern` is given, else bitmask), every other weight dense fp32.
 */
export async function saveSparseWeights(model: Model, file: string, pattern: { n: number; m: number } | 'bitmask'): Promise<SparseSaveReport> {
  const packedNames = new Set<string>();
  for (let b = 0; b < model.config.numLayers; b++) for (const l of blockLinears(model.config.arch)) packedNames.add(linearName(model.config.arch, b, l));
  const entries: RawWriteTensor[] = [];
  const meta: Record<string, SparseMeta> = {};
  const packed: Record<string, SizeBreakdown> = {};
  let denseBytes = 0;
  for (const name of [...model.weights.keys()].sort()) {
    const t = model.weights.get(name) as tf.Tensor;
    const data = (await t.data()) as Float32Array;
    denseBytes += data.length * 4;
    if (packedNames.has(name)) {
      const [rows, cols] = t.shape as [number, number];
      const p = packMatrix(data, rows, cols, pattern, name);
      meta[name] = p.layout === 'nm' ? { layout: 'nm', shape: p.shape, n: p.n, m: p.m } : { layout: 'bitmask', shape: p.shape };
      packed[name] = packedSize(p);
      entries.push({ name: `${name}.values`, dtype: 'F32', shape: [p.values.length], data: byteView(p.values) });
      const idx = p.layout === 'nm' ? p.indices : p.mask;
      entries.push({ name: `${name}.${p.layout === 'nm' ? 'indices' : 'bitmask'}`, dtype: 'U8', shape: [idx.length], data: idx });
    } else {
      entries.push({ name, dtype: 'F32', shape: t.shape, data: byteView(data) });
    }
  }
  const tensorBytes = writeSafetensorsRaw(file, entries, { format: 'llmcb-sparse', sparse: JSON.stringify(meta) });
  return { file, tensorBytes, denseBytes, packed };
}

/** One packed weight's metadata, checked against its tensors before anything is decoded. */
function checkedPacked(file: string, name: string, m: unknown, tensor: (name: string, dtype: string) => Uint8Array): SparsePacked {
  const bad = (why: string) => new Error(`${file}: sparse weight '${name}': ${why}`);
  if (typeof m !== 'object' || m === null) throw bad(`metadata ${JSON.stringify(m)} is not an object`);
  const { layout, shape, n, m: M } = m as Record<string, unknown>;
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(`shape ${JSON.stringify(shape)} is not [rows, cols]`);
  const [rows, cols] = shape as [number, number];
  const f32 = (b: Uint8Array) => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  if (layout === 'nm') {
    if (!Number.isInteger(M) || !Number.isInteger(n) || (M as number) < 2 || (M as number) > 256 || (n as number) < 0 || (n as number) >= (M as number)) {
      throw bad(`n ${JSON.stringify(n)} and m ${JSON.stringify(M)} are not an N:M pattern (0 ≤ n < m ≤ 256)`);
    }
    const p = { n: n as number, m: M as number };
    if (cols % p.m !== 0) throw bad(`${cols} columns are not a multiple of m = ${p.m}`);
    const kept = (rows * cols * (p.m - p.n)) / p.m;
    const values = f32(tensor(`${name}.values`, 'F32'));
    const indices = tensor(`${name}.indices`, 'U8');
    if (values.length !== kept || indices.length !== Math.ceil((kept * indexBits(p.m)) / 8)) {
      throw bad(`${values.length} values and ${indices.length} index bytes do not fit ${p.n}:${p.m} [${rows}, ${cols}] (${kept} values)`);
    }
    return { layout: 'nm', shape: [rows, cols], n: p.n, m: p.m, values, indices };
  }
  if (layout === 'bitmask') {
    const values = f32(tensor(`${name}.values`, 'F32'));
    const mask = tensor(`${name}.bitmask`, 'U8');
    if (mask.length !== Math.ceil((rows * cols) / 8)) throw bad(`a bitmask of ${mask.length} bytes does not fit [${rows}, ${cols}]`);
    let nnz = 0;
    for (let i = 0; i < rows * cols; i++) if (mask[i >> 3] & (1 << (i & 7))) nnz++;
    if (values.length !== nnz) throw bad(`the bitmask marks ${nnz} values, the file holds ${values.length}`);
    return { layout: 'bitmask', shape: [rows, cols], values, mask };
  }
  throw bad(`unknown layout ${JSON.stringify(layout)} (nm or bitmask)`);
}

/** Reads a file written by saveSparseWeights back into dense fp32 tensors keyed by weight name. */
export function loadSparseWeights(file: string): Map<string, tf.Tensor> {
  const h = readSafetensorsHeader(file, { F32: 4, U8: 1 });
  if (h.metadata.format !== 'llmcb-sparse') throw new Error(`${file}: not a sparse weight file (metadata format '${h.metadata.format}')`);
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(h.metadata.sparse ?? '') as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: metadata 'sparse' is not JSON: ${(e as Error).message}`);
  }
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new Error(`${file}: metadata 'sparse' is not a JSON object`);
  const header = new Map(h.entries.map((e) => [e.name, e]));
  const tensor = (name: string, dtype: string): Uint8Array => {
    const e = header.get(name);
    if (!e) throw new Error(`${file}: tensor '${name}' is missing`);
    if (e.dtype !== dtype) throw new Error(`${file}: tensor '${name}' has dtype ${e.dtype}, expected ${dtype}`);
    return readTensorBytes(file, e);
  };
  const packed = Object.entries(meta).map(([name, m]) => [name, checkedPacked(file, name, m, tensor)] as const);
  const out = new Map<string, tf.Tensor>();
  for (const [name, e] of header) {
    const parent = name.replace(/\.(values|indices|bitmask)$/, '');
    if (parent !== name && Object.hasOwn(meta, parent)) continue;
    const data = tensor(name, 'F32');
    out.set(name, tf.tensor(new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4), e.shape));
  }
  for (const [name, p] of packed) out.set(name, tf.tensor2d(decodeSparse(p), p.shape));
  return out;
}

export interface SparsityReport {
  /** Zero fraction of each block linear, keyed by weight name. */
  perLayer: Record<string, number>;
  /** Zeros / weights over all block linears. */
  global: number;
  zeros: number;
  weights: number;
}

/** Measures the zero fraction of every block linear of a model. */
export async function sparsityReport(model: Model): Promise<SparsityReport> {
  const perLayer: Record<string, number> = {};
  let zeros = 0;
  let weights = 0;
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const l of blockLinears(model.config.arch)) {
      const name = linearName(model.config.arch, b, l);
      const t = model.weights.get(name);
      if (!t) throw new Error(`sparsityReport: model '${model.name}' has no weight '${name}'`);
      const d = (await t.data()) as Float32Array;
      let z = 0;
      for (let i = 0; i < d.length; i++) z += +(d[i] === 0); // branch-free: a pruned layer's zeros are random (0.5 s against 1.3 s for a 7B block)
      perLayer[name] = z / d.length;
      zeros += z;
      weights += d.length;
    }
  }
  return { perLayer, global: weights ? zeros / weights : 0, zeros, weights };
}
