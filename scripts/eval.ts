// Evaluate a model on LLMCBench tasks and print task, metric, value, stderr, n; with --out (or
// --results-dir) the rows go through lib/results.ts. Progress goes to stderr.
//
//   npx tsx scripts/eval.ts --model models/stories260K/stories260K.bin --tasks wikitext2,mmlu,arc_challenge \
//     [--data DIR] [--no-hub] [--seqlen N] [--bos | --no-bos] [--shots K] [--limit N] [--seed S] \
//     [--backend webgpu|wasm|cpu|auto] [--batch-tokens N] [--tokenizer FILE] [--out FILE] [--results-dir DIR] \
//     [--export-requests FILE] [--method NAME [--method-config JSON] [method options] [calibration flags]]
//
// --method compresses the loaded model in memory with a registered method before evaluating it (the
// method's options and calibration flags as in scripts/compress.ts); rows carry the method's config.
// A model saved by compress.ts is evaluated as it is, its rows labelled with the method that made it.
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { printUsage } from '../lib/help';
import { dataOptions, resolveDataDir } from '../lib/data/common';
import { type EvalOutcome, evaluate, outcomeRows } from '../lib/eval/evaluate';
import { modelScorer } from '../lib/eval/model-scorer';
import { CALIB_FLAGS, CALIB_USAGE, calibrationFor, calibSourceFromFlags, describeCalib } from '../lib/methods/calib';
import { checkMethodConfig, getMethod, methodConfigFromArgs, methodFlagOptions } from '../lib/methods/index';
import { storedCompression, type StoredCompression } from '../lib/methods/save';
import { RecordingScorer } from '../lib/eval/scorer';
import { disposeModel, loadModel } from '../lib/models/load';
import { appendResults, type ResultRow, startRun, trackFile, writeFileAtomic } from '../lib/results';
import { initRuntime, parseBackend } from '../lib/runtime';
import { getTasks } from '../lib/tasks';

const USAGE = `usage: npx tsx scripts/eval.ts --model PATH --tasks wikitext2,mmlu,...|all [--data DIR] [--no-hub]
  [--seqlen N] [--bos | --no-bos] [--shots K] [--limit N] [--seed S] [--backend webgpu|wasm|cpu|auto]
  [--batch-tokens N] [--tokenizer FILE] [--out FILE] [--results-dir DIR] [--export-requests FILE]
  [--method NAME [--method-config JSON] [method options: --group-size 128 ...]]: compress the model first
  ${CALIB_USAGE}`;

function fmt(x: number | null, digits: number): string {
  return x === null ? '-' : Math.abs(x) >= 1000 ? x.toFixed(2) : x.toFixed(digits);
}

