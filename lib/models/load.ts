// One entry point for every model source: a llama2.c checkpoint (.bin), a Hugging Face directory,
// or a hub id ("org/name" or "org/name@revision", through @huggingface/hub's cache; offline works
// from a cached pinned commit).
import { downloadFileToCacheDir } from '@huggingface/hub';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadHfDir } from './hf';
import { loadLlama2c } from './llama2c';
import type { Model } from './types';
import type { UploadOptions } from './weights';

export interface LoadOptions extends UploadOptions {
  /** Tokenizer file: llama2.c .bin or tokenizer.json (default: the one beside the model). */
  tokenizer?: string;
  /** Hub cache directory (default: HF_HUB_CACHE / ~/.cache/huggingface/hub). */
  cacheDir?: string;
}

/** Files fetched from the hub for a model, in order; optional ones may be absent. */
const HUB_FILES: { file: string; optional: boolean }[] = [
  { file: 'config.json', optional: false },
  { file: 'generation_config.json', optional: true },
  { file: 'tokenizer.json', optional: true },
  { file: 'tokenizer_config.json', optional: true },
];

/** Loads a model from a llama2.c .bin, an HF directory or a hub id. */
export async function loadModel(pathOrId: string, opts: LoadOptions = {}): Promise<Model> {
  if (existsSync(pathOrId)) {
    if (statSync(pathOrId).isDirectory()) return loadHfDir(pathOrId, opts);
    return loadLlama2c(pathOrId, opts);
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
    const { readFileSync } = await import('node:fs');
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
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

/** Disposes every tensor of a model (weights and split blocks). */
export function disposeModel(model: Model): void {
  for (const t of model.weights.values()) t.dispose();
  model.weights.clear();
  if (model.splitWeights) {
    for (const ts of model.splitWeights.values()) ts.forEach((t) => t.dispose());
    model.splitWeights.clear();
  }
}
