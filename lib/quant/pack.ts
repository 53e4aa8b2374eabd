// Packed quantized models on disk: integer codes packed 8/4/3/2 bits, per-group scales and zero
// points, in an HF-style directory (config.json with a `quantization_config`, one safetensors
// file, the tokenizer). Loading dequantizes at load time, giving exactly the fake-quantized
// weights (dequantization is scale * (code - zero) in fp32 in both places).
//
// Layout of model.safetensors (documented in quantization_config.layout):
//   <linear>.qweight  U8  [out, ceil(in * bits_per_slot / 8)]  codes of each output row, packed
//                         along the input dimension (see PACKINGS), each row starting on a byte
//   <linear>.scales   F32 [out, n_groups]                       n_groups = ceil(in / group_size), 1 per channel
//   <linear>.qzeros   U8  [out, n_groups]                       integer zero points (0 .. 2^bits)
//   <linear>.g_idx    I32 [in]                                  group of each input column (act-order only)
//   every other weight (embeddings, norms, head, biases) F32 as in an FP checkpoint.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { configFromHf, configToHf, HfTokenizer, loadTokenizer, readJson } from '../models/hf';
import { byteView, readSafetensorsHeader, readTensorBytes, writeSafetensorsRaw } from '../models/safetensors';
import { Llama2cTokenizer } from '../models/tokenizer-llama2c';
import type { Model } from '../models/types';
import { concatFloat32, uploadSources, validateSources, type TensorSource } from '../models/weights';
import type { ActQuantSpec } from './act';
import { dequantizeMatrix, numGroups, QuantConfigError, type QuantizedMatrix } from './quantizer';

/** How codes sit in bytes. */
export const PACKINGS = {
  u8: { maxBits: 8, describe: 'one code per byte' },
  u4: { maxBits: 4, describe: 'two codes per byte, first code in the low nibble' },
  u2: { maxBits: 2, describe: 'four codes per byte, first code in the lowest 2 bits' },
  bitstream: { maxBits: 8, describe: 'codes of `bits` bits back to back, least significant bit first, rows padded to a byte' },
} as const satisfies Record<string, { maxBits: number; describe: string }>;
export type Packing = keyof typeof PACKINGS;

/** Default packing for a bit width: u8 for 8, u4 for 4, u2 for 2, a bitstream for anything else (3 bits). */
export function defaultPacking(bits: number): Packing {
  return bits === 8 ? 'u8' : bits === 4 ? 'u4' : bits === 2 ? 'u2' : 'bitstream';
}

/** Bits a code occupies in a packing. */
function slotBits(packing: Packing, bits: number): number {
  return packing === 'u8' ? 8 : packing === 'u4' ? 4 : packing === 'u2' ? 2 : bits;
}

export function checkPacking(bits: number, packing: Packing): void {
  if (!(packing in PACKINGS)) throw new QuantConfigError(`unknown packing '${packing}' (known: ${Object.keys(PACKINGS).join(', ')})`);
  if (!Number.isInteger(bits) || bits < 1 || bits > PACKINGS[packing].maxBits) {
    throw new QuantConfigError(`packing '${packing}' holds codes of at most ${PACKINGS[packing].maxBits} bits, got bits ${bits}`);
  }
}

/** Bytes per packed row. */
export function packedRowBytes(cols: number, bits: number, packing: Packing): number {
  return Math.ceil((cols * slotBits(packing, bits)) / 8);
}

/** Packs codes [rows, cols] (one per byte) into [rows, packedRowBytes]. */
export function packCodes(codes: Uint8Array, rows: number, cols: number, bits: number, packing: Packing): Uint8Array {
  checkPacking(bits, packing);
  const sb = slotBits(packing, bits);
  const rb = packedRowBytes(cols, bits, packing);
  const out = new Uint8Array(rows * rb);
  const lim = 1 << bits;
  for (let r = 0; r < rows; r++) {
    let bit = r * rb * 8;
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c];
      if (v >= lim) throw new QuantConfigError(`code ${v} at [${r}, ${c}] does not fit in ${bits} bits`);
      for (let k = 0; k < sb; k++, bit++) if ((v >> k) & 1) out[bit >> 3] |= 1 << (bit & 7);
    }
  }
  return out;
}