/** The script's own flags; every other flag sets an option of --method (the registry's schemas). */
const OWN_FLAGS = {
  model: { type: 'string' },
  tasks: { type: 'string' },
  data: { type: 'string' },
  'no-hub': { type: 'boolean', default: false },
  seqlen: { type: 'string' },
  bos: { type: 'boolean' },
  'no-bos': { type: 'boolean' },
  shots: { type: 'string' },
  limit: { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  'batch-tokens': { type: 'string' },
  tokenizer: { type: 'string' },
  method: { type: 'string', default: 'dense' },
  'method-config': { type: 'string' },
  out: { type: 'string' },
  'results-dir': { type: 'string' },
  'export-requests': { type: 'string' },
  help: { type: 'boolean', default: false },
  ...CALIB_FLAGS,
} as const;

async function main(): Promise<number> {
  const { values: a } = parseArgs({ options: { ...OWN_FLAGS, ...methodFlagOptions(Object.keys(OWN_FLAGS)) }, strict: true });
  if (a.help) {
    printUsage(USAGE, true);
    return 0;
  }
  if (!a.model || !a.tasks) {
    console.error(USAGE);
    return 2;
  }
  if (a.bos && a['no-bos']) throw new Error('--bos and --no-bos are exclusive');
  const tasks = getTasks(a.tasks);
  const methodConfig = methodConfigFromArgs(a.method!, a['method-config'], a, Object.keys(OWN_FLAGS));
  const methodOpts = checkMethodConfig(a.method!, methodConfig, '--method/--method-config');
  const data = dataOptions({ dataDir: resolveDataDir(a.data), ...(a['no-hub'] ? { hub: false } : {}) });
  const calibSource = calibSourceFromFlags(a, data.dataDir);
  const runtime = await initRuntime({ backend: parseBackend(a.backend ?? process.env.LLMCB_BACKEND ?? 'auto') });
  console.error(`backend ${runtime.backend} on ${runtime.device}; data ${data.dataDir ?? '(none)'}${data.hub ? ' then hub' : ''}`);
  const ctx = startRun(runtime);
  const model = await loadModel(a.model!, { tokenizer: a.tokenizer });
  // What the rows say made the model: what made a saved model (compress.ts), the method applied here, or dense.
  let made: StoredCompression = storedCompression(model) ?? { method: 'dense', method_config: {}, calib: 'none' };
  if (made.method !== 'dense' && a.method !== 'dense') throw new Error(`--method ${a.method}: ${a.model} is already compressed (${made.method} ${JSON.stringify(made.method_config)}); evaluate it as it is, or compress its uncompressed source`);
  if (a.method !== 'dense') {
    // Validated against the model and calibrated before any compression work.
    const mod = getMethod(a.method!);
    mod.validate(methodOpts, model);
    const calib = mod.needsCalib ? calibrationFor(model, calibSource) : null;
    const calibDesc = calib ? describeCalib(calib) : 'none';
    console.error(`compressing with ${a.method} ${JSON.stringify(methodConfig)}${calib ? ` on ${calibDesc}` : ''}`);
    const result = await mod.compress(model, calib, methodOpts, { onBlockDone: (b, ms) => console.error(`   block ${b + 1}/${model.config.numLayers} compressed in ${(ms / 1000).toFixed(1)} s`) });
    model.actQuant = result.actQuant; // W8A8: activations fake-quantized in every forward
    made = { method: a.method!, method_config: result.config, calib: calibDesc };
  }
  const params = [...model.weights.values()].reduce((s, t) => s + t.size, 0);
  const batchTokens = numberFlag('batch-tokens', a['batch-tokens'], { integer: true, min: 1 });
  const label = `${model.name} × ${made.method}`; // names model and method in errors (non-finite scores)
  const base = modelScorer(model, { label, ...(batchTokens ? { maxBatchTokens: Math.max(batchTokens, model.config.maxPositions) } : {}) });
  // --export-requests: record every token request and the kit's answer (input of scripts/py/eval_mc_reference.py).
  const scorer = a['export-requests'] ? new RecordingScorer(base) : base;
  const seed = numberFlag('seed', a.seed, { integer: true, min: 0 }) ?? 0;
  const opts = {
    bos: a.bos ? true : a['no-bos'] ? false : null,
    shots: numberFlag('shots', a.shots, { integer: true, min: 0 }) ?? 0,
    seqlen: numberFlag('seqlen', a.seqlen, { integer: true, min: 2 }) ?? null,
    limit: numberFlag('limit', a.limit, { integer: true, min: 1 }) ?? null,
    seed,
    data,
    label,
    onProgress: progressPrinter(),
  };
  const t0 = performance.now();
  const outcomes: EvalOutcome[] = [];
  const rows: ResultRow[] = [];
  let failed = 0;
  for (const task of tasks) {
    console.error(`== ${task.name}`);
    try {
      const o = await evaluate(scorer, model.tokenizer, task, opts);
      outcomes.push(o);
      rows.push(...outcomeRows(ctx, o, { model: model.name, model_family: model.family, model_params: params, method: made.method, method_config: made.method_config, calib: made.calib }, seed));
      console.error(`   ${o.status}${o.status === 'no_data' ? `: ${o.notes[0]}` : ''} (${o.durationS.toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.error(`   FAILED: ${(e as Error).message}`);
    }
  }
  const wall = (performance.now() - t0) / 1000;
  disposeModel(model);

  const lines = [['task', 'metric', 'value', 'stderr', 'n', 'bos', 'seqlen', 'status']];
  for (const r of rows) {
    lines.push([r.task, r.metric, fmt(r.value, 4), fmt(r.stderr, 4), r.n === null ? '-' : String(r.n), String(r.bos), r.seqlen === null ? '-' : String(r.seqlen), r.status]);
  }
  const widths = lines[0].map((_, j) => Math.max(...lines.map((l) => l[j].length)));
  for (const l of lines) console.log(l.map((c, j) => c.padEnd(widths[j])).join('  ').trimEnd());
  console.log(`model ${model.name} (${model.source}), ${params} params, backend ${runtime.backend}, total wall time ${wall.toFixed(1)} s`);

  if (scorer instanceof RecordingScorer) {
    const rec = { model: model.source, backend: runtime.backend, tasks: tasks.map((t) => t.name), ...scorer.log };
    writeFileAtomic(a['export-requests']!, JSON.stringify(rec) + '\n');
    console.error(`wrote ${scorer.log.continuations.length} continuation and ${scorer.log.nextToken.length} next-token requests to ${a['export-requests']}`);
  }
  if (a.out) {
    appendResults(a.out, rows);
    console.error(`wrote ${rows.length} rows to ${a.out}`);
  }
  if (a['results-dir']) {
    for (const track of new Set(rows.map((r) => r.track))) {
      const file = trackFile(track, a['results-dir']);
      const mine = rows.filter((r) => r.track === track);
      appendResults(file, mine);
      console.error(`wrote ${mine.length} rows to ${file}`);
    }
  }
  if (tf.memory().numTensors !== 0) console.error(`warning: ${tf.memory().numTensors} tensors still live after disposing the model`);
  return failed ? 1 : 0;
}

/** Progress to stderr, at most every 2 s per stage, with rate and ETA. */
function progressPrinter(): (stage: string, done: number, total: number) => void {
  let last = 0;
  let stage = '';
  let start = 0;
  return (s, done, total) => {
    const now = performance.now();
    if (s !== stage) {
      stage = s;
      start = now;
      last = 0;
    }
    if (done < total && now - last < 2000) return;
    last = now;
    const secs = (now - start) / 1000;
    // The stage clock starts at its first report, so the first rate is only known from the second.
    const rate = secs > 0.5 ? `, ${(done / secs).toFixed(1)}/s, eta ${((total - done) / (done / secs)).toFixed(0)} s` : '';
    process.stderr.write(`   [${s}] ${done}/${total}${rate}\n`);
  };
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`eval: ${(e as Error).message}`);
    process.exit(1);
  },
);
