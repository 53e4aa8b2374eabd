// GGUF writer (llama.cpp's model file): header, typed metadata, tensor infos, aligned data, with
// F32/F16 and the block formats Q8_0, Q4_0 and Q4_1 (blocks of 32 values along a row).
// Encoders follow ggml's reference quantizers (quantize_row_*_ref) with fp32 intermediate
// rounding; the kit's own integer codes are packed directly when the formats agree exactly.
// Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (version 3, little endian).
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { f16Bits, f16Value } from '../models/safetensors';
import { perLayerWidthKeys } from '../models/weights';
import { Llama2cTokenizer } from '../models/tokenizer-llama2c';
import type { Model, ModelConfig, Tokenizer } from '../models/types';
import type { QuantizedMatrix } from '../quant/quantizer';

// ---------------------------------------------------------------- element types

export type GgmlType = 'F32' | 'F16' | 'Q4_0' | 'Q4_1' | 'Q8_0';

export interface GgmlTypeInfo {
  id: number; // ggml_type enum value
  blockSize: number; // values per block
  typeSize: number; // bytes per block
}

export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 18 }, // fp16 d, 16 bytes of nibbles
  Q4_1: { id: 3, blockSize: 32, typeSize: 20 }, // fp16 d, fp16 m, 16 bytes of nibbles
  Q8_0: { id: 8, blockSize: 32, typeSize: 34 }, // fp16 d, 32 int8
} as const satisfies Record<GgmlType, GgmlTypeInfo>;

/** general.file_type (llama_ftype) of a model whose linears are mostly of this type. */
export const FILE_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7 } as const satisfies Record<GgmlType, number>;

/** Bytes of a row-major tensor of this type; the innermost dimension must hold whole blocks. */
export function tensorBytes(type: GgmlType, ne: readonly number[], what = 'tensor'): number {
  const t = GGML_TYPES[type];
  if (ne[0] % t.blockSize !== 0) throw new Error(`${what}: ${type} needs the row length (${ne[0]}) to be a multiple of ${t.blockSize}`);
  const n = ne.reduce((a, b) => a * b, 1);
  return (n / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------- half precision

const f = Math.fround;

/** The float nearest to v that fp16 can hold. */
export const f16Round = (v: number) => f16Value(f16Bits(v));

/** C's roundf: half away from zero. */
const roundAway = (x: number) => (x < 0 ? -Math.round(-x) : Math.round(x));

// ---------------------------------------------------------------- encoders (ggml reference)

/** Encodes n = rows × cols values (row-major, cols a multiple of the block size) in a ggml type. */
export function encodeTensor(type: GgmlType, data: Float32Array, what = 'tensor'): Uint8Array {
  const t = GGML_TYPES[type];
  if (data.length % t.blockSize !== 0) throw new Error(`${what}: ${data.length} values are not whole ${type} blocks`);
  const nb = data.length / t.blockSize;
  const out = new Uint8Array(nb * t.typeSize);
  const dv = new DataView(out.buffer);
  if (type === 'F32') {
    for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i], true);
    return out;
  }
  if (type === 'F16') {
    for (let i = 0; i < data.length; i++) dv.setUint16(i * 2, f16Bits(data[i]), true);
    return out;
  }
  for (let b = 0; b < nb; b++) {
    const x = data.subarray(b * 32, b * 32 + 32);
    const o = b * t.typeSize;
    if (type === 'Q8_0') {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]));
      const d = f(amax / 127);
      const id = d ? f(1 / d) : 0;
      dv.setUint16(o, f16Bits(d), true);
      for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, roundAway(f(x[j] * id)));
    } else if (type === 'Q4_0') {
      let amax = 0;
      let max = 0;
      for (let j = 0; j < 32; j++) {
        if (amax < Math.abs(x[j])) {
          amax = Math.abs(x[j]);
          max = x[j];
        }
      }
      const d = f(max / -8);
      const id = d ? f(1 / d) : 0;
      dv.setUint16(o, f16Bits(d), true);
      for (let j = 0; j < 16; j++) {
        const q0 = Math.min(15, Math.trunc(f(f(x[j] * id) + 8.5)));
        const q1 = Math.min(15, Math.trunc(f(f(x[j + 16] * id) + 8.5)));
        out[o + 2 + j] = q0 | (q1 << 4);
      }
    } else {
      // Q4_1
      let min = Infinity;
      let max = -Infinity;
      for (let j = 0; j < 32; j++) {
        min = Math.min(min, x[j]);
        max = Math.max(max, x[j]);
      }
      const d = f(f(max - min) / 15);
      const id = d ? f(1 / d) : 0;
      dv.setUint16(o, f16Bits(d), true);
      dv.setUint16(o + 2, f16Bits(min), true);
      for (let j = 0; j < 16; j++) {
        const q0 = Math.min(15, Math.trunc(f(f(f(x[j] - min) * id) + 0.5)));
        const q1 = Math.min(15, Math.trunc(f(f(f(x[j + 16] - min) * id) + 0.5)));
        out[o + 4 + j] = q0 | (q1 << 4);
      }
    }
  }
  return out;
}

