// Track 5 (hardware acceleration): speed of the compressed model in an inference engine, to be
// compared with the dense model in the same engine. Engines: 'kit' (the kit's own tfjs executor on
// the current backend), 'llama.cpp-cpu' / 'llama.cpp-vulkan' (node-llama-cpp on a GGUF export),
// 'pytorch-fp32' / 'pytorch-bf16' (transformers, eager, on an HF export; a Python worker).
// An engine that cannot run here gives not_run rows with the reason.
import { methodKind } from '../methods/index';
import type { Engine } from '../efficiency/engines/types';
import { EngineNotRun, measuredMetrics, WARMUP_MIN_MS } from '../efficiency/engines/types';
import type { Cell } from '../matrix';
import { engineMetricFields, metricNames } from '../metrics/catalogue';
import type { ResultRow } from '../results';
import { cellRow, notRunRows, type Subject, type TrackEnv } from './common';

/** The rows an engine cell writes when it cannot run: one per catalogue metric of Track 5. */
export function engineMetrics(engine: string) {
  return metricNames(5).map((metric) => engineMetricFields(engine, metric));
}

/** The engines a matrix may name. */
export const TRACK5_ENGINES = ['kit', 'llama.cpp-cpu', 'llama.cpp-vulkan', 'pytorch-fp32', 'pytorch-bf16'] as const;

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
  if (name === 'pytorch-fp32' || name === 'pytorch-bf16') {
    const { PyTorchEngine } = await import('../efficiency/engines/pytorch');
    return PyTorchEngine.create({ dtype: name === 'pytorch-bf16' ? 'bf16' : 'fp32' });
  }
  throw new EngineNotRun(name, `unknown engine (known: ${TRACK5_ENGINES.join(', ')})`);
}

export async function hardwareCell(env: TrackEnv, cell: Cell, s: Subject): Promise<ResultRow[]> {
  let engine: Engine;
  try {
    engine = await openEngine(cell.item);
  } catch (e) {
    if (e instanceof EngineNotRun) return notRunRows(env, cell, engineMetrics(cell.item), e.reason);
    throw e;
  }
  const t0 = performance.now();
  try {
    const prepared = await engine.prepare({ model: s.model, compress: s.compress, method: s.method.method, sparse: methodKind(s.method.method) === 'sparsity' });
    try {
      const b = env.matrix.bench;
      const m = await engine.measure(prepared, { ...b, seed: 0 });
      const wallS = (performance.now() - t0) / 1000; // the cell: the engine's preparation (export, load), warm-up and timed runs
      const note = `${engine.name} on ${engine.device}; ${prepared.format}; prompt ${b.promptTokens}, new ${b.newTokens}, batch ${b.batch}, median of ${b.repeats}${b.warmup ? ` after ≥ ${b.warmup} warm-up run(s) and ≥ ${WARMUP_MIN_MS / 1000} s` : ', no warm-up'}; ${m.notes.join('; ')}`;
      return measuredMetrics(m).map((x) => {
        const what = x.metric === 'peak_memory_bytes' ? `${m.memoryWhat}; ` : '';
        const spread = x.min === null || x.max === null ? '' : `; min ${x.min.toPrecision(4)} max ${x.max.toPrecision(4)}`;
        return cellRow(env, cell, s, { ...engineMetricFields(cell.item, x.metric), value: x.value, stderr: x.stderr, n: x.n, duration_s: wallS, note: `${what}${note}${spread}` });
      });
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