/** Inverse of packCodes. */
export function unpackCodes(packed: Uint8Array, rows: number, cols: number, bits: number, packing: Packing): Uint8Array {
  checkPacking(bits, packing);
  const sb = slotBits(packing, bits);
  const rb = packedRowBytes(cols, bits, packing);
  if (packed.length !== rows * rb) throw new QuantConfigError(`packed codes have ${packed.length} bytes, expected ${rows} × ${rb}`);
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let bit = r * rb * 8;
    for (let c = 0; c < cols; c++) {
      let v = 0;
      for (let k = 0; k < sb; k++, bit++) v |= ((packed[bit >> 3] >> (bit & 7)) & 1) << k;
      out[r * cols + c] = v;
    }
  }
  return out;
}

// ---- safetensors files of the dtypes packed files need (lib/models/safetensors.ts reads and writes them) ----

type Dtype = 'F32' | 'U8' | 'I32';
const BYTES: Record<Dtype, number> = { F32: 4, U8: 1, I32: 4 };
interface Entry {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Uint8Array;
}

function writeSafetensorsTyped(file: string, entries: Entry[], metadata: Record<string, string>): void {
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1) * BYTES[e.dtype];
    if (n !== e.data.byteLength) throw new Error(`${file}: tensor '${e.name}' has ${e.data.byteLength} bytes for ${e.dtype}[${e.shape}]`);
  }
  writeSafetensorsRaw(file, entries, metadata);
}

function readSafetensorsTyped(file: string): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  const h = readSafetensorsHeader(file, BYTES);
  const entries = new Map(h.entries.map((e) => [e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data: readTensorBytes(file, e) }]));
  return { entries, metadata: h.metadata };
}

// ---- packed model directories ----

export const PACKED_METHOD = 'llmcb-packed';

/** The `quantization_config` of a packed model's config.json. */
export interface PackedQuantConfig {
  quant_method: typeof PACKED_METHOD;
  format_version: 1;
  /** Compression method and its options (result rows' method / method_config). */
  method: string;
  method_config: Record<string, unknown>;
  calib: string;
  /** Per quantized weight (base name without '.weight'): bits, group size, packing. */
  modules: Record<string, { bits: number; group_size: number; sym: boolean; packing: Packing; act_order: boolean; in_features: number }>;
  /** Activation quantization needed at inference (W8A8), or null. */
  act_quant: ActQuantSpec | null;
  layout: string;
}

const LAYOUT =
  '<w>.qweight U8 [out, ceil(in*slot_bits/8)] codes packed along in (packing: u8 1/byte, u4 2/byte low nibble first, u2 4/byte, bitstream LSB first), rows byte-aligned; ' +
  '<w>.scales F32 [out, n_groups]; <w>.qzeros U8 [out, n_groups] integer zero points; <w>.g_idx I32 [in] (act-order); W = scales[g] * (code - qzeros[g]) with g = g_idx[c] or floor(c / group_size)';

export interface SavePackedOptions {
  method: string;
  methodConfig: Record<string, unknown>;
  calib: string;
  actQuant: ActQuantSpec | null;
  /** Packing per bit width (default: defaultPacking). */
  packing?: Packing;
  /** Extra JSON files to write beside the model (e.g. learned parameters), name → value. */
  extras?: Record<string, unknown>;
}

