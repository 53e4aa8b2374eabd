// What every track needs: the run environment (backend, provenance, data, output root), a
// "subject" (a model loaded and compressed once, with the Track 3 measurement of that
// compression), and row helpers that stamp each row with its cell's hash.
import { kernelsActive } from '../kernels';
import { attachPackedLinears, type InferenceModel } from '../engine/inference';
import { packLinears } from '../kernels/packed-linear';
import { dataOptions, resolveDataDir, type DataOptions } from '../data/common';
import { meterCompression, type TrainMeasurement } from '../efficiency/meters';
import { assertFiniteWeights } from '../eval/finite';
import { countParams } from '../efficiency/macs';
import { calibrationFromText, capSeqlen, corpusText, describeCalib, type CalibSet } from '../methods/calib';
import { TokenCache } from '../eval/token-cache';
import { getMethod } from '../methods/index';
import type { CompressResult } from '../methods/types';
import { disposeModel, loadModel } from '../models/load';
import { REPO_ROOT } from '../cli';
import { cellNote, resolveModelPath, type Cell, type MatrixConfig, type MethodSpec, type ModelSpec } from '../matrix';
import { makeRow, startRun, type ResultRow, type RunContext } from '../results';
import { initRuntime, type RuntimeInfo } from '../runtime/backend';

export interface TrackEnv {
  matrix: MatrixConfig;
  runtime: RuntimeInfo;
  ctx: RunContext;
  data: DataOptions;
  /** Data root the rows go to: <out>/results/track<N>.csv. */
  out: string;
  log: (msg: string) => void;
  /** The latest step of long work (compression blocks), not printed: a cell process's heartbeat shows it. */
  progress: (msg: string) => void;
}

export interface EnvOptions {
  out: string; // data root for rows (default 'data')
  dataDir: string | null; // datasets root; null: resolveDataDir's search (LLMCB_DATA, ../shared/datasets)
  hub: boolean | null; // try the hub for absent datasets; null: dataOptions' default (off with HF_HUB_OFFLINE=1)
  log: (msg: string) => void; // progress (stderr in scripts, cell output in notebooks)
}

export const envDefaults: EnvOptions = {
  out: 'data', // the repository's data/ (run from the repository root)
  dataDir: null, // found by resolveDataDir
  hub: null, // dataOptions decides
  log: (m) => console.error(m), // progress is never a result (DESIGN §5.8)
};

/** Starts the backend the matrix asks for and the run's provenance. */
export async function openEnv(matrix: MatrixConfig, opts: Partial<EnvOptions> = {}): Promise<TrackEnv> {
  const o = { ...envDefaults, ...opts };
  const runtime = await initRuntime({ backend: matrix.backend });
  if (matrix.backend !== 'auto' && runtime.backend !== matrix.backend) {
    throw new Error(`backend: asked for '${matrix.backend}', tfjs is on '${runtime.backend}'`);
  }
  const data = dataOptions({ dataDir: resolveDataDir(o.dataDir, REPO_ROOT), ...(o.hub === null ? {} : { hub: o.hub }) });
  return { matrix, runtime, ctx: startRun(runtime), data, out: o.out, log: o.log, progress: () => undefined };
}

/** A model loaded and (unless dense) compressed once; every pending cell of the pair uses it. */
export interface Subject {
  spec: ModelSpec;
  method: MethodSpec;
  model: InferenceModel;
  compress: CompressResult | null;
  /** Track 3: the compression's wall time and peak memory (null for the dense model). */
  train: TrainMeasurement | null;
  /** The calibration set description (row column 'calib'). */
  calib: string;
  params: number;
  dispose(): void;
}

/** "<model id> × <method id>": how errors name a subject. */
export function subjectLabel(s: { spec: ModelSpec; method: MethodSpec }): string {
  return `${s.spec.id} × ${s.method.id}`;
}

/**
 * The matrix's calibration set for a model. Every pair of a model calibrates on the same text, so
 * its encoding comes from the token cache (lib/eval/token-cache.ts) of (tokenizer, corpus).
 */
