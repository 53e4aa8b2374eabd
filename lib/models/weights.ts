// Weights on their way into the kit: every loader first describes each tensor (name, shape, where
// its bytes are) and validates the whole set against the config; only then are tensors read and
// uploaded one at a time. A failure before upload leaves nothing on the device; a failure during
// upload disposes what was uploaded. Matrices larger than one WebGPU storage binding are uploaded
// as row blocks (Model.splitWeights), which embed() and head() consume.
import * as tf from '@tensorflow/tfjs';
import { webgpuDevice } from '../runtime/backend';
import { ARCHS } from './arch';
import type { ModelConfig } from './types';

/** A tensor not yet read: its HF name, shape, origin (for errors) and a reader producing fp32 data. */
export interface TensorSource {
  name: string;
  shape: number[];
  /** File (and tensor name inside it, when different) for error messages. */
  origin: string;
  read(): Float32Array;
}

/** config.json keys listing every block's widths when blocks differ (LLM-Pruner, OpenELM-style). */
export const PER_LAYER_KEYS = {
  numHeads: 'num_attention_heads_per_layer',
  numKvHeads: 'num_key_value_heads_per_layer',
  intermediateSize: 'intermediate_size_per_layer',
} as const;

/** The per-layer width keys a config sets (LLM-Pruner's blocks of differing widths); empty for a uniform model. */
export function perLayerWidthKeys(config: Pick<ModelConfig, 'hf'>): string[] {
  return Object.values(PER_LAYER_KEYS).filter((k) => config.hf[k] != null);
}

/** One block's widths: attention heads, KV heads, MLP inner width. */
export interface BlockWidths {
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
}

/**
 * Block i's widths: from the per-layer config lists when present (each must list numLayers
 * positive integers; heads a multiple of KV heads), else the config's uniform widths.
 */
export function blockWidths(config: ModelConfig, i: number): BlockWidths {
  const get = (k: keyof BlockWidths): number => {
    const key = PER_LAYER_KEYS[k];
    const v = config.hf[key];
    if (v === undefined || v === null) return config[k];
    if (!Array.isArray(v) || v.length !== config.numLayers) {
      throw new Error(`config key '${key}' must list ${config.numLayers} widths (one per layer), got ${JSON.stringify(v)}`);
    }
    const x = v[i];
    if (!(Number.isInteger(x) && (x as number) >= 1)) throw new Error(`config key '${key}'[${i}] = ${JSON.stringify(x)} is not a positive integer`);
    return x as number;
  };
  const w = { numHeads: get('numHeads'), numKvHeads: get('numKvHeads'), intermediateSize: get('intermediateSize') };
  if (w.numHeads % w.numKvHeads !== 0) {
    throw new Error(`block ${i}: ${w.numHeads} attention heads are not a multiple of ${w.numKvHeads} KV heads`);
  }
  return w;
}

/** Attention heads of the widest block (per-block widths of pruned models included). */
export function maxHeads(config: ModelConfig): number {
  let h = 1;
  for (let i = 0; i < config.numLayers; i++) h = Math.max(h, blockWidths(config, i).numHeads);
  return h;
}

/** The weight names and shapes a config implies (HF layout; linear weights [out, in]); per-block
 * widths (PER_LAYER_KEYS) give each block its own linear shapes. */