/** Decodes a ggml-typed buffer back to fp32 (what llama.cpp's dequantize_row_* computes). */
export function decodeTensor(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  const t = GGML_TYPES[type];
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < (n / t.blockSize) * t.typeSize) throw new Error(`decodeTensor: ${bytes.byteLength} bytes are too few for ${n} ${type} values`);
  if (type === 'F32') {
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
    return out;
  }
  if (type === 'F16') {
    for (let i = 0; i < n; i++) out[i] = f16Value(dv.getUint16(i * 2, true));
    return out;
  }
  for (let b = 0; b < n / 32; b++) {
    const o = b * t.typeSize;
    const d = f16Value(dv.getUint16(o, true));
    if (type === 'Q8_0') {
      for (let j = 0; j < 32; j++) out[b * 32 + j] = f(d * dv.getInt8(o + 2 + j));
    } else if (type === 'Q4_0') {
      for (let j = 0; j < 16; j++) {
        out[b * 32 + j] = f(d * ((bytes[o + 2 + j] & 15) - 8));
        out[b * 32 + j + 16] = f(d * ((bytes[o + 2 + j] >> 4) - 8));
      }
    } else {
      const m = f16Value(dv.getUint16(o + 2, true));
      for (let j = 0; j < 16; j++) {
        out[b * 32 + j] = f(f(d * (bytes[o + 4 + j] & 15)) + m);
        out[b * 32 + j + 16] = f(f(d * (bytes[o + 4 + j] >> 4)) + m);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- packing the kit's codes

export interface PackedCodes {
  bytes: Uint8Array;
  /** Largest |fp16(x) − x| / |x| over the scales (and Q4_1 offsets) written: the only change to the values. */
  maxScaleRelErr: number;
}

/** Column → group index of a quantized matrix (act-order matrices carry their own map). */
function groupOf(q: QuantizedMatrix & { gIdx?: Int32Array }): (c: number) => number {
  if (q.gIdx) return (c) => q.gIdx![c];
  const gs = q.groupSize === -1 ? q.cols : q.groupSize;
  return (c) => Math.floor(c / gs);
}

/**
 * Packs the kit's integer codes into a ggml block type without re-rounding any value, or returns
 * null with the reason when the formats do not agree (a block of 32 columns must share one
 * scale/zero, and the codes must fit the format's integer range).
 * - Q4_0: value = d·(q − 8): symmetric codes with c − zero + 8 in 0..15 (sym 2/3/4-bit).
 * - Q4_1: value = d·q + m: asymmetric codes 0..15 (2/3/4-bit) with d = scale, m = −scale·zero.
 * - Q8_0: value = d·q: codes with c − zero in −128..127 (sym ≤ 8-bit, asym ≤ 7-bit, or asym 8-bit when it fits).
 */
export function packCodes(type: 'Q4_0' | 'Q4_1' | 'Q8_0', q: QuantizedMatrix & { gIdx?: Int32Array }): PackedCodes | { reason: string } {
  const { rows, cols } = q;
  if (cols % 32 !== 0) return { reason: `row length ${cols} is not a multiple of 32` };
  const g = groupOf(q);
  const ng = q.groupSize === -1 ? 1 : Math.ceil(cols / q.groupSize);
  for (let c0 = 0; c0 < cols; c0 += 32) {
    for (let c = c0 + 1; c < c0 + 32; c++) {
      if (g(c) !== g(c0)) return { reason: `columns ${c0}..${c0 + 31} span more than one quantization group (group size ${q.groupSize}${q.gIdx ? ', act-order' : ''})` };
    }
  }
  const t = GGML_TYPES[type];
  const bytes = new Uint8Array(rows * (cols / 32) * t.typeSize);
  const dv = new DataView(bytes.buffer);
  let maxErr = 0;
  const half = (v: number) => {
    const h = f16Bits(v);
    const back = f16Value(h);
    if (v !== 0) maxErr = Math.max(maxErr, Math.abs(back - v) / Math.abs(v));
    else if (back !== 0) maxErr = Infinity;
    return h;
  };
  const [lo, hi] = type === 'Q4_0' ? [-8, 7] : type === 'Q8_0' ? [-128, 127] : [0, 15];
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0, b = r * (cols / 32); c0 < cols; c0 += 32, b++) {
      const gi = r * ng + g(c0);
      const scale = q.scales[gi];
      const zero = q.zeros[gi];
      const o = b * t.typeSize;
      const k = (j: number) => (type === 'Q4_1' ? q.codes[r * cols + c0 + j] : q.codes[r * cols + c0 + j] - zero);
      for (let j = 0; j < 32; j++) {
        const v = k(j);
        if (!Number.isInteger(v) || v < lo || v > hi) {
          return { reason: `row ${r}, column ${c0 + j}: code ${q.codes[r * cols + c0 + j]} with zero ${zero} is outside ${type}'s range ${lo}..${hi}` };
        }
      }
      dv.setUint16(o, half(scale), true);
      if (type === 'Q8_0') {
        for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, k(j));
      } else {
        const off = type === 'Q4_1' ? 4 : 2;
        if (type === 'Q4_1') dv.setUint16(o + 2, half(f(-scale * zero)), true);
        const bias = type === 'Q4_0' ? 8 : 0;
        for (let j = 0; j < 16; j++) bytes[o + off + j] = (k(j) + bias) | ((k(j + 16) + bias) << 4);
      }
    }
  }
  return { bytes, maxScaleRelErr: maxErr };
}

// ---------------------------------------------------------------- GGUF container

