// Exactness of the inference executor on this machine's GPU (the GPU host has no vitest; CI runs
// the same checks on lavapipe in test/engine.test.ts): per-request log-likelihoods against the tfjs
// path on stories260K, every zoo model and the ~1.2B random bench model; logits against the
// transformers fixtures; and, with data, stories260K's full WikiText-2 perplexity through the
// executor against the reference 120.9297 (± 0.01%). With the reference folder, W8A8 on the INT8
// kernels: naive W8A8 and SmoothQuant (α 0.5, per-token) of stories260K with the reference's
// calibration, their linears packed for the INT8 GEMM (tensor cores where the device has INT8
// subgroup matrices), full WikiText-2 perplexity through the executor against the fake-quantized
// tfjs path (± 0.1%) and the original implementation's number. Writes
// data/bench/executor-check.csv as rows come; exits 1 on any failure.
//   bash .gpul/enter.sh node --import tsx scripts/check-executor.ts [--data DIR] [--reference DIR] [--no-1b] [--out FILE]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag, sharedDir } from '../lib/cli';
import { printUsage } from '../lib/help';
import { fixtureLogitParity, scorerAgreement } from '../lib/engine/check';
import { EXECUTOR_DEFAULTS } from '../lib/engine/executor';
import { windowPerplexity } from '../lib/eval/perplexity';
import { attachPackedLinears } from '../lib/engine/inference';
import { packLinears } from '../lib/kernels/packed-linear';
import { loadCalibIds } from '../lib/methods/calib';
import { getMethod } from '../lib/methods';
import { dataOptions } from '../lib/data/common';
import { evaluate } from '../lib/eval/evaluate';
import { modelScorer, tensorScorer } from '../lib/eval/model-scorer';
import { disposeModel, loadModel } from '../lib/models/load';
import { parityFixtures } from '../lib/models/parity';
import { CONFIG_1B, randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { dataOutDir, gitSha } from '../lib/results';
import { initRuntime, parseBackend, writeBenchCsv } from '../lib/runtime';
import { TASKS } from '../lib/tasks';

const USAGE = `usage: check-executor.ts [--backend webgpu] [--data DIR] [--reference DIR] [--no-1b] [--out FILE]
  --data DIR       datasets in their original formats (../shared/datasets): adds the full WikiText-2 perplexity of stories260K
  --reference DIR  the original implementations' stories260K results (default ../shared/reference/stories260K when present): adds W8A8 on the INT8 kernels
  --windows N      WikiText-2 windows of the W8A8 checks (default all 1589; fewer: a quick look, compared with the tfjs path only)
  --no-1b     skip the ~1.2B random model (tfjs reference forwards take a while)`;
const { values: a } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    data: { type: 'string' },
    reference: { type: 'string', default: path.join(sharedDir(), 'reference/stories260K') },
    windows: { type: 'string' },
    'no-1b': { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(dataOutDir(), 'bench/executor-check.csv') },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (a.help) {
  printUsage(USAGE);
  process.exit(0);
}
const REF_PPL = 120.9297; // ../shared/reference/stories260K/reference_ppl.csv, dense, 1589 windows of 512
const rt = await initRuntime({ backend: parseBackend(a.backend!) });
if (rt.backend !== 'webgpu') {
  console.error(`check-executor: the executor needs the webgpu backend ('${rt.backend}' on ${rt.device})`);
  process.exit(1);
}
const prov = { backend: rt.backend, device: rt.device, git_sha: gitSha(), started_at: new Date().toISOString() };
const rows: Record<string, string | number | boolean>[] = [];
let failed = 0;
// Every row names the executor's kernels (the defaults, or LLMCB_EXECUTOR_GEMM / LLMCB_EXECUTOR_ATTENTION).
const kernels = `executor GEMM tilings '${EXECUTOR_DEFAULTS.gemm}', attention '${EXECUTOR_DEFAULTS.attention}'`;
function report(model: string, check: string, metric: string, error: number, tolerance: number, note = ''): void {
  const pass = error <= tolerance;
  failed += pass ? 0 : 1;
  rows.push({ model, check, metric, error, tolerance, pass, note: [note, kernels].filter(Boolean).join('; '), ...prov });
  writeBenchCsv(a.out!, rows);
  console.log(`${pass ? 'ok  ' : 'FAIL'} ${model.padEnd(22)} ${check.padEnd(44)} ${metric} ${error.toExponential(2)}${note ? `  (${note})` : ''}`);
}

async function agreement(name: string, load: () => Promise<Model>): Promise<void> {
  const m = await load();
  try {
    const t0 = performance.now();
    const r = await scorerAgreement(m);
    const note = `${r.requests} requests, ${r.mismatches} flag/count mismatches, ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    report(name, 'log-likelihoods vs the tfjs path', 'max_rel', r.mismatches ? Infinity : r.maxRel, 1e-4, note);
  } finally {
    disposeModel(m);
  }
}

await agreement('stories260K', () => loadModel('models/stories260K/stories260K.bin'));
const zoo = 'models/zoo';
for (const d of existsSync(zoo) ? readdirSync(zoo).filter((d) => existsSync(path.join(zoo, d, 'config.json'))).sort() : []) {
  await agreement(`zoo ${d}`, () => loadModel(path.join(zoo, d)));
}
if (!a['no-1b']) await agreement('llama-1b-random', async () => randomModel(CONFIG_1B, { seed: 0, dist: 'uniform', name: 'llama-1b-random' }));
const fixtures = 'test/fixtures/models';
for (const d of parityFixtures(fixtures)) {
  const r = await fixtureLogitParity(path.join(fixtures, d), 'models/stories260K/tok512.bin');
  if ('unsupported' in r) rows.push({ model: `fixture ${d}`, check: 'logits vs transformers', metric: 'not run', error: '', tolerance: '', pass: true, note: `executor refuses it: ${r.unsupported}`, ...prov });
  else report(`fixture ${d}`, 'logits vs transformers', 'max_abs', r.worst, 1e-4, `${r.compared} logits`);
}
writeBenchCsv(a.out!, rows);
if (a.data) {
  const m = await loadModel('models/stories260K/stories260K.bin');
  try {
    const t0 = performance.now();
    const o = await evaluate(modelScorer(m), m.tokenizer, TASKS.wikitext2, { data: dataOptions({ dataDir: a.data, hub: false }), seqlen: 512 });
    const s = (performance.now() - t0) / 1000;
    const ppl = o.results[0]?.value;
    if (o.status !== 'ok' || typeof ppl !== 'number') report('stories260K', 'WikiText-2 perplexity (full, executor)', 'rel_to_ref', Infinity, 1e-4, `no result: ${o.notes.join('; ')}`);
    else report('stories260K', 'WikiText-2 perplexity (full, executor)', 'rel_to_ref', Math.abs(ppl - REF_PPL) / REF_PPL, 1e-4, `ppl ${ppl.toFixed(4)} vs ${REF_PPL}; ${o.results[0].n} windows in ${s.toFixed(1)} s`);
  } finally {
    disposeModel(m);
  }
}
if (existsSync(path.join(a.reference!, 'reference_ppl.csv'))) await w8a8Checks(a.reference!, a.windows ? numberFlag('windows', a.windows, { integer: true, min: 1 }) : null);
console.log(`${rows.length - failed}/${rows.length} executor checks passed; wrote ${a.out}`);
process.exit(failed ? 1 : 0);

/**
 * Naive W8A8 and SmoothQuant of stories260K by the reference protocol (its 128 calibration windows,
 * WikiText-2 test over 1589 windows of 512 tokens): perplexity on the INT8 kernels through the
 * executor against the fake-quantized tfjs path in this run, and the original implementation's.
 */
async function w8a8Checks(refDir: string, windows: number | null): Promise<void> {
  const ref = new Map(
    readFileSync(path.join(refDir, 'reference_ppl.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => [l.split(',')[0], Number(l.split(',').at(-1))] as const),
  );
  const testIds = (JSON.parse(readFileSync(path.join(refDir, 'wikitext2_test_tok512.json'), 'utf8')) as { test_ids: number[] }).test_ids;
  const calib = loadCalibIds(path.join(refDir, 'calib_wikitext2_valid_128x512.json'));
  const seqlen = 512;
  for (const [label, opts] of [['w8a8-naive', { smooth: false }], ['smoothquant', { smooth: true, alpha: 0.5 }]] as const) {
    const m = await loadModel('models/stories260K/stories260K.bin');
    try {
      const method = getMethod('smoothquant');
      const r = await method.compress(m, calib, { ...method.defaults, ...opts });
      m.actQuant = r.actQuant ?? null;
      const t0 = performance.now();
      const fake = (await windowPerplexity(tensorScorer(m, {}, seqlen), testIds, { seqlen, windows })).ppl;
      const t1 = performance.now();
      const skipped = attachPackedLinears(m, packLinears(r.quantized, m.actQuant));
      if (skipped.size) throw new Error(`${label}: linears left out of the INT8 kernels: ${[...skipped].map(([n, w]) => `${n} (${w})`).join(', ')}`);
      const int8 = (await windowPerplexity(m, testIds, { seqlen, windows })).ppl;
      const t2 = performance.now();
      const note = `${windows ?? 'all'} windows; INT8 ${int8.toFixed(4)} in ${((t2 - t1) / 1000).toFixed(1)} s; fake-quantized tfjs ${fake.toFixed(4)} in ${((t1 - t0) / 1000).toFixed(1)} s; original implementation ${ref.get(label)}; ${m.packedLinears!.size} packed linears`;
      report(`stories260K ${label}`, 'WikiText-2 ppl, INT8 kernels vs fake-quant tfjs', 'rel', Math.abs(int8 - fake) / fake, 1e-3, note);
      if (windows === null) report(`stories260K ${label}`, 'WikiText-2 ppl, INT8 kernels vs original', 'rel', Math.abs(int8 - ref.get(label)!) / ref.get(label)!, 1e-3, note);
    } finally {
      disposeModel(m);
    }
  }
}
