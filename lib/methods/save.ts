// A compressed model written in its stored format, whatever the method: packed quantized codes
// (lib/quant/pack.ts), sparse storage for a sparsity pattern (lib/models/load.ts saveSparseDir), or
// an HF directory (structured pruning's per-block widths, or a dense model). loadModel reads each.
import path from 'node:path';
import { sparseLayout } from '../efficiency/meters';
import { readJson, saveModel } from '../models/hf';
import { saveSparseDir } from '../models/load';
import type { Model } from '../models/types';
import { ARTIFACTS_FILE, savePacked, type Packing } from '../quant/pack';
import { methodKind } from './index';
import { writeFileAtomic } from '../results';
import type { CompressResult } from './types';

/** What compressed a saved model: config.json's `llmcb_compression` (result rows' method, method_config, calib). */
export interface StoredCompression {
  method: string;
  method_config: Record<string, unknown>;
  calib: string;
}
const COMPRESSION_KEY = 'llmcb_compression';

/** The compression a loaded model was saved with (saveCompressed), or null for an uncompressed one. */
export function storedCompression(model: Pick<Model, 'config'>): StoredCompression | null {
  const c = model.config.hf[COMPRESSION_KEY] as StoredCompression | undefined;
  return c && typeof c.method === 'string' ? c : null;
}

/**
 * Writes `model` as `result` left it into dir, with the compression recorded in config.json
 * (storedCompression reads it back); returns the format written ('packed', 'sparse 2:4', 'sparse bitmask', 'hf').
 */
export async function saveCompressed(model: Model, result: CompressResult, dir: string, o: { packing?: Packing } = {}): Promise<string> {
  const format = await saveFormat(model, result, dir, o);
  const file = path.join(dir, 'config.json');
  const stored: StoredCompression = { method: result.method, method_config: result.config, calib: result.calib };
  writeFileAtomic(file, `${JSON.stringify({ ...(readJson(file) as object), [COMPRESSION_KEY]: stored }, null, 2)}\n`);
  return format;
}

async function saveFormat(model: Model, result: CompressResult, dir: string, o: { packing?: Packing }): Promise<string> {
  if (result.quantized.size > 0) {
    await savePacked(model, result.quantized, dir, {
      method: result.method, methodConfig: result.config, calib: result.calib, actQuant: result.actQuant, packing: o.packing,
      extras: Object.keys(result.artifacts).length ? { [ARTIFACTS_FILE]: result.artifacts } : {},
    });
    return 'packed';
  }
  if (o.packing) throw new Error(`--packing ${o.packing}: method '${result.method}' leaves no quantized codes to pack`);
  const layout = sparseLayout(methodKind(result.method), result.config);
  if (layout) {
    await saveSparseDir(model, dir, layout);
    return `sparse ${layout === 'bitmask' ? 'bitmask' : `${layout.n}:${layout.m}`}`;
  }
  await saveModel(model, dir);
  return 'hf';
}