export function expectedShapes(config: ModelConfig): Map<string, number[]> {
  const spec = ARCHS[config.arch];
  const m = new Map<string, number[]>();
  const D = config.hiddenSize;
  const E = config.wordEmbedProjDim;
  m.set(spec.embedTokens, [config.vocabSize, config.arch === 'opt' ? E : D]);
  if (spec.embedPositions) m.set(spec.embedPositions, [config.maxPositions + 2, D]); // OPT's offset of 2
  if (config.arch === 'opt' && E !== D) {
    m.set(spec.projectIn!, [D, E]);
    m.set(spec.projectOut!, [E, D]);
  }
  const layerNorm = spec.norm === 'layer';
  for (let i = 0; i < config.numLayers; i++) {
    const p = spec.blockPrefix(i);
    const w = blockWidths(config, i);
    const qDim = w.numHeads * config.headDim;
    const kvDim = w.numKvHeads * config.headDim;
    const F = w.intermediateSize;
    const linShape: Record<string, [number, number]> = {
      q: [qDim, D], k: [kvDim, D], v: [kvDim, D], o: [D, qDim], qkv: [qDim + 2 * kvDim, D],
      gate: [F, D], up: [F, D], down: [D, F], gate_up: [2 * F, D], fc1: [F, D], fc2: [D, F],
    };
    for (const [short, suffix] of Object.entries(spec.linears)) {
      const shape = linShape[short];
      m.set(`${p}${suffix}.weight`, shape);
      if (linearHasBias(config, short)) m.set(`${p}${suffix}.bias`, [shape[0]]);
    }
    for (const suffix of Object.values(spec.norms)) {
      m.set(`${p}${suffix}.weight`, [D]);
      if (layerNorm) m.set(`${p}${suffix}.bias`, [D]);
    }
  }
  if (hasFinalNorm(config)) {
    m.set(`${spec.finalNorm}.weight`, [D]);
    if (layerNorm) m.set(`${spec.finalNorm}.bias`, [D]);
  }
  if (!config.tieWordEmbeddings) m.set(spec.lmHead, [config.vocabSize, config.arch === 'opt' ? E : D]);
  return m;
}

/** Whether a block linear (short name) carries a bias: OPT's all (enable_bias); LLaMA's attention
 * ones with attention_bias, MLP ones with mlp_bias; q/k/v (GLM: qkv) alone with qkvBias (Qwen2, GLM). */
export function linearHasBias(config: ModelConfig, short: string): boolean {
  if (config.arch === 'opt') return config.bias;
  const spec = ARCHS[config.arch];
  const a = spec.attention;
  if ((short === a.q || short === a.k || short === a.v) && config.qkvBias) return true;
  if (config.arch === 'glm') return false;
  const isAttn = Object.values(a).includes(short);
  return Boolean(isAttn ? config.hf.attention_bias : config.hf.mlp_bias);
}

/** OPT without do_layer_norm_before (opt-350m) has no final layer norm. */
export function hasFinalNorm(config: ModelConfig): boolean {
  return config.arch !== 'opt' || (config.doLayerNormBefore && !config.hf._remove_final_layer_norm);
}

/** Tensors a checkpoint may carry that the kit recomputes or ties (ignored on load). */
function ignorable(name: string, config: ModelConfig): boolean {
  if (/rotary_(pos_)?emb\.inv_freq$/.test(name)) return true;
  return config.tieWordEmbeddings && name === ARCHS[config.arch].lmHead;
}

/**
 * Checks that the sources are exactly the weights the config implies: every expected tensor
 * present with its shape, nothing unknown. Errors name the tensor and the file.
 */
