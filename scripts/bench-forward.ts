// Forward-pass throughput of the kit's engine against PyTorch on the same GPU.
//   bash .gpu/enter.sh npx tsx scripts/bench-forward.ts            (H100: ~1.2B LLaMA-3.2-1B-shaped model)
//   npx tsx scripts/bench-forward.ts --small --backend wasm --no-torch   (a tiny model, anywhere)
//   --kernels off|on|both (default both on webgpu): the kit's custom WGSL kernels (lib/kernels:
//   fp32 GEMM for every linear and the LM head, fused attention) off, on, or one row each
//   ('tfjs' and 'tfjs+kernels'); --gemm-tiles / --attention-tiles pick their tiles, --fused-ops on|off
//   the fused RMSNorm/RoPE/SwiGLU kernels.
//   --quant none,w8a8,w4,w4-head (default none): also time the model with quantized linears on the
//   quantized kernels (kernels on; lib/kernels/w8a8.ts, wq-gemm.ts): 'w8a8' INT8 per-channel weights
//   with per-token INT8 activations (the W8A8 prefill row), 'w4' weight-only 4-bit g128 block
//   linears (the W4 decode row), 'w4-head' the same plus the LM head. The codes are random (speed
//   only: the values do not change the work); rows are labelled by dtype. --int8-tiles picks the
//   W8A8 GEMM's subgroup-matrix tiling (lib/kernels/w8a8.ts INT8_TILES) on the tfjs path;
//   --executor-int8-tiles auto,NAME,... times the executor's W8A8 once per tiling (default auto);
//   --executor-gemm FAMILY,... times the executor once per fp32 GEMM tiling family (lib/engine/executor.ts
//   GEMM_FAMILIES, or spelled out as gemmFamily says; default the executor's).
//   --engine executor,tfjs (default both on webgpu): 'executor' times the kit's inference executor
//   (lib/engine: planned forward, one command buffer per step; fp32 and --quant w8a8), 'tfjs' the tfjs path
//   (with --kernels as above).
//   --profile: after timing each variant, print where one prefill and one decode step spend their
//   time (tfjs kernels by GPU time from timestamp queries, dispatch counts, wall time) to stderr.
// A randomly initialised LLaMA-style model (hidden 2048, 16 layers, GQA 32/8 heads, SwiGLU 8192,
// 128k tied vocabulary): prefill tokens/s (one forward over a prompt, all logits) and KV-cache
// greedy decode tokens/s (one token per step, its id read back each step). PyTorch runs the same
// config through transformers (scripts/py/bench_forward_torch.py) in fp32 (TF32 off) and bf16.
// Writes data/bench/forward.csv with each row's ratio to PyTorch fp32.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { REPO_ROOT } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { formatCsv } from '../lib/csv';
import { dataOutDir, gitSha, writeFileAtomic } from '../lib/results';
import { initRuntime, parseBackend, syncDevice, timeRegion } from '../lib/runtime';
import { median } from '../lib/runtime/bench';
import { WARMUP_MIN_MS, warmThenTime } from '../lib/efficiency/engines/types';
import { disposeModel } from '../lib/models/load';
import { CONFIG_1B, CONFIG_SMALL, randomModel } from '../lib/models/random';
import { forward, generate } from '../lib/models/transformer';
import { Decoder } from '../lib/engine/generate';
import { EXECUTOR_DEFAULTS, executorKernelGroups, gemmFamily, type ExecutorOptions } from '../lib/engine/executor';
import { KernelTimes } from '../lib/kernels/timing';
import { KERNEL_DEFAULTS, kernelPolicy, withKernels, type KernelPolicy } from '../lib/kernels';
import { kernelDispatches } from '../lib/kernels/gpu';
import { attachPackedLinears, type InferenceModel } from '../lib/engine/inference';
import { disposePackedLinears, type PackedLinear } from '../lib/kernels/packed-linear';
import { randomPackedLinear } from '../lib/kernels/quant-cases';
import { blockLinearNames } from '../lib/methods/sequential';
import { ARCHS, linearName } from '../lib/models/arch';
import type { Model } from '../lib/models/types';
import { actQuantDefaults } from '../lib/quant/act';
helpFromHeader(import.meta.url);