function subjectCalibration(env: TrackEnv, model: InferenceModel): CalibSet {
  const c = env.matrix.calib;
  // Without the datasets directory, WikiText-2 calibration falls back to the shipped corpus;
  // the calib column of every row says which corpus was used.
  const corpus = env.data.dataDir || !c.corpus.startsWith('wikitext2') ? c.corpus : 'kjv-train';
  if (corpus !== c.corpus) console.warn(`calibration: no datasets directory, using '${corpus}' instead of '${c.corpus}'`);
  const tokenizer = /^[\w.-]+$/.test(corpus) ? TokenCache.open(model.tokenizer, `calib-${corpus}`) : null; // a corpus given by path is not cached
  const calib = calibrationFromText(corpusText(corpus, env.data.dataDir ?? '.'), tokenizer ?? model.tokenizer, corpus, { nsamples: c.nsamples, seqlen: capSeqlen(c.seqlen, model), seed: c.seed });
  tokenizer?.save();
  return calib;
}

/**
 * Loads the model and applies the method, metering the compression (the calibration set is
 * prepared before). Weights holding NaN or ±Infinity, as loaded or after the compression, are a
 * NonFiniteError naming the model, method and step: no cell of the pair may produce an ok row.
 */
export async function prepareSubject(env: TrackEnv, spec: ModelSpec, method: MethodSpec): Promise<Subject> {
  const model = await loadModel(resolveModelPath(spec));
  model.name = spec.id;
  const label = subjectLabel({ spec, method });
  try {
    await assertFiniteWeights(model, `${label}: loaded weights`);
    if (method.method === 'dense') {
      return { spec, method, model, compress: null, train: null, calib: 'none', params: countParams(model), dispose: () => disposeModel(model) };
    }
    const mod = getMethod(method.method);
    const opts = method.config as never;
    mod.validate({ ...mod.defaults, ...method.config } as never, model); // validate sees full options, compress fills its own defaults
    // The calibration set is prepared before the meter, as compress.ts and the reference scripts
    // time it: Track 3 measures the compression alone.
    const calib = mod.needsCalib ? subjectCalibration(env, model) : null;
    const { result, measurement } = await meterCompression(async (sample) => {
      sample();
      const onBlockDone = (b: number) => env.progress(`${method.id}: block ${b + 1} of ${model.config.numLayers} compressed`);
      return mod.compress(model, calib, opts, { sample, onBlockDone });
    });
    await assertFiniteWeights(model, `${label}: weights after compression`);
    // With kernels on, inference runs the quantized kernels on the method's integer codes (after
    // the metered compression: packing is not part of it).
    if (result.quantized.size > 0 && kernelsActive()) {
      const skipped = attachPackedLinears(model, packLinears(result.quantized, result.actQuant));
      for (const [name, why] of skipped) console.warn(`[${spec.id} ${method.method}] ${name}: no quantized kernel (${why}); it runs in fp32`);
    }
    return { spec, method, model, compress: result, train: measurement, calib: calib ? describeCalib(calib) : 'none', params: countParams(model), dispose: () => disposeModel(model) };
  } catch (e) {
    disposeModel(model);
    throw e;
  }
}

/** The row fields every track shares for a subject. */
export function subjectFields(s: Pick<Subject, 'spec' | 'method' | 'model' | 'params' | 'calib' | 'compress'>) {
  return {
    model: s.spec.id,
    model_family: s.model.family || s.model.config.arch,
    model_params: s.params,
    method: s.method.method,
    method_config: s.compress?.config ?? s.method.config,
    calib: s.calib,
  };
}

/** A measured row of a cell. */
export function cellRow(env: TrackEnv, cell: Cell, s: Subject, fields: { task: string; metric: string; value: number; higher_is_better: boolean; note?: string; seqlen?: number | null; n?: number | null; stderr?: number | null; duration_s?: number | null }): ResultRow {
  return makeRow(env.ctx, {
    track: cell.track,
    ...subjectFields(s),
    seed: env.matrix.eval.seed,
    ...fields,
    note: cellNote(cell.hash, fields.note ?? '', cell.data),
  });
}

/** The rows of a cell that did not run (missing method, engine, server, timeout…): one per expected metric. */
export function notRunRows(env: TrackEnv, cell: Cell, metrics: { task: string; metric: string; higher_is_better: boolean }[], reason: string, status: 'not_run' | 'no_data' = 'not_run'): ResultRow[] {
  return metrics.map((m) =>
    makeRow(env.ctx, {
      track: cell.track,
      model: cell.model.id,
      model_family: 'unknown',
      method: cell.method.method,
      method_config: cell.method.config,
      task: m.task,
      metric: m.metric,
      value: null,
      higher_is_better: m.higher_is_better,
      status,
      note: cellNote(cell.hash, reason.replace(/\s+/g, ' ').trim() || 'no reason given', cell.data),
    }),
  );
}
