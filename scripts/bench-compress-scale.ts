// Compression at real scale (issue 17): times one or more compression settings on a model directory
// (scripts/build-random-model.ts's LLaMA-2-7B-shaped random model) with the kit, streamed block by
// block (lib/methods/sequential.ts), and the same setting with the original implementations'
// algorithms in PyTorch on the same GPU (scripts/py/compress_scale_torch.py: GPTQ, SparseGPT, Wanda,
// AWQ). Calibration: --nsamples windows of --seqlen seeded random token ids (the model is random:
// this measures cost, not quality). Each setting writes
//   - Track 3 rows (wall_time_s, peak_memory_bytes, and on webgpu peak_gpu_tensor_bytes) to
//     <rows-out>/results/track3.csv through the results writer, and
//   - one row to <rows-out>/bench/compress-scale.csv: kit and PyTorch time and peak GPU memory side
//     by side, their ratios, device and git sha.
// Run one setting per GPU call so that each has its own time limit. The compressed model is not saved.
// On the offline GPU host (README "Running on an offline GPU host"): LLMCB_GIT_SHA=<commit> bash
// .gpu/enter.sh node --import tsx scripts/bench-compress-scale.ts --backend webgpu --rows-out $OUT/data ...
//
//   npx tsx scripts/bench-compress-scale.ts --model tmp/models/random-llama2-7b --setting gptq-w4g128
//     [--setting a,b,...] [--config JSON (kit options of a single setting)] [--nsamples 128] [--seqlen 2048]
//     [--seed 0] [--backend auto] [--no-torch | --torch-only] [--python python3]
//     [--rows-out DIR (default $LLMCB_DATA_OUT, else tmp/)] [--list]
// Settings (--list prints them with their options): rtn-w4g128, magnitude-50, wanda-50, wanda-2:4,
// sparsegpt-50, sparsegpt-2:4, gptq-w8, gptq-w4g128, awq-w4g128, smoothquant-w8a8, omniquant-w4
// (1 epoch: stated in its rows), llm-pruner.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag, REPO_ROOT, runMain } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import { meterCompression, trainMetrics } from '../lib/efficiency/meters';
import { metricFields } from '../lib/metrics/catalogue';
import type { CalibSet } from '../lib/methods/calib';
import { checkMethodConfig, getMethod } from '../lib/methods/index';
import { formatPhases } from '../lib/methods/sequential';
import { disposeModel, loadModel } from '../lib/models/load';
import { appendResults, makeRow, startRun, trackFile, writeFileAtomic } from '../lib/results';
import { mulberry32 } from '../lib/rng';
import { initRuntime, parseBackend } from '../lib/runtime';
import { kernelPolicy } from '../lib/kernels';
helpFromHeader(import.meta.url);

interface Setting {
  method: string;
  opts: Record<string, unknown>; // kit options
  torch: Record<string, unknown> | null; // compress_scale_torch.py --config, null: no PyTorch counterpart here
  note?: string;
}

/** The issue's acceptance settings at the papers' settings. */
export const SETTINGS: Record<string, Setting> = {
  'rtn-w4g128': { method: 'rtn', opts: { bits: 4, groupSize: 128 }, torch: null },
  'magnitude-50': { method: 'magnitude', opts: { pattern: '50%' }, torch: null },
  'wanda-50': { method: 'wanda', opts: { pattern: '50%' }, torch: { pattern: '50%' } },
  'wanda-2:4': { method: 'wanda', opts: { pattern: '2:4' }, torch: { pattern: '2:4' } },
  'sparsegpt-50': { method: 'sparsegpt', opts: { pattern: '50%' }, torch: { pattern: '50%' } },
  'sparsegpt-2:4': { method: 'sparsegpt', opts: { pattern: '2:4' }, torch: { pattern: '2:4' } },
  'gptq-w8': { method: 'gptq', opts: { bits: 8, groupSize: -1 }, torch: { bits: 8, group: -1 } },
  'gptq-w4g128': { method: 'gptq', opts: { bits: 4, groupSize: 128 }, torch: { bits: 4, group: 128 } },
  'awq-w4g128': { method: 'awq', opts: { bits: 4, groupSize: 128 }, torch: { bits: 4, group: 128 } },
  'smoothquant-w8a8': { method: 'smoothquant', opts: {}, torch: null },
  'omniquant-w4': { method: 'omniquant', opts: { bits: 4, epochs: 1 }, torch: null, note: 'OmniQuant with 1 epoch (paper: 20) to fit one GPU call' },
  'llm-pruner': { method: 'llm-pruner', opts: {}, torch: null },
};