/** Writes a packed model directory; returns the bytes written per file. Weights are read asynchronously (WebGPU-safe). */
export async function savePacked(model: Model, quantized: Map<string, QuantizedMatrix & { gIdx?: Int32Array }>, dir: string, o: SavePackedOptions): Promise<Record<string, number>> {
  if (model.splitWeights && model.splitWeights.size > 0) {
    for (const n of model.splitWeights.keys()) if (quantized.has(n)) throw new Error(`savePacked: '${n}' is split in row blocks; quantized split weights are not supported`);
  }
  for (const q of quantized.values()) checkPacking(q.bits, o.packing ?? defaultPacking(q.bits));
  fs.mkdirSync(dir, { recursive: true });
  const entries: Entry[] = [];
  const modules: PackedQuantConfig['modules'] = {};
  const names = [...model.weights.keys(), ...(model.splitWeights?.keys() ?? [])].sort();
  for (const name of names) {
    const q = quantized.get(name);
    if (!q) {
      const t = model.weights.get(name);
      const data = t ? ((await t.data()) as Float32Array) : await concatBlocks(model.splitWeights!.get(name)!);
      const shape = t ? t.shape : [model.splitWeights!.get(name)!.reduce((a, b) => a + b.shape[0], 0), model.splitWeights!.get(name)![0].shape[1] as number];
      entries.push({ name, dtype: 'F32', shape, data: byteView(Float32Array.from(data)) });
      continue;
    }
    const base = name.replace(/\.weight$/, '');
    const packing = o.packing ?? defaultPacking(q.bits);
    const G = q.scales.length / q.rows;
    if (!Number.isInteger(G) || G !== (q.gIdx ? G : numGroups(q.cols, q.groupSize))) throw new Error(`savePacked: '${name}' has ${q.scales.length} scales for ${q.rows} rows`);
    entries.push({ name: `${base}.qweight`, dtype: 'U8', shape: [q.rows, packedRowBytes(q.cols, q.bits, packing)], data: packCodes(q.codes, q.rows, q.cols, q.bits, packing) });
    entries.push({ name: `${base}.scales`, dtype: 'F32', shape: [q.rows, G], data: byteView(Float32Array.from(q.scales)) });
    const zeros = new Uint8Array(q.zeros.length);
    q.zeros.forEach((z, i) => {
      if (!Number.isInteger(z) || z < 0 || z > 255) throw new Error(`savePacked: '${name}' zero point ${z} is not an integer in 0..255`);
      zeros[i] = z;
    });
    entries.push({ name: `${base}.qzeros`, dtype: 'U8', shape: [q.rows, G], data: zeros });
    if (q.gIdx) entries.push({ name: `${base}.g_idx`, dtype: 'I32', shape: [q.cols], data: byteView(Int32Array.from(q.gIdx)) });
    modules[base] = { bits: q.bits, group_size: q.groupSize, sym: q.sym, packing, act_order: !!q.gIdx, in_features: q.cols };
  }
  const qc: PackedQuantConfig = {
    quant_method: PACKED_METHOD,
    format_version: 1,
    method: o.method,
    method_config: o.methodConfig,
    calib: o.calib,
    modules,
    act_quant: o.actQuant,
    layout: LAYOUT,
  };
  const c = model.config;
  const files: Record<string, number> = {};
  const write = (f: string, text: string | Uint8Array) => {
    fs.writeFileSync(path.join(dir, f), text);
  };
  write('config.json', `${JSON.stringify({ ...configToHf(c), quantization_config: qc }, null, 2)}\n`);
  write('generation_config.json', `${JSON.stringify({ bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId }, null, 2)}\n`);
  writeSafetensorsTyped(path.join(dir, 'model.safetensors'), entries, { format: 'pt', quant_method: PACKED_METHOD });
  const tok = model.tokenizer;
  if (tok instanceof HfTokenizer) {
    write('tokenizer.json', JSON.stringify(tok.tokenizerJson));
    write('tokenizer_config.json', `${JSON.stringify(tok.tokenizerConfig, null, 2)}\n`);
  } else if (tok instanceof Llama2cTokenizer) {
    write('tokenizer.bin', tok.toBinary());
  }
  for (const [f, v] of Object.entries(o.extras ?? {})) write(f, `${JSON.stringify(v)}\n`);
  for (const f of fs.readdirSync(dir)) files[f] = fs.statSync(path.join(dir, f)).size;
  return files;
}

async function concatBlocks(blocks: tf.Tensor[]): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (const b of blocks) parts.push((await b.data()) as Float32Array);
  return concatFloat32(parts);
}

/** Whether a directory holds a packed model (config.json with our quantization_config). */
export function isPackedDir(dir: string): boolean {
  const f = path.join(dir, 'config.json');
  if (!fs.existsSync(f)) return false;
  const j = readJson(f) as { quantization_config?: { quant_method?: string } };
  return j.quantization_config?.quant_method === PACKED_METHOD;
}

