// Track 5 (hardware acceleration): speed of the compressed model in an inference engine, to be
// compared with the dense model in the same engine. Engines: 'kit' (the kit's own tfjs executor on
// the current backend), 'llama.cpp-cpu' / 'llama.cpp-vulkan' (node-llama-cpp on a GGUF export).
// An engine that cannot run here gives not_run rows with the reason.
import { methodKind } from '../methods/index';
import type { Engine } from '../efficiency/engines/types';
import { EngineNotRun } from '../efficiency/engines/types';
import type { Cell } from '../matrix';
import type { ResultRow } from '../results';
import { cellRow, notRunRows, type Subject, type TrackEnv } from './common';

export const TRACK5_METRICS = ['prefill_tok_per_s', 'decode_tok_per_s'] as const;

export function engineMetrics(engine: string) {
  return TRACK5_METRICS.map((metric) => ({ task: engine, metric, higher_is_better: true }));
}

/** Opens an engine by its matrix name; absent engines throw EngineNotRun. */
export async function openEngine(name: string): Promise<Engine> {
  if (name === 'kit') {
    const { KitEngine } = await import('../efficiency/engines/webgpu');
    return KitEngine.create();
  }
  if (name === 'llama.cpp-cpu' || name === 'llama.cpp-vulkan') {
    const { LlamaCppEngine } = await import('../efficiency/engines/llamacpp');
    return LlamaCppEngine.create({ gpu: name === 'llama.cpp-vulkan' ? 'vulkan' : false });
  }
  throw new EngineNotRun(name, `unknown engine (known: kit, llama.cpp-cpu, llama.cpp-vulkan)`);
}

export async function hardwareCell(env: TrackEnv, cell: Cell, s: Subject): Promise<ResultRow[]> {
  let engine: Engine;
  try {
    engine = await openEngine(cell.item);
  } catch (e) {
    if (e instanceof EngineNotRun) return notRunRows(env, cell, engineMetrics(cell.item), e.reason);
    throw e;
  }
  try {
    const prepared = await engine.prepare({ model: s.model, compress: s.compress, method: s.method.method, sparse: methodKind(s.method.method) === 'sparsity' });
    try {
      const b = env.matrix.bench;
      const m = await engine.measure(prepared, { ...b, seed: 0 });
      const note = `${engine.name} on ${engine.device}; ${prepared.format}; prompt ${b.promptTokens}, new ${b.newTokens}, batch ${b.batch}, median of ${b.repeats}; ${[...prepared.notes, ...m.notes].join('; ')}`;
      return [
        cellRow(env, cell, s, { task: cell.item, metric: 'prefill_tok_per_s', value: m.prefillTokPerS.median, stderr: m.prefillTokPerS.stderr, n: m.prefillTokPerS.n, higher_is_better: true, note }),
        cellRow(env, cell, s, { task: cell.item, metric: 'decode_tok_per_s', value: m.decodeTokPerS.median, stderr: m.decodeTokPerS.stderr, n: m.decodeTokPerS.n, higher_is_better: true, note }),
      ];
    } finally {
      await prepared.dispose();
    }
  } catch (e) {
    if (e instanceof EngineNotRun) return notRunRows(env, cell, engineMetrics(cell.item), e.reason);
    throw e;
  } finally {
    await engine.dispose();
  }
}