export type GgufScalarType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'int64' | 'float64';

const VALUE_TYPES: Record<GgufScalarType | 'array', number> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
};

/** A metadata value; strings may be given as raw UTF-8 bytes (token pieces are bytes). */
export type GgufValue =
  | { type: Exclude<GgufScalarType, 'string' | 'bool'>; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string | Uint8Array }
  | { type: 'array'; itemType: Exclude<GgufScalarType, 'string' | 'bool'>; values: ArrayLike<number> }
  | { type: 'array'; itemType: 'string'; values: readonly (string | Uint8Array)[] };

export interface GgufTensor {
  name: string;
  /** ggml dimensions, innermost first: an HF linear [out, in] is ne = [in, out]. */
  ne: number[];
  type: GgmlType;
  /** The encoded bytes, produced only when the tensor is written (may read the device asynchronously). */
  data(): Uint8Array | Promise<Uint8Array>;
}

export interface GgufWriteOptions {
  alignment: number; // general.alignment: tensor data offsets are multiples of this (GGUF default 32)
}

export const ggufWriteDefaults: GgufWriteOptions = {
  alignment: 32, // GGUF_DEFAULT_ALIGNMENT
};

/** Little-endian byte builder. */
class Bytes {
  private chunks: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  private num(n: number, write: (dv: DataView) => void): void {
    const b = new Uint8Array(n);
    write(new DataView(b.buffer));
    this.push(b);
  }
  u8 = (v: number) => this.num(1, (d) => d.setUint8(0, v));
  i8 = (v: number) => this.num(1, (d) => d.setInt8(0, v));
  u16 = (v: number) => this.num(2, (d) => d.setUint16(0, v, true));
  i16 = (v: number) => this.num(2, (d) => d.setInt16(0, v, true));
  u32 = (v: number) => this.num(4, (d) => d.setUint32(0, v, true));
  i32 = (v: number) => this.num(4, (d) => d.setInt32(0, v, true));
  f32 = (v: number) => this.num(4, (d) => d.setFloat32(0, v, true));
  f64 = (v: number) => this.num(8, (d) => d.setFloat64(0, v, true));
  u64 = (v: number) => this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  i64 = (v: number) => this.num(8, (d) => d.setBigInt64(0, BigInt(v), true));
  str = (s: string | Uint8Array) => {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.u64(b.length);
    this.push(b);
  };
  concat(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

function writeScalar(b: Bytes, type: GgufScalarType, v: number | boolean | string | Uint8Array, key: string): void {
  const num = () => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`GGUF metadata '${key}': ${String(v)} is not a finite ${type}`);
    if (type !== 'float32' && type !== 'float64' && !Number.isInteger(v)) throw new Error(`GGUF metadata '${key}': ${v} is not an integer (${type})`);
    return v;
  };
  switch (type) {
    case 'uint8': return b.u8(num());
    case 'int8': return b.i8(num());
    case 'uint16': return b.u16(num());
    case 'int16': return b.i16(num());
    case 'uint32': return b.u32(num());
    case 'int32': return b.i32(num());
    case 'float32': return b.f32(num());
    case 'float64': return b.f64(num());
    case 'uint64': return b.u64(num());
    case 'int64': return b.i64(num());
    case 'bool': return b.u8(v ? 1 : 0);
    case 'string':
      if (typeof v !== 'string' && !(v instanceof Uint8Array)) throw new Error(`GGUF metadata '${key}': not a string`);
      return b.str(v);
  }
}

const pad = (n: number, a: number) => (a - (n % a)) % a;

/** The header, metadata and tensor infos; returns the bytes and each tensor's offset in the data section. */
export function ggufHeader(metadata: [string, GgufValue][], tensors: GgufTensor[], opts: GgufWriteOptions = ggufWriteDefaults): { header: Uint8Array; offsets: number[]; sizes: number[] } {
  const keys = new Set<string>();
  for (const [k] of metadata) {
    if (keys.has(k)) throw new Error(`GGUF metadata key '${k}' given twice`);
    keys.add(k);
  }
  const names = new Set<string>();
  const b = new Bytes();
  b.push(Buffer.from('GGUF', 'latin1'));
  b.u32(3); // version
  b.u64(tensors.length);
  const meta = opts.alignment !== 32 && !keys.has('general.alignment') ? [...metadata, ['general.alignment', { type: 'uint32', value: opts.alignment }] as [string, GgufValue]] : metadata;
  b.u64(meta.length);
  for (const [key, v] of meta) {
    b.str(key);
    b.u32(VALUE_TYPES[v.type]);
    if (v.type === 'array') {
      b.u32(VALUE_TYPES[v.itemType]);
      b.u64(v.values.length);
      for (let i = 0; i < v.values.length; i++) writeScalar(b, v.itemType, v.values[i] as number, key);
    } else writeScalar(b, v.type, v.value, key);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let off = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`GGUF tensor '${t.name}' given twice`);
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > 4 || t.ne.some((d) => !Number.isInteger(d) || d <= 0)) throw new Error(`GGUF tensor '${t.name}': bad dimensions [${t.ne}]`);
    const size = tensorBytes(t.type, t.ne, `GGUF tensor '${t.name}'`);
    b.str(t.name);
    b.u32(t.ne.length);
    for (const d of t.ne) b.u64(d);
    b.u32(GGML_TYPES[t.type].id);
    b.u64(off);
    offsets.push(off);
    sizes.push(size);
    off += size + pad(size, opts.alignment);
  }
  const head = b.concat();
  const header = new Uint8Array(head.length + pad(head.length, opts.alignment));
  header.set(head);
  return { header, offsets, sizes };
}

