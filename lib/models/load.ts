// One entry point for every model source: a llama2.c checkpoint (.bin), a Hugging Face directory
// (plain fp32/fp16, the kit's packed quantized format — dequantized at load, W8A8 activation
// quantization attached to the model — or the kit's sparse storage), or a hub id ("org/name" or
// "org/name@revision", through @huggingface/hub's cache; offline works from a cached pinned commit).
import { downloadFileToCacheDir } from '@huggingface/hub';
import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { kernelsActive } from '../kernels';
import { attachPackedLinears, type InferenceModel } from '../engine/inference';
import { disposePackedLinears, packLinearsFromModules } from '../kernels/packed-linear';
import { isPackedDir, loadPacked } from '../quant/pack';
import { loadSparseWeights, saveSparseWeights, type SparseSaveReport } from '../quant/sparse';
import { configFromHf, loadHfDir, loadTokenizer, readJson, saveModel } from './hf';
import { loadLlama2c } from './llama2c';
import { readSafetensorsMetadata } from './safetensors';
import type { Model } from './types';
import { type TensorSource, type UploadOptions, validateSources } from './weights';

export interface LoadOptions extends UploadOptions {
  /** Tokenizer file: llama2.c .bin or tokenizer.json (default: the one beside the model). */
  tokenizer?: string;
  /** Hub cache directory (default: HF_HUB_CACHE / ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Packed quantized directories: also keep the quantized linears packed on the GPU for the
   * quantized kernels (InferenceModel.packedLinears). Default: when kernels are on (lib/kernels policy). */
  packedLinears?: boolean;
}

/** Files fetched from the hub for a model, in order; optional ones may be absent. */
const HUB_FILES: { file: string; optional: boolean }[] = [
  { file: 'config.json', optional: false },
  { file: 'generation_config.json', optional: true },
  { file: 'tokenizer.json', optional: true },
  { file: 'tokenizer_config.json', optional: true },
];

/** Loads a model from a llama2.c .bin, an HF directory or a hub id. */
export async function loadModel(pathOrId: string, opts: LoadOptions = {}): Promise<InferenceModel> {
  if (existsSync(pathOrId)) {
    if (!statSync(pathOrId).isDirectory()) return loadLlama2c(pathOrId, opts);
    if (isPackedDir(pathOrId)) {
      const { model: packed, quant, modules } = loadPacked(pathOrId, { tokenizer: opts.tokenizer });
      const model: InferenceModel = Object.assign(packed, { actQuant: quant.act_quant ?? null });
      if (opts.packedLinears ?? kernelsActive()) {
        const skipped = attachPackedLinears(model, packLinearsFromModules(modules, model.actQuant));
        for (const [name, why] of skipped) console.warn(`[load] ${name}: no quantized kernel (${why}); it runs in fp32`);
      }
      return model;
    }
    if (isSparseDir(pathOrId)) return loadSparseDir(pathOrId, opts);
    return loadHfDir(pathOrId, opts);
  }
  if (!/^[\w.-]+\/[\w.-]+(@[\w./-]+)?$/.test(pathOrId)) {
    throw new Error(`model '${pathOrId}' is neither an existing path nor a hub id (org/name[@revision])`);
  }
  const [repo, revision = 'main'] = pathOrId.split('@');
  const dir = await fetchHubModel(repo, revision, opts.cacheDir);
  const model = loadHfDir(dir, { ...opts, name: repo.split('/')[1], source: `${repo}@${revision}` });
  return model;
}

/** Fetches (or finds in the cache) a hub model's files; returns its snapshot directory. */
async function fetchHubModel(repo: string, revision: string, cacheDir?: string): Promise<string> {
  const get = (file: string) => downloadFileToCacheDir({ repo, path: file, revision, cacheDir });
  const where = `hub model ${repo}@${revision}`;
  let configPath: string;
  try {
    configPath = await get('config.json');
  } catch (e) {
    throw new Error(`${where}: cannot fetch config.json (offline? pin a cached commit with @<sha>): ${(e as Error).message}`);
  }
  const dir = path.dirname(configPath);
  for (const { file, optional } of HUB_FILES.slice(1)) {
    try {
      await get(file);
    } catch (e) {
      if (!optional) throw new Error(`${where}: cannot fetch ${file}: ${(e as Error).message}`);
    }
  }
  let index: string | null = null;
  try {
    index = await get('model.safetensors.index.json');
  } catch {
    index = null;
  }
  if (index) {
    const map = (readJson(index) as { weight_map: Record<string, string> }).weight_map;
    for (const shard of new Set(Object.values(map))) await get(shard);
  } else {
    try {
      await get('model.safetensors');
    } catch (e) {
      throw new Error(`${where}: no model.safetensors or model.safetensors.index.json: ${(e as Error).message}`);
    }
  }
  return dir;
}

