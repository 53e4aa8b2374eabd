// Times the WikiText-2 window-perplexity protocol (DESIGN §1: non-overlapping windows of seqlen
// tokens, no BOS) on one backend and prints windows/s, wall and CPU time and the perplexity
// against the reference value. Progress goes to stderr; the summary line to stdout.
//
//   taskset -c 0 npx tsx scripts/bench-ppl.ts [--backend wasm] [--model models/stories260K/stories260K.bin]
//     [--data DIR | --tokens FILE.json] [--seqlen 512] [--windows N] [--batch B] [--expect PPL]
//     [--dump FILE.json] [--compare FILE.json] [--out data/bench/ppl-wasm.csv] [--note TEXT]
//
// --tokens reads `test_ids` from a JSON file (e.g. ../shared/reference/stories260K/wikitext2_test_tok512.json)
// instead of tokenizing the split; --dump writes the per-window summed NLLs and --compare checks
// them against an earlier dump (largest absolute and relative difference per window; ok below 1e-5 relative);
// --out appends the run as one row to a benchmark CSV (wall and CPU time, the CPUs the process may use).
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { printUsage } from '../lib/help';
import { dataOptions, resolveDataDir } from '../lib/data/common';
import { loadWikiText2 } from '../lib/data/wikitext';
import { WINDOW_PPL_DEFAULTS, windowPerplexity } from '../lib/eval/perplexity';
import { disposeModel, loadModel } from '../lib/models/load';
import { gitSha, writeFileAtomic } from '../lib/results';
import { parseCsvRecords } from '../lib/csv';
import { initRuntime, parseBackend, writeBenchCsv } from '../lib/runtime';
import { TASKS } from '../lib/tasks';

const USAGE = `usage: npx tsx scripts/bench-ppl.ts [--backend wasm|webgpu|cpu|auto] [--model PATH] [--data DIR | --tokens FILE]
  [--seqlen N] [--windows N] [--batch B] [--expect PPL] [--dump FILE] [--compare FILE] [--out CSV] [--note TEXT]`;