/** Writes a GGUF file, encoding one tensor at a time (the host never holds the whole model). */
export async function writeGguf(file: string, metadata: [string, GgufValue][], tensors: GgufTensor[], opts: Partial<GgufWriteOptions> = {}): Promise<{ bytes: number }> {
  const o = { ...ggufWriteDefaults, ...opts };
  const { header, sizes } = ggufHeader(metadata, tensors, o);
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = openSync(file, 'w');
  let total = 0;
  try {
    total += writeSync(fd, header);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      const data = await t.data();
      if (data.byteLength !== sizes[i]) throw new Error(`GGUF tensor '${t.name}': ${data.byteLength} bytes of data, ${t.type} [${t.ne}] needs ${sizes[i]}`);
      total += writeSync(fd, data);
      const p = pad(data.byteLength, o.alignment);
      if (p) total += writeSync(fd, new Uint8Array(p));
    }
  } finally {
    closeSync(fd);
  }
  return { bytes: total };
}

// ---------------------------------------------------------------- LLaMA-family export

/** Per-tensor storage choice of an export: 'auto' follows the method's own codes (see packCodes). */
export type ExportType = 'f32' | 'f16' | 'q8_0' | 'q4_0' | 'q4_1' | 'auto';

export interface LlamaGgufOptions {
  type: ExportType; // storage of the block linears (q/k/v/o/gate/up/down)
  embedType: 'f32' | 'f16'; // storage of token embeddings and the output head (the methods keep them full precision)
  name: string | null; // general.name (default: the model's name)
  /** The method's integer codes by weight name (CompressResult.quantized); absent: requantize from the weights. */
  quantized: Map<string, QuantizedMatrix & { gIdx?: Int32Array }> | null;
  /** tokenizer.ggml.pre for byte-level BPE tokenizers (default: detected from tokenizer.json). */
  bpePre: string | null;
  /** tokenizer.ggml.add_bos_token: llama.cpp then prepends BOS when it tokenizes text itself. */
  addBos: boolean;
}

export const llamaGgufDefaults: LlamaGgufOptions = {
  type: 'auto', // the method's own format where it exists, f32 for dense models
  embedType: 'f32', // the kit's methods leave embeddings and the head in fp32
  name: null, // model.name
  quantized: null, // no codes: dense export, or requantization when type names a block format
  bpePre: null, // detected
  addBos: true, // LLaMA's convention in llama.cpp (lm-eval adds BOS for LLaMA too)
};

/** How one tensor was stored: exact codes, ggml's quantizer on the weights, or plain floats. */
export interface TensorExport {
  name: string; // GGUF name
  hf: string; // kit (HF) name
  type: GgmlType;
  how: 'float' | 'codes' | 'requantized' | 'fallback';
  /** Why, for fallbacks and requantizations (empty for exact exports). */
  reason: string;
  /** For 'codes': largest relative change of a scale/offset from fp16 storage. */
  maxScaleRelErr: number | null;
}

export interface GgufExportReport {
  file: string;
  bytes: number;
  fileType: GgmlType;
  tensors: TensorExport[];
  /** One line for result rows: what was exported how (counts per kind and type). */
  summary: string;
}

/**
 * HF q/k rows (RoPE on halves of each head) → GGUF llama rows (RoPE on interleaved pairs), as
 * llama.cpp's convert_hf_to_gguf.py permutes them; rows of `cols` values, any element type.
 */
export function hfToGgufRopeRows<T extends Float32Array | Uint8Array>(w: T, heads: number, headDim: number, cols: number): T {
  const out = new (w.constructor as { new (n: number): T })(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < headDim; j++) {
      // HF row j (first half: pair element 0 of pair j; second: element 1 of pair j − half) → GGUF row 2·pair + element.
      const dst = j < half ? 2 * j : 2 * (j - half) + 1;
      out.set(w.subarray((h * headDim + j) * cols, (h * headDim + j + 1) * cols), (h * headDim + dst) * cols);
    }
  }
  return out;
}

/** A QuantizedMatrix with its rows permuted as hfToGgufRopeRows permutes weights. */
function permuteQuantRows(q: QuantizedMatrix & { gIdx?: Int32Array }, heads: number, headDim: number): QuantizedMatrix & { gIdx?: Int32Array } {
  const ng = q.scales.length / q.rows;
  return {
    ...q,
    codes: hfToGgufRopeRows(q.codes, heads, headDim, q.cols),
    scales: hfToGgufRopeRows(q.scales, heads, headDim, ng),
    zeros: hfToGgufRopeRows(q.zeros, heads, headDim, ng),
  };
}

/** GGUF names of the llama tensors (llama.cpp's LLM_TENSOR_NAMES for LLM_ARCH_LLAMA). */
const LLAMA_BLOCK_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.bias': 'attn_output.bias',
};

/** GGUF tensor name of a kit (HF) llama weight name. */
export function ggufLlamaName(hf: string): string {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (m && LLAMA_BLOCK_NAMES[m[2]]) return `blk.${m[1]}.${LLAMA_BLOCK_NAMES[m[2]]}`;
  throw new Error(`no GGUF llama name for weight '${hf}'`);
}