/** One quantized linear of a packed file as stored: codes still packed (`packing`), per-group scales and zero points. */
export interface PackedModule {
  rows: number; // out
  cols: number; // in
  bits: number;
  groupSize: number; // -1: per channel
  sym: boolean;
  packing: Packing;
  qweight: Uint8Array; // [rows, packedRowBytes(cols, bits, packing)]
  scales: Float32Array; // [rows, n_groups]
  zeros: Uint8Array; // [rows, n_groups]
  gIdx?: Int32Array; // [cols] group of each input column (act-order)
}

/** Checks one module's entry of quantization_config.modules (`where` names it in the error). */
function checkModuleConfig(m: unknown, where: string): asserts m is PackedQuantConfig['modules'][string] {
  if (typeof m !== 'object' || m === null) throw new Error(`${where} is not an object`);
  const { bits, group_size: g, in_features: cols, packing } = m as Record<string, unknown>;
  if (typeof packing !== 'string' || !Object.hasOwn(PACKINGS, packing)) throw new Error(`${where}: unknown packing ${JSON.stringify(packing)} (known: ${Object.keys(PACKINGS).join(', ')})`);
  if (typeof bits !== 'number' || !Number.isInteger(bits) || bits < 1 || bits > PACKINGS[packing as Packing].maxBits) {
    throw new Error(`${where}: bits ${JSON.stringify(bits)} is not 1..${PACKINGS[packing as Packing].maxBits} (packing ${packing})`);
  }
  if (typeof cols !== 'number' || !Number.isInteger(cols) || cols < 1) throw new Error(`${where}: in_features ${JSON.stringify(cols)} is not a positive integer`);
  if (typeof g !== 'number' || !Number.isInteger(g) || (g < 1 && g !== -1)) throw new Error(`${where}: group_size ${JSON.stringify(g)} is not a positive integer or -1`);
}

/** A packed directory's quantized linears (full weight name → PackedModule), its other tensors, and its configs. */
export function readPackedModules(dir: string): { modules: Map<string, PackedModule>; tensors: Map<string, { shape: number[]; data: Float32Array }>; quant: PackedQuantConfig; hf: Record<string, unknown> } {
  const hf = readJson(path.join(dir, 'config.json')) as Record<string, unknown> & { quantization_config?: PackedQuantConfig };
  const quant = hf.quantization_config;
  if (!quant || quant.quant_method !== PACKED_METHOD) throw new Error(`${dir}: config.json has no quantization_config with quant_method '${PACKED_METHOD}'`);
  if (quant.format_version !== 1) throw new Error(`${dir}: packed format version ${quant.format_version} is not supported (1 is)`);
  const file = path.join(dir, 'model.safetensors');
  const { entries } = readSafetensorsTyped(file);
  const f32 = (e: Entry) => new Float32Array(e.data.buffer, e.data.byteOffset, e.data.byteLength / 4);
  const need = (n: string) => {
    const e = entries.get(n);
    if (!e) throw new Error(`${file}: missing tensor '${n}'`);
    return e;
  };
  const modules = new Map<string, PackedModule>();
  const quantParts = new Set<string>();
  const cfgFile = path.join(dir, 'config.json');
  if (typeof quant.modules !== 'object' || quant.modules === null) throw new Error(`${cfgFile}: quantization_config.modules must be an object`);
  for (const [base, m] of Object.entries(quant.modules)) {
    checkModuleConfig(m, `${cfgFile}: quantization_config.modules['${base}']`);
    const qw = need(`${base}.qweight`);
    const sc = need(`${base}.scales`);
    const qz = need(`${base}.qzeros`);
    const gi = entries.get(`${base}.g_idx`);
    [qw, sc, qz, gi].forEach((e) => e && quantParts.add(e.name));
    const part = (e: Entry, dtype: string, shape: number[]) => {
      if (e.dtype !== dtype || e.shape.length !== shape.length || e.shape.some((d, k) => d !== shape[k])) {
        throw new Error(`${file}: '${e.name}' is ${e.dtype} [${e.shape.join(', ')}], expected ${dtype} [${shape.join(', ')}]`);
      }
    };
    const rows = qw.shape[0] ?? 0;
    const cols = m.in_features;
    const G = gi ? (sc.shape[1] ?? 0) : numGroups(cols, m.group_size);
    part(qw, 'U8', [rows, packedRowBytes(cols, m.bits, m.packing)]);
    part(sc, 'F32', [rows, G]);
    part(qz, 'U8', [rows, G]);
    let gIdx: Int32Array | undefined;
    if (gi) {
      part(gi, 'I32', [cols]);
      gIdx = new Int32Array(gi.data.buffer, gi.data.byteOffset, cols);
      if (gIdx.some((g) => g < 0 || g >= G)) throw new Error(`${file}: '${gi.name}' has a group index outside 0..${G - 1}`);
    }
    modules.set(`${base}.weight`, {
      rows,
      cols,
      bits: m.bits,
      groupSize: m.group_size,
      sym: m.sym,
      packing: m.packing,
      qweight: qw.data,
      scales: f32(sc),
      zeros: qz.data,
      gIdx,
    });
  }
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, e] of entries) {
    if (quantParts.has(name)) continue;
    if (e.dtype !== 'F32') throw new Error(`${file}: unexpected non-float tensor '${name}'`);
    tensors.set(name, { shape: e.shape, data: Float32Array.from(f32(e)) });
  }
  return { modules, tensors, quant, hf };
}