const REFERENCE_PPL = 120.9297; // stories260K dense, ../shared/reference/stories260K/reference_ppl.csv

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      backend: { type: 'string', default: 'wasm' },
      model: { type: 'string', default: 'models/stories260K/stories260K.bin' },
      data: { type: 'string' },
      tokens: { type: 'string' },
      seqlen: { type: 'string', default: '512' },
      windows: { type: 'string' },
      batch: { type: 'string' },
      expect: { type: 'string' },
      dump: { type: 'string' },
      compare: { type: 'string' },
      out: { type: 'string' },
      note: { type: 'string', default: '' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (a.help) {
    printUsage(USAGE);
    return 0;
  }
  const startedAt = new Date().toISOString();
  const runtime = await initRuntime({ backend: parseBackend(a.backend!) });
  const model = await loadModel(a.model!);
  const seqlen = numberFlag('seqlen', a.seqlen!, { integer: true, min: 2 });
  let ids: number[];
  const tok0 = performance.now();
  if (a.tokens) {
    ids = (JSON.parse(fs.readFileSync(a.tokens, 'utf8')) as { test_ids: number[] }).test_ids;
  } else {
    const data = await loadWikiText2(dataOptions({ dataDir: resolveDataDir(a.data), hub: false }), 'test');
    if (data.status !== 'ok') throw new Error(`WikiText-2: ${data.reason}`);
    ids = model.tokenizer.encode(TASKS.wikitext2.docToText(data.docs[0]));
  }
  const tokS = (performance.now() - tok0) / 1000;
  const windows = numberFlag('windows', a.windows, { integer: true, min: 1 }) ?? null;
  const batch = numberFlag('batch', a.batch, { integer: true, min: 1 }) ?? WINDOW_PPL_DEFAULTS.batch;
  console.error(`backend ${runtime.backend} on ${runtime.device}; ${model.name}; ${ids.length} tokens (${tokS.toFixed(1)} s to read); seqlen ${seqlen}, batch ${batch}`);

  let last = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const r = await windowPerplexity(model, ids, {
    seqlen,
    windows,
    batch,
    onProgress: (done, total) => {
      const now = performance.now();
      if (done < total && now - last < 5000) return;
      last = now;
      const s = (now - t0) / 1000;
      process.stderr.write(`   ${done}/${total} windows, ${(done / s).toFixed(2)}/s, eta ${((total - done) / (done / s)).toFixed(0)} s\n`);
    },
  });
  const wall = (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1e6;
  const expect = a.expect !== undefined ? Number(a.expect) : r.windows === r.totalWindows && model.name === 'stories260K' && seqlen === 512 ? REFERENCE_PPL : null;
  const rel = expect === null ? null : (r.ppl - expect) / expect;
  console.log(
    `${model.name} wikitext2 seqlen ${seqlen}: ${r.windows}/${r.totalWindows} windows in ${wall.toFixed(1)} s wall (${cpu.toFixed(1)} s CPU), ` +
      `${(r.windows / wall).toFixed(2)} windows/s, PPL ${r.ppl.toFixed(4)}` +
      (expect === null ? '' : ` (reference ${expect}, ${(rel! * 100).toFixed(4)}%)`) +
      `, backend ${runtime.backend}, batch ${batch}`,
  );
  let failed = expect !== null && Math.abs(rel!) > 1e-4;
  if (a.dump) {
    writeFileAtomic(a.dump, JSON.stringify({ model: model.source, seqlen, ppl: r.ppl, windowNll: r.windowNll }) + '\n');
    console.error(`wrote ${r.windowNll.length} window NLLs to ${a.dump}`);
  }
  if (a.compare) {
    const ref = JSON.parse(fs.readFileSync(a.compare, 'utf8')) as { windowNll: number[] };
    const n = Math.min(ref.windowNll.length, r.windowNll.length);
    let worst = 0;
    let worstRel = 0;
    let at = -1;
    for (let k = 0; k < n; k++) {
      const d = Math.abs(ref.windowNll[k] - r.windowNll[k]);
      worstRel = Math.max(worstRel, d / Math.abs(ref.windowNll[k]));
      if (d > worst) [worst, at] = [d, k];
    }
    // The evaluator's own batching-invariance check (test/eval-stories.test.ts) allows a relative 1e-5 per item.
    const ok = worstRel < 1e-5 && n === r.windowNll.length;
    console.log(`compare ${path.basename(a.compare)}: ${n} windows, largest |ΔNLL| ${worst.toExponential(3)} nats (window ${at}), largest relative ${worstRel.toExponential(3)}, ${ok ? 'ok' : 'DIFFERENT'}`);
    failed ||= !ok;
  }
  if (a.out) {
    const row = {
      model: model.name,
      task: 'wikitext2',
      seqlen,
      bos: false,
      windows: r.windows,
      batch,
      backend: runtime.backend,
      device: runtime.device,
      cpus_allowed: cpusAllowed(),
      wall_s: wall.toFixed(2),
      cpu_s: cpu.toFixed(2),
      windows_per_s: (r.windows / wall).toFixed(3),
      ppl: r.ppl.toFixed(4),
      reference_ppl: expect ?? '',
      git_sha: gitSha(),
      started_at: startedAt,
      note: a.note!,
    };
    const old = fs.existsSync(a.out) ? parseCsvRecords(fs.readFileSync(a.out, 'utf8'), a.out) : [];
    writeBenchCsv(a.out, [...old, row]);
    console.error(`appended the run to ${a.out}`);
  }
  disposeModel(model);
  if (tf.memory().numTensors !== 0) console.error(`warning: ${tf.memory().numTensors} tensors still live`);
  return failed ? 1 : 0;
}

/** The CPUs this process may run on (Linux: Cpus_allowed_list, e.g. '0' under taskset -c 0). */
function cpusAllowed(): string {
  try {
    return /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`bench-ppl: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