/** Why the GGUF export (llama.cpp's 'llama' graph) cannot write this model, or null when it can. */
export function llamaGgufUnsupported(config: ModelConfig): string | null {
  if (config.arch === 'glm') return "the GLM block (fused query_key_value with bias, rotary on half of each head in pairs) is llama.cpp's 'chatglm' graph, not the 'llama' graph the export writes";
  if (config.arch !== 'llama') return `the '${config.arch}' architecture is not llama.cpp's 'llama' graph, the one the export writes`;
  if (config.bias) return "linear biases, which llama.cpp's llama graph does not read for the MLP";
  if (config.qkvBias) return "q/k/v biases without an output bias (Qwen2) are llama.cpp's 'qwen2' graph, not the 'llama' graph the export writes";
  if (config.slidingWindow != null) return `sliding-window attention (sliding_window ${config.slidingWindow}), which llama.cpp's llama graph does not apply`;
  const perLayer = perLayerWidthKeys(config);
  if (perLayer.length) return `blocks of differing widths (${perLayer.join(', ')}: LLM-Pruner), which llama.cpp's llama graph does not load (it sizes every block by one head count and MLP width)`;
  return null;
}

/** llama.<key> metadata of a LLaMA-family config. */
export function llamaMetadata(config: ModelConfig, name: string, fileType: GgmlType): [string, GgufValue][] {
  const why = llamaGgufUnsupported(config);
  if (why) throw new Error(`GGUF export: model '${name}' has ${why}`);
  const u32 = (value: number): GgufValue => ({ type: 'uint32', value });
  const f32v = (value: number): GgufValue => ({ type: 'float32', value });
  const m: [string, GgufValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: name }],
    ['general.file_type', u32(FILE_TYPES[fileType])],
    ['general.quantization_version', u32(2)],
    ['llama.vocab_size', u32(config.vocabSize)],
    ['llama.context_length', u32(config.maxPositions)],
    ['llama.embedding_length', u32(config.hiddenSize)],
    ['llama.block_count', u32(config.numLayers)],
    ['llama.feed_forward_length', u32(config.intermediateSize)],
    ['llama.rope.dimension_count', u32(config.headDim)],
    ['llama.attention.head_count', u32(config.numHeads)],
    ['llama.attention.head_count_kv', u32(config.numKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32v(config.normEps)],
    ['llama.rope.freq_base', f32v(config.ropeTheta)],
  ];
  if (config.headDim * config.numHeads !== config.hiddenSize) {
    m.push(['llama.attention.key_length', u32(config.headDim)], ['llama.attention.value_length', u32(config.headDim)]);
  }
  if (config.ropeScaling?.type === 'linear') {
    m.push(['llama.rope.scaling.type', { type: 'string', value: 'linear' }], ['llama.rope.scaling.factor', f32v(config.ropeScaling.factor)]);
  }
  return m;
}

/** LLaMA 3.1 RoPE frequency factors (GGUF rope_freqs.weight), as transformers' llama3 rope init. */
export function llama3RopeFactors(config: ModelConfig): Float32Array {
  const s = config.ropeScaling;
  if (!s || s.type !== 'llama3') throw new Error('llama3RopeFactors: the config has no llama3 rope scaling');
  const half = config.headDim / 2;
  const lowWavelen = s.originalMaxPositions! / s.lowFreqFactor!;
  const highWavelen = s.originalMaxPositions! / s.highFreqFactor!;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const freq = 1 / config.ropeTheta ** ((2 * i) / config.headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositions! / wavelen - s.lowFreqFactor!) / (s.highFreqFactor! - s.lowFreqFactor!);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

// Token types of llama.cpp's vocabulary (llama_token_type).
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

/** SentencePiece's whitespace marker, which llama.cpp's SPM tokenizer expects in pieces. */
const SPM_SPACE = Buffer.from('\u2581', 'utf8');

/** tokenizer.ggml.* for a llama2.c tokenizer (SentencePiece BPE, merges by score). */
export function spmTokenizerMetadata(tok: Llama2cTokenizer, addBos: boolean): [string, GgufValue][] {
  const tokens: Uint8Array[] = [];
  const types: number[] = [];
  tok.pieces.forEach((p, i) => {
    const raw = Buffer.from(p, 'latin1');
    const trimmed = p.trim();
    if (i === tok.bosId || i === tok.eosId) {
      // llama2.c's export wraps them in newlines ("\n<s>\n"); SentencePiece names them <s>, </s>.
      tokens.push(Buffer.from(trimmed, 'latin1'));
      types.push(TOKEN_CONTROL);
      return;
    }
    if (trimmed === '<unk>' && p === trimmed) {
      tokens.push(raw);
      types.push(TOKEN_UNKNOWN);
      return;
    }
    if (/^<0x[0-9A-Fa-f]{2}>$/.test(p)) {
      tokens.push(raw);
      types.push(TOKEN_BYTE);
      return;
    }
    // Pieces are raw UTF-8 bytes; spaces become U+2581 (3 bytes).
    const parts: Uint8Array[] = [];
    let start = 0;
    for (let k = 0; k < raw.length; k++) {
      if (raw[k] === 0x20) {
        parts.push(raw.subarray(start, k), SPM_SPACE);
        start = k + 1;
      }
    }
    parts.push(raw.subarray(start));
    tokens.push(Buffer.concat(parts));
    types.push(TOKEN_NORMAL);
  });
  const unk = tok.pieces.indexOf('<unk>');
  const m: [string, GgufValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', values: tok.scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', values: types }],
    ['tokenizer.ggml.bos_token_id', { type: 'uint32', value: tok.bosId }],
    ['tokenizer.ggml.eos_token_id', { type: 'uint32', value: tok.eosId }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: addBos }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  if (unk >= 0) m.push(['tokenizer.ggml.unknown_token_id', { type: 'uint32', value: unk }]);
  return m;
}