const HEADER = [
  'engine', 'dtype', 'backend', 'device', 'model', 'params', 'hidden', 'layers', 'vocab', 'batch',
  'prefill_tokens', 'decode_tokens', 'prefill_tok_s', 'decode_tok_s', 'prefill_ratio_vs_torch_fp32',
  'decode_ratio_vs_torch_fp32', 'git_sha', 'started_at', 'note',
] as const;
type Row = Record<(typeof HEADER)[number], string>;

interface TorchResult {
  dtype: string;
  params: number;
  prefill_tok_s: number;
  prefill_ms: number;
  prefill_ms_min: number;
  prefill_ms_max: number;
  decode_tok_s: number;
  device: string;
  torch: string;
  transformers: string;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      small: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'webgpu' },
      prefill: { type: 'string' },
      decode: { type: 'string' },
      reps: { type: 'string', default: '10' },
      out: { type: 'string', default: path.join(dataOutDir(), 'bench/forward.csv') },
      python: { type: 'string', default: process.env.PYTHON ?? 'python3' },
      'no-torch': { type: 'boolean', default: false },
      kernels: { type: 'string', default: 'both' },
      'gemm-tiles': { type: 'string', default: KERNEL_DEFAULTS.gemm },
      'attention-tiles': { type: 'string', default: KERNEL_DEFAULTS.attention },
      quant: { type: 'string', default: 'none' },
      'int8-tiles': { type: 'string', default: KERNEL_DEFAULTS.int8Tile },
      'executor-int8-tiles': { type: 'string', default: EXECUTOR_DEFAULTS.int8Tile },
      'executor-gemm': { type: 'string', default: EXECUTOR_DEFAULTS.gemm },
      'fused-ops': { type: 'string', default: KERNEL_DEFAULTS.fusedOps },
      profile: { type: 'boolean', default: false },
      engine: { type: 'string', default: 'executor,tfjs' },
    },
    strict: true,
  });
  const hf = values.small ? CONFIG_SMALL : CONFIG_1B;
  const prefill = Number(values.prefill ?? (values.small ? 64 : 512)); // prompt length for prefill
  const decode = Number(values.decode ?? (values.small ? 16 : 64)); // tokens generated for decode
  const reps = Number(values.reps); // timed repetitions (median)
  for (const [k, v] of [['prefill', prefill], ['decode', decode], ['reps', reps]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive integer, got ${v}`);
  }
  const startedAt = new Date().toISOString();
  const sha = gitSha();
  if (!['off', 'on', 'both'].includes(values.kernels!)) throw new Error(`--kernels must be off, on or both, got '${values.kernels}'`);
  const rt = await initRuntime({ backend: parseBackend(values.backend!) });
  if (values.kernels === 'on' && rt.backend !== 'webgpu') throw new Error(`--kernels on: the custom kernels need the webgpu backend (running on ${rt.backend})`);
  const kernelRuns = rt.backend !== 'webgpu' || values.kernels === 'off' ? [false] : values.kernels === 'on' ? [true] : [false, true];
  if (values.kernels === 'both' && rt.backend !== 'webgpu') console.error(`[bench-forward] kernels need webgpu: timing the plain tfjs path only on ${rt.backend}`);
  const quants = values.quant!.split(',').filter(Boolean) as Quant[];
  for (const q of quants) if (!(q in QUANTS)) throw new Error(`--quant: unknown '${q}' (choose from ${Object.keys(QUANTS).join(', ')})`);
  if (quants.some((q) => q !== 'none') && rt.backend !== 'webgpu') throw new Error(`--quant ${values.quant}: the quantized kernels need the webgpu backend (running on ${rt.backend})`);
  // Plain rows first (as --kernels says), then each quantized model on the kernels.
  const engines = values.engine!.split(',').filter(Boolean);
  for (const e of engines) if (e !== 'executor' && e !== 'tfjs') throw new Error(`--engine: unknown '${e}' (executor, tfjs)`);
  if (engines.includes('executor') && rt.backend !== 'webgpu') throw new Error(`--engine executor: the executor needs the webgpu backend (running on ${rt.backend})`);
  const runs = !engines.includes('tfjs')
    ? []
    : [...(quants.includes('none') ? kernelRuns.map((kernels) => ({ kernels, quant: 'none' as Quant })) : []), ...quants.filter((q) => q !== 'none').map((quant) => ({ kernels: true, quant }))];
  const gemmFamilies = values['executor-gemm']!.split(',').filter(Boolean);
  for (const f of gemmFamilies) gemmFamily(f); // names the bad one
  const policy: Partial<KernelPolicy> = { gemm: values['gemm-tiles'] as KernelPolicy['gemm'], attention: values['attention-tiles'] as KernelPolicy['attention'], int8Tile: values['int8-tiles'] as KernelPolicy['int8Tile'], fusedOps: values['fused-ops'] as KernelPolicy['fusedOps'] };
  console.error(`[bench-forward] ${rt.backend} on ${rt.device}; building a random ${values.small ? 'small' : '~1.2B'} model`);
  const model = randomModel(hf, { seed: 0, dist: 'uniform', name: values.small ? 'llama-small-random' : 'llama-1b-random' });
  const params = [...model.weights.values(), ...[...(model.splitWeights?.values() ?? [])].flat()].reduce((a, t) => a + t.size, 0);
  const rows: Row[] = [];
  try {
    // The executor runs dense fp32 and W8A8 models (weight-only packed linears are not in it).
    for (const quant of engines.includes('executor') ? quants.filter((q) => q === 'none' || q === 'w8a8') : []) {
      applyQuant(model, quant);
      for (const int8Tile of quant === 'w8a8' ? (values['executor-int8-tiles']!.split(',').filter(Boolean) as ExecutorOptions['int8Tile'][]) : [EXECUTOR_DEFAULTS.int8Tile]) {
        for (const gemm of gemmFamilies) rows.push(await timeExecutor(model, hf, prefill, decode, reps, rt.backend, rt.device, params, sha, startedAt, values.profile!, quant, { int8Tile, gemm }));
      }
    }
    for (const { kernels, quant } of runs) {
      applyQuant(model, quant);
      await withKernels({ ...policy, mode: kernels ? 'auto' : 'off' }, async () => {
        // Prefill: one forward over `prefill` tokens (all logits, as transformers' forward).
        const ids = tf.tensor2d(Array.from({ length: prefill }, (_, i) => 3 + ((i * 7919) % (hf.vocab_size - 3))), [1, prefill], 'int32');
        const once = async () => {
          const { ms } = await timeRegion(() => tf.tidy(() => forward(model, ids, { kernels: true })).dispose());
          return ms;
        };
        const { tokS: prefillTokS, spread } = await tokensPerSecond(prefill, reps, once);
        ids.dispose();
        // Decode: time from the first generated token to the last (prefill excluded).
        const prompt = Array.from({ length: prefill }, (_, i) => 3 + ((i * 104729) % (hf.vocab_size - 3)));
        await generate(model, prompt, { maxNewTokens: 4, stopAtEos: false }); // warm-up at the timed cache lengths (kernels pick shader variants by length)
        const decodeTimes: number[] = [];
        for (let r = 0; r < Math.max(1, Math.floor(reps / 2)); r++) {
          const stamps: number[] = [];
          await syncDevice();
          await generate(model, prompt, { maxNewTokens: decode + 1, stopAtEos: false, onToken: () => stamps.push(performance.now()) });
          decodeTimes.push(stamps[stamps.length - 1] - stamps[0]);
        }
        const decodeTokS = decode / (median(decodeTimes) / 1000);
        const engine = kernels ? 'tfjs+kernels' : 'tfjs';
        if (values.profile) {
          const label = `${engine} ${QUANTS[quant].dtype}`;
          await profile(`${label} prefill ${prefill}`, () => generate(model, prompt, { maxNewTokens: 1, stopAtEos: false }));
          await profile(`${label} prefill ${prefill} + 4 decode steps`, () => generate(model, prompt, { maxNewTokens: 5, stopAtEos: false }));
        }
        const p = kernelPolicy();
        const note = [kernels ? `custom WGSL kernels: gemm ${p.gemm} (inputs of ≥ ${p.gemmMinRows} rows), attention ${p.attention}, fused ops ${p.fusedOps}` : '', QUANTS[quant].note, quant === 'w8a8' ? `int8 tile ${p.int8Tile}` : '', spread].filter(Boolean).join('; ');
        console.error(`[bench-forward] ${engine}-${rt.backend} ${QUANTS[quant].dtype}: prefill ${prefillTokS.toFixed(1)} tok/s, decode ${decodeTokS.toFixed(2)} tok/s`);
        rows.push(row(engine, QUANTS[quant].dtype, rt.backend, rt.device, model.name, params, hf, prefill, decode, prefillTokS, decodeTokS, sha, startedAt, note));
      });
    }
  } finally {
    disposeModel(model);
  }

  if (!values['no-torch']) {
    const torch = runTorch(values.python!, hf, prefill, decode, reps);
    for (const t of torch) {
      rows.push(row('pytorch', t.dtype, 'cuda', t.device, rows[0].model, t.params, hf, prefill, decode, t.prefill_tok_s, t.decode_tok_s, sha, startedAt, `torch ${t.torch}, transformers ${t.transformers}, sdpa attention; ${spreadNote(t.prefill_ms, t.prefill_ms_min, t.prefill_ms_max, reps)}`));
    }
  }
  const ref = rows.find((r) => r.engine === 'pytorch' && r.dtype === 'fp32');
  for (const r of rows) {
    r.prefill_ratio_vs_torch_fp32 = ref ? (Number(r.prefill_tok_s) / Number(ref.prefill_tok_s)).toFixed(4) : '';
    r.decode_ratio_vs_torch_fp32 = ref ? (Number(r.decode_tok_s) / Number(ref.decode_tok_s)).toFixed(4) : '';
    if (!ref) r.note = [r.note, 'no PyTorch reference in this run (--no-torch or no GPU host)'].filter(Boolean).join('; ');
  }
  mkdirSync(path.dirname(values.out!), { recursive: true });
  writeFileAtomic(values.out!, formatCsv(HEADER, rows.map((r) => HEADER.map((h) => r[h]))));
  console.log(formatCsv(HEADER, rows.map((r) => HEADER.map((h) => r[h]))));
  console.error(`[bench-forward] wrote ${values.out}`);
}

/** Prefill (one step over the prompt, all logits) and greedy decode tokens/s of the kit's inference executor. */
async function timeExecutor(model: Model, hf: typeof CONFIG_1B, prefill: number, decode: number, reps: number, backend: string, device: string, params: number, sha: string, startedAt: string, profile: boolean, quant: Quant, opts: Pick<ExecutorOptions, 'int8Tile' | 'gemm'>): Promise<Row> {
  const dec = Decoder.create(model, prefill + decode + 1, opts);
  const { int8Tile } = opts;
  try {
    const prompt = Array.from({ length: prefill }, (_, i) => 3 + ((i * 7919) % (hf.vocab_size - 3)));
    const once = async () => {
      const t0 = performance.now();
      await dec.prefill(prompt);
      return performance.now() - t0;
    };
    const { tokS: prefillTokS, spread } = await tokensPerSecond(prefill, reps, once);
    if (profile) {
      // Where a prefill step's GPU time goes: each dispatch timed with timestamp queries.
      const times = new KernelTimes();
      for (let i = 0; i < 3; i++) await dec.prefill(prompt, times);
      const wall = (prefill / prefillTokS) * 1000; // the median timed prefill step, ms
      console.error(`[profile] executor prefill ${prefill} (wall ${wall.toFixed(2)} ms a step; GPU times are per step):`);
      for (const line of times.report(executorKernelGroups(hf.vocab_size))) console.error(`[profile]   ${line}`);
    }
    await dec.generate(prompt, { maxNewTokens: 4, stopAtEos: false }); // warm-up of the decode shapes
    const decodeTimes: number[] = [];
    for (let r = 0; r < Math.max(1, Math.floor(reps / 2)); r++) {
      const stamps: number[] = [];
      await dec.generate(prompt, { maxNewTokens: decode + 1, stopAtEos: false, onToken: () => stamps.push(performance.now()) });
      decodeTimes.push(stamps[stamps.length - 1] - stamps[0]);
    }
    const decodeTokS = decode / (median(decodeTimes) / 1000);
    if (profile) {
      const times = new KernelTimes(); // the decode steps after the prefill
      await dec.generate(prompt, { maxNewTokens: 17, stopAtEos: false }, times);
      console.error(`[profile] executor decode (wall ${(1000 / decodeTokS).toFixed(3)} ms a token):`);
      for (const line of times.report(executorKernelGroups(hf.vocab_size))) console.error(`[profile]   ${line}`);
    }
    console.error(`[bench-forward] executor-${backend} ${QUANTS[quant].dtype}${quant === 'w8a8' ? ` (INT8 tiling ${int8Tile})` : ''} (fp32 GEMM ${opts.gemm}): prefill ${prefillTokS.toFixed(1)} tok/s, decode ${decodeTokS.toFixed(2)} tok/s`);
    const note = `${[QUANTS[quant].note, quant === 'w8a8' ? `LM head fp32, INT8 tiling ${int8Tile}` : ''].filter(Boolean).join(', ')}${quant === 'none' ? '' : '; '}kit inference executor (lib/engine), fp32 GEMM tilings '${dec.exec.options.gemm}', split-K ≤ ${dec.exec.options.splitK}, ${dec.exec.attentionKernel} attention: ${dec.exec.dispatchCount({ tokens: prefill, blocks: dec.exec.blocksFor([prefill]), splits: 1, tilesPerSplit: 1, scoreRows: prefill, items: 0, sampled: false, temp: 1 })} dispatches per prefill step, ${(dec.exec.allocatedBytes / 2 ** 20).toFixed(0)} MiB of executor buffers; ${spread}`;
    return row('executor', QUANTS[quant].dtype, backend, device, model.name, params, hf, prefill, decode, prefillTokS, decodeTokS, sha, startedAt, note);
  } finally {
    await dec.dispose();
  }
}

/** Model variants --quant times: the dtype column of their rows and what the note says about them. */
const QUANTS = {
  none: { dtype: 'fp32', note: '' },
  w8a8: { dtype: 'w8a8', note: 'W8A8 kernels: random INT8 per-channel weights, per-token INT8 activations (speed only)' },
  w4: { dtype: 'w4g128', note: 'weight-only kernels: random 4-bit g128 asymmetric block linears, fp32 LM head (speed only)' },
  'w4-head': { dtype: 'w4g128+head', note: 'weight-only kernels: random 4-bit g128 asymmetric block linears and LM head (speed only)' },
} as const;
type Quant = keyof typeof QUANTS;

/** Gives the model random packed linears for `quant` (or none), replacing any it had. */
function applyQuant(model: InferenceModel, quant: Quant): void {
  if (model.packedLinears) disposePackedLinears(model.packedLinears);
  model.actQuant = quant === 'w8a8' ? actQuantDefaults : null;
  if (quant === 'none') return;
  const c = model.config;
  const names = Array.from({ length: c.numLayers }, (_, b) => blockLinearNames(model).map((l) => linearName(c.arch, b, l))).flat();
  if (quant === 'w4-head') names.push(c.tieWordEmbeddings ? ARCHS[c.arch].embedTokens : ARCHS[c.arch].lmHead);
  const linears = new Map<string, PackedLinear>();
  names.forEach((n, i) => {
    const [N, K] = model.weights.get(n)!.shape;
    linears.set(n, randomPackedLinear(quant === 'w8a8' ? 'w8a8' : 'w4', N, K, i));
  });
  attachPackedLinears(model, { linears, skipped: new Map() });
}

/**
 * Prints where `f` spends its time: wall ms, the tfjs kernels it dispatched, and their GPU ms from
 * timestamp queries (custom WGSL kernels are not tfjs kernels: their time is in the wall time only).
 */
async function profile(label: string, f: () => Promise<unknown>): Promise<void> {
  await syncDevice();
  const custom0 = kernelDispatches();
  const t0 = performance.now();
  const info = await tf.profile(async () => {
    await f();
    return [];
  });
  const wall = performance.now() - t0;
  const custom = kernelDispatches() - custom0;
  const byName = new Map<string, { n: number; ms: number }>();
  for (const k of info.kernels) {
    const e = byName.get(k.name) ?? { n: 0, ms: 0 };
    e.n++;
    e.ms += Number(k.kernelTimeMs) || 0;
    byName.set(k.name, e);
  }
  const gpu = [...byName.values()].reduce((a, e) => a + e.ms, 0);
  const top = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12);
  console.error(`[profile] ${label}: wall ${wall.toFixed(1)} ms (profiled), ${info.kernels.length} tfjs kernels (GPU ${gpu.toFixed(1)} ms) + ${custom} custom-kernel dispatches`);
  for (const [name, e] of top) console.error(`[profile]   ${name.padEnd(28)} ${String(e.n).padStart(6)} × ${e.ms.toFixed(2).padStart(9)} ms`);
}

/**
 * Tokens per second of `once` (which returns its milliseconds), warmed up as Track 5 is (two runs
 * and WARMUP_MIN_MS at least: shader compilation, pools, and the GPU back at sustained clocks), then
 * the median of `reps`; `spread` says the median, fastest and slowest run for the row's note.
 */
async function tokensPerSecond(tokens: number, reps: number, once: () => Promise<number>): Promise<{ tokS: number; spread: string }> {
  const times = await warmThenTime({ warmup: 2, repeats: reps }, once);
  const med = median(times);
  return { tokS: tokens / (med / 1000), spread: spreadNote(med, Math.min(...times), Math.max(...times), reps) };
}

/** The note's words for the timed prefill runs (PyTorch's rows say the same). */
function spreadNote(med: number, min: number, max: number, reps: number): string {
  return `prefill ${med.toFixed(2)} ms a run (${min.toFixed(2)}–${max.toFixed(2)} over ${reps}, after ≥ ${WARMUP_MIN_MS / 1000} s of warm-up)`;
}

function row(
  engine: string, dtype: string, backend: string, device: string, model: string, params: number,
  hf: typeof CONFIG_1B, prefill: number, decode: number, prefillTokS: number, decodeTokS: number,
  sha: string, startedAt: string, note: string,
): Row {
  return {
    engine, dtype, backend, device, model, params: String(params), hidden: String(hf.hidden_size),
    layers: String(hf.num_hidden_layers), vocab: String(hf.vocab_size), batch: '1', prefill_tokens: String(prefill),
    decode_tokens: String(decode), prefill_tok_s: prefillTokS.toFixed(2), decode_tok_s: decodeTokS.toFixed(3),
    prefill_ratio_vs_torch_fp32: '', decode_ratio_vs_torch_fp32: '', git_sha: sha, started_at: startedAt, note,
  };
}

/** Runs the PyTorch helper; its stdout is one JSON object per dtype. */
function runTorch(python: string, hf: object, prefill: number, decode: number, reps: number): TorchResult[] {
  const script = path.join(REPO_ROOT, 'scripts/py/bench_forward_torch.py');
  console.error(`[bench-forward] running ${python} ${script}`);
  let out: string;
  try {
    out = execFileSync(python, [script, '--config', JSON.stringify(hf), '--prefill', String(prefill), '--decode', String(decode), '--reps', String(reps), '--warmup-ms', String(WARMUP_MIN_MS)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (e) {
    throw new Error(`PyTorch reference failed (${python} ${script}): ${(e as Error).message}; use --no-torch to skip it`);
  }
  return out
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as TorchResult);
}

main().catch((e: Error) => {
  console.error(`bench-forward: ${e.message}`);
  process.exit(1);
});