// ---- sparse-storage directories ----

/** The safetensors metadata format of the kit's sparse weight files (lib/quant/sparse.ts). */
const SPARSE_FORMAT = 'llmcb-sparse';
const SPARSE_FILE = 'model.safetensors';

/** Whether a directory holds a sparse-storage model: config.json and a model.safetensors in the kit's sparse format. */
export function isSparseDir(dir: string): boolean {
  const file = path.join(dir, SPARSE_FILE);
  if (!existsSync(path.join(dir, 'config.json')) || !existsSync(file)) return false;
  try {
    return readSafetensorsMetadata(file).format === SPARSE_FORMAT;
  } catch {
    return false; // not readable as sparse storage: the strict HF loader names what is wrong
  }
}

/**
 * Loads a sparse-storage directory (config.json, generation_config.json, model.safetensors with
 * packed N:M or bitmask linears, a tokenizer): weights decoded to dense fp32 and checked against
 * the config (per-block widths included) before the model is returned; on a mismatch nothing stays on the device.
 */
export function loadSparseDir(dir: string, opts: LoadOptions = {}): Model {
  const configFile = path.join(dir, 'config.json');
  const config = configFromHf(readJson(configFile), configFile);
  const gen = path.join(dir, 'generation_config.json');
  if (existsSync(gen)) {
    const g = readJson(gen) as { bos_token_id?: unknown; eos_token_id?: unknown };
    const first = (v: unknown) => (typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? (v[0] as number) : null);
    config.bosTokenId = first(g.bos_token_id) ?? config.bosTokenId;
    config.eosTokenId = first(g.eos_token_id) ?? config.eosTokenId;
  }
  const tokenizer = loadTokenizer(dir, config.vocabSize, opts.tokenizer, { bos: config.bosTokenId, eos: config.eosTokenId });
  const file = path.join(dir, SPARSE_FILE);
  const weights = loadSparseWeights(file);
  try {
    const sources: TensorSource[] = [...weights].map(([name, t]) => ({
      name,
      shape: t.shape,
      origin: file,
      read: () => {
        throw new Error(`${file}: '${name}' is already decoded`);
      },
    }));
    const kept = new Set(validateSources(config, sources, file).map((s) => s.name));
    for (const [name, t] of weights) {
      if (!kept.has(name)) {
        t.dispose(); // ignorable extras (rotary inv_freq, a tied lm_head copy)
        weights.delete(name);
      }
    }
  } catch (e) {
    tf.dispose([...weights.values()]);
    throw e;
  }
  return { name: path.basename(path.resolve(dir)), family: config.arch, config, weights, tokenizer, source: path.resolve(dir) };
}

/**
 * Saves a model as a sparse-storage directory: the HF directory saveModel writes (config with any
 * per-block widths, tokenizer) with model.safetensors replaced by the kit's sparse file (block
 * linears packed N:M when `pattern` is given, else as a bitmask; other weights fp32).
 */
export async function saveSparseDir(model: Model, dir: string, pattern: { n: number; m: number } | 'bitmask'): Promise<SparseSaveReport> {
  if (model.splitWeights && model.splitWeights.size > 0) throw new Error(`saveSparseDir: '${model.name}' has row-split weights (${[...model.splitWeights.keys()].join(', ')}); sparse storage holds whole tensors only`);
  await saveModel(model, dir, { maxShardBytes: Number.MAX_SAFE_INTEGER });
  for (const f of readdirSync(dir)) if (f.endsWith('.safetensors') || f === 'model.safetensors.index.json') rmSync(path.join(dir, f));
  return saveSparseWeights(model, path.join(dir, SPARSE_FILE), pattern);
}

/** Disposes every tensor of a model (weights, split blocks) and of its inference state (packed linears). */
export function disposeModel(model: InferenceModel): void {
  if (model.packedLinears) disposePackedLinears(model.packedLinears);
  for (const t of model.weights.values()) t.dispose();
  model.weights.clear();
  if (model.splitWeights) {
    for (const ts of model.splitWeights.values()) ts.forEach((t) => t.dispose());
    model.splitWeights.clear();
  }
}