const HEADER = [
  'setting', 'method', 'method_config', 'model', 'layers', 'hidden', 'nsamples', 'seqlen', 'backend', 'device',
  'kit_time_s', 'kit_peak_gpu_bytes', 'kit_peak_rss_bytes', 'torch_time_s', 'torch_max_memory_allocated',
  'time_ratio', 'memory_ratio', 'torch_device', 'git_sha', 'started_at', 'note',
] as const;
type BenchRow = Record<(typeof HEADER)[number], string>;

/** On webgpu, the kernels the block forwards use (lib/methods/sequential.ts turns them on): their tilings, and the linears' under a gradient tape, for the row's note. */
function kernelNote(): string {
  const p = kernelPolicy();
  return `kernels: GEMM ${p.gemm}, attention ${p.attention}, linears under gradients ${p.gradGemm === 'on' ? 'GEMM' : "tfjs's matMul"}`;
}

/** Seeded random windows of token ids in [0, vocab). */
export function randomCalib(vocab: number, nsamples: number, seqlen: number, seed: number): CalibSet {
  const r = mulberry32(seed);
  const windows = Array.from({ length: nsamples }, () => Array.from({ length: seqlen }, () => Math.floor(r() * vocab)));
  return { corpus: 'random-ids', windows, nsamples, seqlen, seed };
}