/** llama.cpp's pre-tokenizer name for a tokenizer.json's pre-tokenizer, or null when unknown. */
export function detectBpePre(json: Record<string, unknown>): string | null {
  const pre = json.pre_tokenizer as Record<string, unknown> | null;
  if (pre && pre.type === 'ByteLevel' && pre.use_regex !== false && !pre.add_prefix_space) return 'gpt-2';
  return null;
}

/** tokenizer.ggml.* for a byte-level BPE tokenizer.json (GPT-2 style). */
export function bpeTokenizerMetadata(json: Record<string, unknown>, ids: { bos: number | null; eos: number | null }, pre: string | null, addBos: boolean, what = 'tokenizer.json'): [string, GgufValue][] {
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] } | undefined;
  if (!model || model.type !== 'BPE' || !model.vocab || !model.merges) throw new Error(`${what}: GGUF export needs a BPE model with vocab and merges (model.type is '${model?.type}')`);
  const preName = pre ?? detectBpePre(json);
  if (!preName) throw new Error(`${what}: cannot tell llama.cpp's pre-tokenizer for ${JSON.stringify(json.pre_tokenizer)}; pass bpePre (e.g. 'gpt-2', 'llama-bpe')`);
  const added = (json.added_tokens ?? []) as { id: number; content: string; special?: boolean }[];
  const n = Math.max(...Object.values(model.vocab), ...added.map((a) => a.id)) + 1;
  const tokens = new Array<string>(n);
  const types = new Array<number>(n).fill(TOKEN_NORMAL);
  for (const [t, id] of Object.entries(model.vocab)) tokens[id] = t;
  for (const a of added) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? TOKEN_CONTROL : 4; // 4: USER_DEFINED
  }
  for (let i = 0; i < n; i++) {
    if (tokens[i] === undefined) throw new Error(`${what}: vocabulary has no token with id ${i}`);
  }
  const merges = model.merges.map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : m));
  const m: [string, GgufValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: preName }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', values: types }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', values: merges }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: addBos && ids.bos !== null }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  if (ids.bos !== null) m.push(['tokenizer.ggml.bos_token_id', { type: 'uint32', value: ids.bos }]);
  if (ids.eos !== null) m.push(['tokenizer.ggml.eos_token_id', { type: 'uint32', value: ids.eos }]);
  return m;
}

/** tokenizer.ggml.* for any kit tokenizer: llama2.c's, a tokenizer.json (HfTokenizer) or the kit's byte-level BPE. */
export function tokenizerMetadata(tok: Tokenizer, opts: { bpePre: string | null; addBos: boolean }): [string, GgufValue][] {
  if (tok instanceof Llama2cTokenizer) return spmTokenizerMetadata(tok, opts.addBos);
  const t = tok as Tokenizer & { tokenizerJson?: Record<string, unknown>; toTokenizerJson?: () => Record<string, unknown> };
  const json = t.tokenizerJson ?? t.toTokenizerJson?.();
  if (!json) throw new Error('GGUF export: the tokenizer is neither llama2.c\'s nor a tokenizer.json one');
  return bpeTokenizerMetadata(json, { bos: tok.bosId, eos: tok.eosId }, opts.bpePre, opts.addBos);
}

/** Shape of a weight, whole or split into row blocks. */
function weightShape(model: Model, name: string): number[] {
  const t = model.weights.get(name);
  if (t) return t.shape as number[];
  const blocks = model.splitWeights?.get(name);
  if (!blocks) throw new Error(`model '${model.name}' has no weight '${name}'`);
  return [blocks.reduce((a, b) => a + (b.shape[0] as number), 0), blocks[0].shape[1] as number];
}

/** Host copy of a weight (split row blocks concatenated), row-major; async reads (WebGPU-safe). */
async function hostWeight(model: Model, name: string): Promise<{ data: Float32Array; shape: number[] }> {
  const t = model.weights.get(name);
  if (t) return { data: Float32Array.from((await t.data()) as Float32Array), shape: t.shape as number[] };
  const blocks = model.splitWeights?.get(name);
  if (!blocks) throw new Error(`model '${model.name}' has no weight '${name}'`);
  const [rows, cols] = weightShape(model, name);
  const data = new Float32Array(rows * cols);
  let off = 0;
  for (const b of blocks) {
    data.set((await b.data()) as Float32Array, off);
    off += b.size;
  }
  return { data, shape: [rows, cols] };
}

