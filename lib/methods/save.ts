// A compressed model written in its stored format, whatever the method: packed quantized codes
// (lib/quant/pack.ts), sparse storage for a sparsity pattern (lib/models/load.ts saveSparseDir), or
// an HF directory (structured pruning's per-block widths, or a dense model). loadModel reads each.
import { sparseLayout } from '../efficiency/meters';
import { saveModel } from '../models/hf';
import { saveSparseDir } from '../models/load';
import type { Model } from '../models/types';
import { ARTIFACTS_FILE, savePacked, type Packing } from '../quant/pack';
import { methodKind } from './index';
import type { CompressResult } from './types';

/** Writes `model` as `result` left it into dir; returns the format written ('packed', 'sparse 2:4', 'sparse bitmask', 'hf'). */
export async function saveCompressed(model: Model, result: CompressResult, dir: string, o: { packing?: Packing } = {}): Promise<string> {
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