/** Appends rows to a bench CSV (same header), written atomically. */
function appendBench(file: string, rows: BenchRow[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const old = fs.existsSync(file) ? parseCsvRecords(fs.readFileSync(file, 'utf8'), file) : [];
  const all = [...old, ...rows].map((r) => HEADER.map((h) => r[h] ?? ''));
  writeFileAtomic(file, formatCsv(HEADER, all));
}

interface TorchResult {
  time_s: number;
  max_memory_allocated: number;
  device: string;
  torch: string;
  calib: string;
}

function runTorch(python: string, model: string, cfg: Record<string, unknown>, method: string, nsamples: number, seqlen: number, seed: number): TorchResult {
  const script = path.join(REPO_ROOT, 'scripts/py/compress_scale_torch.py');
  const args = [script, '--model', model, '--method', method, '--config', JSON.stringify(cfg), '--nsamples', String(nsamples), '--seqlen', String(seqlen), '--seed', String(seed)];
  console.log(`[bench-compress-scale] ${python} ${args.join(' ')}`);
  let out: string;
  try {
    out = execFileSync(python, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 * 1024 * 1024 });
  } catch (e) {
    throw new Error(`PyTorch side failed (${python} ${script} --method ${method}): ${(e as Error).message}; --no-torch skips it`);
  }
  const line = out.split('\n').reverse().find((l) => l.trim().startsWith('{'));
  if (!line) throw new Error(`PyTorch side printed no JSON result (${python} ${script})`);
  return JSON.parse(line) as TorchResult;
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      model: { type: 'string' },
      setting: { type: 'string' },
      config: { type: 'string' },
      nsamples: { type: 'string' },
      seqlen: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      'no-torch': { type: 'boolean', default: false },
      'torch-only': { type: 'boolean', default: false },
      python: { type: 'string', default: process.env.PYTHON ?? 'python3' },
      'rows-out': { type: 'string' },
      list: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (v.list) {
    for (const [k, s] of Object.entries(SETTINGS)) console.log(`${k.padEnd(18)} ${s.method} ${JSON.stringify(s.opts)}${s.torch ? `  (PyTorch: ${JSON.stringify(s.torch)})` : ''}`);
    return;
  }
  if (!v.model) throw new Error('--model DIR is required (e.g. scripts/build-random-model.ts --out tmp/models/random-llama2-7b)');
  if (!v.setting) throw new Error(`--setting is required (one or more of ${Object.keys(SETTINGS).join(', ')})`);
  const names = v.setting.split(',');
  for (const n of names) if (!(n in SETTINGS)) throw new Error(`--setting '${n}' is not a setting (${Object.keys(SETTINGS).join(', ')})`);
  if (v['no-torch'] && v['torch-only']) throw new Error('give --no-torch or --torch-only, not both');
  let override: Record<string, unknown> = {};
  if (v.config) {
    if (names.length !== 1) throw new Error('--config applies to a single --setting');
    try {
      override = JSON.parse(v.config) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`--config: not JSON: ${(e as Error).message}`);
    }
  }
  const nsamples = numberFlag('nsamples', v.nsamples, { integer: true, min: 1 }) ?? 128;
  const seqlenAsked = numberFlag('seqlen', v.seqlen, { integer: true, min: 2 }) ?? 2048;
  const seed = numberFlag('seed', v.seed, { integer: true, min: 0 }) ?? 0;
  const rowsOut = v['rows-out'] ?? process.env.LLMCB_DATA_OUT ?? path.join(REPO_ROOT, 'tmp');
  const benchFile = path.join(rowsOut, 'bench', 'compress-scale.csv');
  const runtime = await initRuntime({ backend: parseBackend(v.backend!) });
  console.log(`backend ${runtime.backend} on ${runtime.device}`);
  const ctx = startRun(runtime);

  for (const name of names) {
    const s = SETTINGS[name];
    const opts = { ...s.opts, ...override };
    checkMethodConfig(s.method, opts, `--setting ${name}`);
    const mod = getMethod(s.method);
    const model = await loadModel(v.model);
    const random = model.config.hf.llmcb_random as { seed: number } | undefined;
    const modelNote = random ? `random weights (seed ${random.seed}): cost, not quality` : 'weights as loaded';
    const seqlen = Math.min(seqlenAsked, model.config.maxPositions);
    const calib = randomCalib(model.config.vocabSize, nsamples, seqlen, seed);
    const startedAt = new Date().toISOString();
    const row: BenchRow = {
      setting: name, method: s.method, method_config: JSON.stringify(opts), model: model.name, layers: String(model.config.numLayers),
      hidden: String(model.config.hiddenSize), nsamples: String(nsamples), seqlen: String(seqlen), backend: runtime.backend, device: runtime.device,
      kit_time_s: '', kit_peak_gpu_bytes: '', kit_peak_rss_bytes: '', torch_time_s: '', torch_max_memory_allocated: '', time_ratio: '', memory_ratio: '',
      torch_device: '', git_sha: ctx.git_sha, started_at: startedAt, note: [modelNote, `calibration random-ids:${nsamples}x${seqlen}:seed${seed}`, runtime.backend === 'webgpu' ? kernelNote() : '', s.note].filter(Boolean).join('; '),
    };
    try {
      if (!v['torch-only']) {
        const full = { ...mod.defaults, ...opts };
        mod.validate(full, model);
        const { result, measurement: meter } = await meterCompression((sample) =>
          mod.compress(model, mod.needsCalib ? calib : null, opts, {
            sample,
            onBlockDone: (b, ms, phases) => console.log(`${name}: block ${b + 1}/${model.config.numLayers} in ${(ms / 1000).toFixed(1)} s${formatPhases(phases)}`),
          }),
        );
        const seconds = meter.wallS;
        const gib = (x: number | null) => (x === null ? 'n/a' : `${(x / 2 ** 30).toFixed(2)} GiB`);
        console.log(`${name}: kit ${seconds.toFixed(1)} s, GPU bytes of live tensors ${gib(meter.peakGpuBytes)}, live tensors ${gib(meter.peakBytes)}, host RSS peak ${gib(meter.peakRssBytes)}`);
        row.kit_time_s = seconds.toFixed(2);
        row.kit_peak_gpu_bytes = meter.peakGpuBytes === null ? '' : String(meter.peakGpuBytes);
        row.kit_peak_rss_bytes = String(meter.peakRssBytes);
        const common = {
          model: model.name, model_family: model.family, method: result.method, method_config: result.config,
          calib: result.calib, seed, seqlen, duration_s: seconds,
        };
        const note = `${row.note}; streamed block by block`;
        appendResults(
          trackFile(3, rowsOut),
          trainMetrics(meter, runtime.backend).map((x) => makeRow(ctx, { ...common, track: 3, ...metricFields(3, x.metric), value: x.value, note: `${note}; ${x.note}` })),
        );
      }
    } finally {
      disposeModel(model); // before PyTorch takes the GPU
    }
    if (s.torch && !v['no-torch']) {
      const t = runTorch(v.python!, v.model, s.torch, s.method, nsamples, seqlen, seed);
      console.log(`${name}: PyTorch ${t.time_s.toFixed(1)} s, max_memory_allocated ${(t.max_memory_allocated / 2 ** 30).toFixed(2)} GiB on ${t.device}`);
      row.torch_time_s = t.time_s.toFixed(2);
      row.torch_max_memory_allocated = String(t.max_memory_allocated);
      row.torch_device = `${t.device} (torch ${t.torch})`;
      if (row.kit_time_s) row.time_ratio = (Number(row.kit_time_s) / t.time_s).toFixed(3);
      if (row.kit_peak_gpu_bytes) row.memory_ratio = (Number(row.kit_peak_gpu_bytes) / t.max_memory_allocated).toFixed(3);
    }
    appendBench(benchFile, [row]);
    console.log(`${name}: row appended to ${benchFile}`);
  }
}

runMain(main);