export function validateSources(config: ModelConfig, sources: TensorSource[], what: string): TensorSource[] {
  const expected = expectedShapes(config);
  const byName = new Map<string, TensorSource>();
  for (const s of sources) {
    if (byName.has(s.name)) throw new Error(`${s.origin}: tensor '${s.name}' appears twice in ${what}`);
    byName.set(s.name, s);
  }
  const kept: TensorSource[] = [];
  for (const s of sources) {
    const want = expected.get(s.name);
    if (!want) {
      if (ignorable(s.name, config)) continue;
      throw new Error(`${s.origin}: unexpected tensor '${s.name}' (not a weight of a ${config.arch} model with this config)`);
    }
    if (want.length !== s.shape.length || want.some((d, k) => d !== s.shape[k])) {
      throw new Error(
        `${s.origin}: tensor '${s.name}' has shape [${s.shape.join(', ')}] but the config implies [${want.join(', ')}]`,
      );
    }
    kept.push(s);
  }
  const missing = [...expected.keys()].filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new Error(
      `${what}: missing tensor(s) ${missing.slice(0, 5).map((n) => `'${n}'`).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
    );
  }
  return kept;
}

export interface UploadOptions {
  /** Largest tensor (bytes) uploaded whole; bigger 2-D weights become row blocks. Default: the WebGPU binding limit. */
  maxBindingBytes?: number;
}

/** The largest tensor one kernel may bind on the current backend (Infinity off WebGPU). */
export function bindingLimit(): number {
  const device = webgpuDevice();
  return device ? device.limits.maxStorageBufferBindingSize : Number.POSITIVE_INFINITY;
}

/**
 * The error for a weight that is not in model.weights: missing, or held as row blocks because it
 * exceeds the device's storage binding (only the embedding and the LM head can be used so).
 */
export function missingWeight(model: { name: string; splitWeights?: Map<string, tf.Tensor[]> }, name: string): Error {
  const split = model.splitWeights?.get(name);
  if (!split) return new Error(`model '${model.name}' has no weight '${name}'`);
  return new Error(
    `model '${model.name}': weight '${name}' is held as ${split.length} row blocks, its fp32 values being larger than one GPU ` +
      `storage binding; only the embedding and the LM head can be used split. Use a device with a larger binding, or the wasm backend`,
  );
}

/** Reads and uploads each source; on any failure disposes what was uploaded and rethrows. */
export function uploadSources(
  sources: TensorSource[],
  opts: UploadOptions = {},
): { weights: Map<string, tf.Tensor>; splitWeights: Map<string, tf.Tensor[]> } {
  const limit = opts.maxBindingBytes ?? bindingLimit();
  const weights = new Map<string, tf.Tensor>();
  const splitWeights = new Map<string, tf.Tensor[]>();
  try {
    for (const s of sources) {
      if (weights.has(s.name) || splitWeights.has(s.name)) throw new Error(`${s.origin}: tensor '${s.name}' given twice`);
      const data = s.read();
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) throw new Error(`${s.origin}: tensor '${s.name}' read ${data.length} values, expected ${n}`);
      if (data.byteLength > limit && s.shape.length === 2) splitWeights.set(s.name, splitRows(data, s.shape, limit));
      else weights.set(s.name, tf.tensor(data, s.shape, 'float32'));
    }
  } catch (e) {
    for (const t of weights.values()) t.dispose();
    for (const ts of splitWeights.values()) ts.forEach((t) => t.dispose());
    throw e;
  }
  return { weights, splitWeights };
}

/** Uploads a [rows, cols] matrix as row blocks each within the binding limit. */
export function splitRows(data: Float32Array, shape: number[], limit: number): tf.Tensor2D[] {
  const [rows, cols] = shape;
  const perBlock = Math.max(1, Math.floor(limit / (cols * 4)));
  const blocks: tf.Tensor2D[] = [];
  try {
    for (let r = 0; r < rows; r += perBlock) {
      const r1 = Math.min(rows, r + perBlock);
      blocks.push(tf.tensor2d(data.subarray(r * cols, r1 * cols), [r1 - r, cols], 'float32'));
    }
  } catch (e) {
    blocks.forEach((t) => t.dispose());
    throw e;
  }
  return blocks;
}

/** Permutes q/k rows from llama2.c/Meta's interleaved RoPE pairs (2i, 2i+1) to HF's halves (i, i+hd/2). */
export function permuteRopeRows(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < headDim; j++) {
      // HF row j of a head is Meta row 2j (first half) or 2(j - half) + 1 (second half).
      const src = j < half ? 2 * j : 2 * (j - half) + 1;
      const o = (h * headDim + j) * cols;
      const s = (h * headDim + src) * cols;
      out.set(w.subarray(s, s + cols), o);
    }
  }
  return out;
}

/** The arrays one after another in one Float32Array. */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}