/** The dequantized modules (fp32 [out, in] under their weight names) followed by the plain tensors. */
export function withDequantized(modules: Map<string, PackedModule>, plain: Map<string, { shape: number[]; data: Float32Array }>): Map<string, { shape: number[]; data: Float32Array }> {
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, m] of modules) {
    const { rows, cols } = m;
    const codes = unpackCodes(m.qweight, rows, cols, m.bits, m.packing);
    const zeros = Float32Array.from(m.zeros);
    let data: Float32Array;
    if (m.gIdx) {
      const G = m.scales.length / rows;
      data = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
        const k = r * G + m.gIdx[c];
        data[r * cols + c] = Math.fround(m.scales[k] * Math.fround(codes[r * cols + c] - zeros[k]));
      }
    } else {
      data = dequantizeMatrix({ rows, cols, bits: m.bits, groupSize: m.groupSize, sym: m.sym, codes, scales: m.scales, zeros });
    }
    tensors.set(name, { shape: [rows, cols], data });
  }
  for (const [name, t] of plain) tensors.set(name, t);
  return tensors;
}

/**
 * Loads a packed model directory, dequantizing at load time. The activation quantization (W8A8)
 * and the raw quantized modules (for the quantized GPU kernels, lib/kernels/packed-linear.ts) are
 * returned beside it.
 */
export function loadPacked(dir: string, opts: { tokenizer?: string; name?: string } = {}): { model: Model; quant: PackedQuantConfig; modules: Map<string, PackedModule> } {
  const { modules, tensors: others, quant, hf } = readPackedModules(dir);
  const tensors = withDequantized(modules, others);
  const { quantization_config: _q, ...plain } = hf;
  const config = configFromHf(plain, path.join(dir, 'config.json'));
  const tokenizer = loadTokenizer(dir, config.vocabSize, opts.tokenizer, { bos: config.bosTokenId, eos: config.eosTokenId });
  // Check the quantized matrices against the config's shapes (cols were recovered from bytes).
  const file = path.join(dir, 'model.safetensors');
  const sources: TensorSource[] = [...tensors].map(([name, t]) => ({ name, shape: t.shape, origin: file, read: () => t.data }));
  const { weights, splitWeights } = uploadSources(validateSources(config, sources, file));
  return {
    model: { name: opts.name ?? path.basename(path.resolve(dir)), family: config.arch, config, weights, splitWeights, tokenizer, source: path.resolve(dir) },
    quant,
    modules,
  };
}

/** Side files a packed directory may hold that inference does not read. */
export const ARTIFACTS_FILE = 'compression_artifacts.json';

/** Bytes on disk of a model directory, the number Track 4 reports as stored size (search artifacts excluded: inference never reads them). */
export function dirBytes(dir: string): number {
  return fs.readdirSync(dir).filter((f) => f !== ARTIFACTS_FILE).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);
}