const BLOCK_TYPES: Record<Exclude<ExportType, 'auto'>, GgmlType> = { f32: 'F32', f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0', q4_1: 'Q4_1' };

/** The block format a method's codes map onto without re-rounding (4-bit or fewer: Q4_0/Q4_1; up to 8: Q8_0). */
export function nativeType(q: QuantizedMatrix): 'Q4_0' | 'Q4_1' | 'Q8_0' {
  if (q.bits <= 4) return q.sym ? 'Q4_0' : 'Q4_1';
  return 'Q8_0';
}

/**
 * Writes a LLaMA-family kit model as GGUF for llama.cpp: metadata, tokenizer, and every weight
 * (q/k permuted to GGUF's interleaved RoPE layout). Block linears are stored as `type` says: with
 * the method's own codes where they map exactly (see packCodes), otherwise ggml's quantizer on the
 * model's (already fake-quantized) weights, and in full precision where a row is not whole blocks;
 * every choice is in the report.
 */
export async function exportLlamaGguf(model: Model, file: string, options: Partial<LlamaGgufOptions> = {}): Promise<GgufExportReport> {
  const o = { ...llamaGgufDefaults, ...options };
  if (!(o.type in BLOCK_TYPES) && o.type !== 'auto') throw new Error(`GGUF export: unknown type '${o.type}' (f32, f16, q8_0, q4_0, q4_1, auto)`);
  const c = model.config;
  const why = llamaGgufUnsupported(c);
  if (why) throw new Error(`GGUF export: model '${model.name}' has ${why}`);
  const embedType: GgmlType = o.embedType === 'f16' ? 'F16' : 'F32';
  const names = [...model.weights.keys(), ...(model.splitWeights?.keys() ?? [])];
  const tied = c.tieWordEmbeddings || !names.includes('lm_head.weight');
  const order = [
    'model.embed_tokens.weight',
    ...Array.from({ length: c.numLayers }, (_, i) => Object.keys(LLAMA_BLOCK_NAMES).map((s) => `model.layers.${i}.${s}`)).flat(),
    'model.norm.weight',
    ...(tied ? [] : ['lm_head.weight']),
  ].filter((n) => names.includes(n));
  const unknown = names.filter((n) => !order.includes(n) && !(tied && n === 'lm_head.weight'));
  if (unknown.length) throw new Error(`GGUF export of '${model.name}': no GGUF name for weight(s) ${unknown.join(', ')}`);

  const report: TensorExport[] = [];
  const tensors: GgufTensor[] = [];
  const kinds = new Map<GgmlType, number>();
  for (const hf of order) {
    const gname = ggufLlamaName(hf);
    const isLinear = /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(hf);
    const rope = /\.(q|k)_proj\.weight$/.test(hf) ? (hf.includes('.q_proj') ? c.numHeads : c.numKvHeads) : 0;
    const w = async () => {
      const h = await hostWeight(model, hf);
      return rope ? hfToGgufRopeRows(h.data, rope, c.headDim, h.shape[1]) : h.data;
    };
    const t0 = weightShape(model, hf);
    const ne = [...t0].reverse();
    const entry: TensorExport = { name: gname, hf, type: 'F32', how: 'float', reason: '', maxScaleRelErr: null };
    let data: () => Uint8Array | Promise<Uint8Array>;
    if (!isLinear) {
      entry.type = t0.length === 1 ? 'F32' : embedType; // norms stay F32 as in llama.cpp's converters
      const type = entry.type;
      data = async () => encodeTensor(type, await w(), gname);
    } else {
      const q = o.quantized?.get(hf) ?? null;
      let want: GgmlType = o.type === 'auto' ? (q ? nativeType(q) : 'F32') : BLOCK_TYPES[o.type];
      if (GGML_TYPES[want].blockSize > 1 && t0[1] % GGML_TYPES[want].blockSize !== 0) {
        entry.how = 'fallback';
        entry.reason = `row length ${t0[1]} is not a multiple of ${GGML_TYPES[want].blockSize}: stored F32 instead of ${want}`;
        want = 'F32';
      }
      entry.type = want;
      if (want === 'F32' || want === 'F16') {
        if (q && entry.how !== 'fallback') {
          entry.reason = `${q.bits}-bit codes stored as dequantized ${want} (type ${o.type})`;
        }
        data = async () => encodeTensor(want, await w(), gname);
      } else if (q) {
        const qq = rope ? permuteQuantRows(q, rope, c.headDim) : q;
        const packed = packCodes(want, qq);
        if ('bytes' in packed) {
          entry.how = 'codes';
          entry.maxScaleRelErr = packed.maxScaleRelErr;
          data = () => packed.bytes;
        } else {
          entry.how = 'requantized';
          entry.reason = `${q.bits}-bit ${q.sym ? 'sym' : 'asym'} g${q.groupSize} codes do not map onto ${want} (${packed.reason}): ggml's ${want} quantizer applied to the dequantized weights`;
          data = async () => encodeTensor(want, await w(), gname);
        }
      } else {
        entry.how = 'requantized';
        entry.reason = `no integer codes given: ggml's ${want} quantizer applied to the weights`;
        data = async () => encodeTensor(want, await w(), gname);
      }
      kinds.set(entry.type, (kinds.get(entry.type) ?? 0) + 1);
    }
    report.push(entry);
    tensors.push({ name: gname, ne, type: entry.type, data });
  }
  if (c.ropeScaling?.type === 'llama3') {
    const factors = llama3RopeFactors(c);
    tensors.push({ name: 'rope_freqs.weight', ne: [factors.length], type: 'F32', data: () => encodeTensor('F32', factors) });
    report.push({ name: 'rope_freqs.weight', hf: '(llama3 rope scaling)', type: 'F32', how: 'float', reason: '', maxScaleRelErr: null });
  }
  // The file type names the most common linear storage.
  const fileType = [...kinds.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
  const metadata = [
    ...llamaMetadata(c, o.name ?? model.name, fileType),
    ...tokenizerMetadata(model.tokenizer, { bpePre: o.bpePre, addBos: o.addBos }),
  ];
  const { bytes } = await writeGguf(file, metadata, tensors);
  const counts = new Map<string, number>();
  for (const e of report) {
    if (!/_proj\.weight$/.test(e.hf)) continue;
    const k = `${e.how} ${e.type}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const fallbacks = [...new Set(report.filter((e) => e.how === 'fallback' || e.how === 'requantized').map((e) => e.reason.replace(/^row length \d+/, 'row length n')))];
  const summary = `linears: ${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')}; embeddings ${embedType}${tied ? ' (tied head)' : ''}${fallbacks.length ? `; ${fallbacks.join('; ')}` : ''}`;
  return { file, bytes, fileType, tensors: report, summary };
}

// ---------------------------------------------------------------- reading back (checks)

export interface GgufTensorInfo {
  name: string;
  ne: number[];
  type: GgmlType;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  bytes: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
  dataOffset: number;
}

const TYPE_BY_ID = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([k, v]) => [v.id as number, k as GgmlType]));

/** Parses a GGUF file's header, metadata and tensor infos (F32/F16/Q4_0/Q4_1/Q8_0 tensors only). */
export function readGguf(file: string): GgufFile {
  const buf = readFileSync(file);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > buf.length) throw new Error(`${file}: truncated GGUF at byte ${o}`);
  };
  const u32 = () => (need(4), (o += 4), dv.getUint32(o - 4, true));
  const u64 = () => (need(8), (o += 8), Number(dv.getBigUint64(o - 8, true)));
  const str = () => {
    const n = u64();
    need(n);
    o += n;
    return buf.subarray(o - n, o).toString('utf8');
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0: return (need(1), (o += 1), dv.getUint8(o - 1));
      case 1: return (need(1), (o += 1), dv.getInt8(o - 1));
      case 2: return (need(2), (o += 2), dv.getUint16(o - 2, true));
      case 3: return (need(2), (o += 2), dv.getInt16(o - 2, true));
      case 4: return u32();
      case 5: return (need(4), (o += 4), dv.getInt32(o - 4, true));
      case 6: return (need(4), (o += 4), dv.getFloat32(o - 4, true));
      case 7: return (need(1), (o += 1), dv.getUint8(o - 1) !== 0);
      case 8: return str();
      case 10: return u64();
      case 11: return (need(8), (o += 8), Number(dv.getBigInt64(o - 8, true)));
      case 12: return (need(8), (o += 8), dv.getFloat64(o - 8, true));
      default: throw new Error(`${file}: unknown GGUF value type ${t} at byte ${o}`);
    }
  };
  if (buf.subarray(0, 4).toString('latin1') !== 'GGUF') throw new Error(`${file}: not a GGUF file (magic ${JSON.stringify(buf.subarray(0, 4).toString('latin1'))})`);
  o = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const t = u32();
    if (t === 9) {
      const it = u32();
      const n = u64();
      const arr: unknown[] = [];
      for (let k = 0; k < n; k++) arr.push(scalar(it));
      metadata.set(key, arr);
    } else metadata.set(key, scalar(t));
  }
  const infos: { name: string; ne: number[]; type: GgmlType; rel: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    if (nd < 1 || nd > 4) throw new Error(`${file}: tensor '${name}' has ${nd} dimensions (GGUF tensors have 1 to 4)`);
    const ne = Array.from({ length: nd }, () => u64());
    const id = u32();
    const type = TYPE_BY_ID.get(id);
    if (!type) throw new Error(`${file}: tensor '${name}' has ggml type ${id}, which this reader does not decode`);
    infos.push({ name, ne, type, rel: u64() });
  }
  const align = metadata.get('general.alignment') ?? 32;
  if (typeof align !== 'number' || !Number.isInteger(align) || align < 1) throw new Error(`${file}: general.alignment ${JSON.stringify(align)} is not a positive integer`);
  const dataOffset = o + pad(o, align);
  const tensors = infos.map((t) => ({ name: t.name, ne: t.ne, type: t.type, offset: dataOffset + t.rel, bytes: tensorBytes(t.type, t.ne, `${file}: tensor '${t.name}'`) }));
  for (const t of tensors) if (t.offset + t.bytes > buf.length) throw new Error(`${file}: tensor '${t.name}' runs past the end of the file`);
  return { version, metadata, tensors, dataOffset };
}

/** A tensor of a GGUF file decoded to fp32 (row-major, ne[0] innermost). */
export function readGgufTensor(file: string, t: GgufTensorInfo): Float32Array {
  const fd = openSync(file, 'r');
  try {
    const b = new Uint8Array(t.bytes);
    readSync(fd, b, 0, t.bytes, t.offset);
    return decodeTensor(t.type, b, t.ne.reduce((a, x) => a * x, 1));
  } finally {
    closeSync(fd);
  }
}
