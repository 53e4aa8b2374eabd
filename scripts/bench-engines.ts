// Track 5 runner: measured acceleration in real inference engines. For every model and method
// preset it compresses a fresh copy of the model, prepares it for each engine (llama.cpp through a
// GGUF export, the kit's own executor, OpenAI-compatible servers) and measures prefill/decode
// tokens/s, time to first token, inter-token latency and peak memory at the stated settings.
// Rows go to data/results/track5.csv through lib/results.ts; an engine that cannot run (no Vulkan
// device, no server, a GGUF it refuses, a method that fails) yields "not_run" rows with the reason.
// Speed ratios compressed/dense in the same engine and OM_hard per method go to
// bench/track5-speedup.csv; with --check-ppl, GGUF exports are checked against the kit's perplexity
// (bench/gguf-check.csv).
//
//   npx tsx scripts/bench-engines.ts --backend wasm --models models/stories260K/stories260K.bin \
//     --methods dense,rtn-w4 --engines llama.cpp-cpu,kit --prompt 32 --new 16 --repeats 3 --out tmp/t5
// GPU host: bash .gpu/enter.sh node --import tsx scripts/bench-engines.ts --backend webgpu \
//     --engines llama.cpp-vulkan,kit --out $OUT/track5
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { isMainModule, numberFlag, REPO_ROOT, sharedDir } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { exportLlamaGguf, readGguf, readGgufTensor } from '../lib/efficiency/gguf';
import { LlamaCppEngine, llamaCppPerplexity, openLlama } from '../lib/efficiency/engines/llamacpp';
import { OpenAiHttpEngine } from '../lib/efficiency/engines/openai-http';
import { PyTorchEngine } from '../lib/efficiency/engines/pytorch';
import { EngineNotRun, benchDefaults, checkSettings, measuredMetrics, type BenchSettings, type Engine, type EngineMeasurement } from '../lib/efficiency/engines/types';
import { engineMetricFields, METRIC_CATALOGUE, metricNames } from '../lib/metrics/catalogue';
import { KitEngine, kitPerplexity } from '../lib/efficiency/engines/webgpu';
import { calibrationFromText, corpusText, loadCalibIds, type CalibSet } from '../lib/methods/calib';
import { getMethod, type CompressResult } from '../lib/methods';
import { disposeModel, loadModel } from '../lib/models/load';
import type { Model } from '../lib/models/types';
import { permuteRopeRows } from '../lib/models/weights';
import { TRACK5_ENGINES } from '../lib/tracks/hardware';
import { appendResults, dataOutDir, makeRow, startRun, trackFile, type ResultRow, type RunContext } from '../lib/results';
import { initRuntime, parseBackend, writeBenchCsv } from '../lib/runtime';
import * as tf from '@tensorflow/tfjs';
helpFromHeader(import.meta.url, { names: true });

/** Method presets: formats llama.cpp holds exactly (sym g32 → Q8_0/Q4_0; AWQ's asym g128 → Q4_1). */
export const PRESETS = {
  dense: { method: 'dense', opts: {}, sparse: false },
  'rtn-w8': { method: 'rtn', opts: { bits: 8, groupSize: 32, sym: true, groupRemainder: 'partial' }, sparse: false },
  'rtn-w4': { method: 'rtn', opts: { bits: 4, groupSize: 32, sym: true, groupRemainder: 'partial' }, sparse: false },
  'gptq-w8': { method: 'gptq', opts: { bits: 8, groupSize: 32, sym: true, groupRemainder: 'partial' }, sparse: false },
  'gptq-w4': { method: 'gptq', opts: { bits: 4, groupSize: 32, sym: true, groupRemainder: 'partial' }, sparse: false },
  'awq-w4': { method: 'awq', opts: { bits: 4, groupSize: 128, groupRemainder: 'partial' }, sparse: false },
  'magnitude-50%': { method: 'magnitude', opts: { pattern: '50%' }, sparse: true },
  'wanda-50%': { method: 'wanda', opts: { pattern: '50%' }, sparse: true },
  'sparsegpt-50%': { method: 'sparsegpt', opts: { pattern: '50%' }, sparse: true },
  'wanda-2:4': { method: 'wanda', opts: { pattern: '2:4' }, sparse: true },
  'sparsegpt-2:4': { method: 'sparsegpt', opts: { pattern: '2:4' }, sparse: true },
} as const satisfies Record<string, { method: string; opts: Record<string, unknown>; sparse: boolean }>;
type Preset = keyof typeof PRESETS;

/** Servers the paper measures; without a URL each is reported "not run (no server)". */
const SERVER_ENGINES = ['vllm', 'tensorrt-llm', 'mlc-llm'] as const;

interface Args {
  backend: string; // tfjs backend for the methods and the kit engine
  models: string[]; // model paths (llama2.c .bin or HF directories)
  methods: Preset[];
  engines: string[]; // TRACK5_ENGINES: kit, llama.cpp-cpu, llama.cpp-vulkan, pytorch-fp32, pytorch-bf16
  servers: { engine: string; method: string; url: string }[]; // --server vllm=URL or vllm:gptq-w4=URL
  settings: BenchSettings;
  calib: string; // 'auto' or a corpus name / file
  calibSamples: number; // calibration windows
  calibSeqlen: number; // tokens per window (capped at the context)
  threads: number | null; // llama.cpp CPU threads
  checkPpl: boolean; // GGUF export vs kit perplexity check
  pplWindows: number; // windows for that check
  out: string; // data root for results/ and bench/
}

const ARG_DEFAULTS: Args = {
  backend: process.env.LLMCB_BACKEND ?? 'auto', // webgpu where there is one
  models: ['models/zoo/llama-2m', 'models/stories260K/stories260K.bin'], // the zoo's largest LLaMA-style model and stories260K
  methods: Object.keys(PRESETS) as Preset[], // everything
  engines: ['llama.cpp-vulkan', 'llama.cpp-cpu', 'kit'], // each reports not_run where it cannot start
  servers: [], // none unless given
  settings: benchDefaults,
  calib: 'auto', // shared stories260K calibration ids, the zoo corpus' valid split, else WikiText-2 valid
  calibSamples: 32, // fewer than the papers' 128 to keep the track to minutes; stated in every row
  calibSeqlen: 256, // the zoo's context
  threads: null, // llama.cpp's default
  checkPpl: true, // the export check is part of the track
  pplWindows: 8, // windows of the check
  out: dataOutDir(),
};

function parseArgs(argv: string[]): Args {
  const a: Args = { ...ARG_DEFAULTS, settings: { ...benchDefaults } };
  const int = (k: string, v: string) => numberFlag(k, v, { integer: true, min: 0 });
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (k === 'no-check-ppl') {
      a.checkPpl = false;
      continue;
    }
    const v = argv[++i];
    if (!argv[i - 1].startsWith('--') || v === undefined) throw new Error(`bad argument '${argv[i - 1]}' (options are --name value)`);
    switch (k) {
      case 'backend': a.backend = v; break;
      case 'models': a.models = v.split(',').filter(Boolean); break;
      case 'methods':
        a.methods = v.split(',').filter(Boolean).map((m) => {
          if (!(m in PRESETS)) throw new Error(`--methods: unknown preset '${m}' (known: ${Object.keys(PRESETS).join(', ')})`);
          return m as Preset;
        });
        break;
      case 'engines': a.engines = v.split(',').filter(Boolean); break;
      case 'server': {
        const m = /^([\w.-]+)(?::([\w.%:-]+))?=(https?:\/\/.+)$/.exec(v);
        if (!m) throw new Error(`--server must be engine[:preset]=http://host:port, got '${v}'`);
        a.servers.push({ engine: m[1], method: m[2] ?? 'dense', url: m[3] });
        break;
      }
      case 'prompt': a.settings.promptTokens = int(k, v); break;
      case 'new': a.settings.newTokens = int(k, v); break;
      case 'batch': a.settings.batch = int(k, v); break;
      case 'warmup': a.settings.warmup = int(k, v); break;
      case 'repeats': a.settings.repeats = int(k, v); break;
      case 'calib': a.calib = v; break;
      case 'calib-samples': a.calibSamples = int(k, v); break;
      case 'calib-seqlen': a.calibSeqlen = int(k, v); break;
      case 'threads': a.threads = int(k, v) || null; break;
      case 'ppl-windows': a.pplWindows = int(k, v); break;
      case 'out': a.out = v; break;
      default: throw new Error(`unknown option --${k}`);
    }
  }
  for (const e of a.engines) if (!(TRACK5_ENGINES as readonly string[]).includes(e)) throw new Error(`--engines: unknown engine '${e}' (${TRACK5_ENGINES.join(', ')}; servers through --server)`);
  checkSettings(a.settings);
  return a;
}

const shared = sharedDir();

/** The calibration set for a model (see Args.calib). */
function calibFor(model: Model, a: Args): CalibSet {
  const seqlen = Math.min(a.calibSeqlen, model.config.maxPositions);
  const opts = { nsamples: a.calibSamples, seqlen, seed: 0 };
  if (a.calib !== 'auto') return calibrationFromText(corpusText(a.calib, path.join(shared, 'datasets')), model.tokenizer, a.calib, opts);
  const ids = path.join(shared, 'reference/stories260K/calib_wikitext2_valid_128x512.json');
  if (model.name === 'stories260K' && existsSync(ids)) return loadCalibIds(ids, { nsamples: a.calibSamples, seqlen, vocabSize: model.config.vocabSize });
  const zoo = path.join(REPO_ROOT, 'data/zoo/corpus/kjv.valid.txt.gz');
  if (model.source.includes(`${path.sep}zoo${path.sep}`) && existsSync(zoo)) return calibrationFromText(gunzipSync(readFileSync(zoo)).toString('utf8'), model.tokenizer, 'kjv-valid', opts);
  return calibrationFromText(corpusText('wikitext2-valid', path.join(shared, 'datasets')), model.tokenizer, 'wikitext2-valid', opts);
}

/** The evaluation tokens for the perplexity check: the model's own corpus test split. */
function pplTokens(model: Model): number[] {
  const ref = path.join(shared, 'reference/stories260K/wikitext2_test_tok512.json');
  if (model.name === 'stories260K' && existsSync(ref)) return JSON.parse(readFileSync(ref, 'utf8')).test_ids as number[];
  const zoo = path.join(REPO_ROOT, 'data/zoo/corpus/kjv.test.txt.gz');
  if (existsSync(zoo)) return model.tokenizer.encode(gunzipSync(readFileSync(zoo)).toString('utf8').slice(0, 400_000));
  return model.tokenizer.encode(corpusText('wikitext2-test', path.join(shared, 'datasets')).slice(0, 400_000));
}

interface Cell {
  model: Model;
  preset: Preset;
  compress: CompressResult | null;
  calib: string;
}

function settingsNote(s: BenchSettings): string {
  return `prompt ${s.promptTokens}, new ${s.newTokens}, batch ${s.batch}, warmup ${s.warmup}, repeats ${s.repeats}, seed ${s.seed}`;
}

function rowBase(ctx: RunContext, cell: { model: Model; preset: string; compress: CompressResult | null; calib: string }, engine: string, device: string, s: BenchSettings) {
  const p = PRESETS[cell.preset as Preset];
  return {
    ctx: { ...ctx, device },
    fields: {
      track: 5 as const,
      model: cell.model.name,
      model_family: cell.model.family,
      model_params: [...cell.model.weights.values()].reduce((a, t) => a + t.size, 0) || null,
      method: p ? p.method : cell.preset,
      method_config: cell.compress?.config ?? (p ? { ...p.opts } : {}),
      task: engine,
      seqlen: s.promptTokens,
      calib: cell.calib,
      seed: s.seed,
      bos: false,
    },
  };
}

/** The task column of an engine's rows: its matrix name ('kit' for the kit's own engine, whatever its backend). */
const engineTask = (e: Engine) => (e instanceof KitEngine ? 'kit' : e.name);

function measuredRows(ctx: RunContext, cell: Cell, engine: Engine, format: string, m: EngineMeasurement, seconds: number): ResultRow[] {
  const { ctx: c, fields } = rowBase(ctx, cell, engineTask(engine), engine.device, m.settings);
  return measuredMetrics(m).map((x) => {
    const what = x.metric === 'peak_memory_bytes' ? `${m.memoryWhat}; ` : '';
    const spread = x.min === null || x.max === null ? '' : `; min ${x.min.toPrecision(4)} max ${x.max.toPrecision(4)}`;
    const note = `${what}${settingsNote(m.settings)}; ${format}${spread}; ${m.notes.join('; ')}`;
    return makeRow(c, { ...fields, ...engineMetricFields(fields.task, x.metric), value: x.value, n: x.n, stderr: x.stderr, duration_s: seconds, note });
  });
}

function notRunRow(ctx: RunContext, cell: { model: Model; preset: string; compress: CompressResult | null; calib: string }, engine: string, device: string, s: BenchSettings, reason: string): ResultRow {
  const { ctx: c, fields } = rowBase(ctx, cell, engine, device, s);
  return makeRow(c, { ...fields, ...engineMetricFields(engine, 'decode_tok_per_s'), value: null, status: 'not_run', note: `not run: ${reason}; ${settingsNote(s)}` });
}

const reasonOf = (e: unknown) => (e instanceof EngineNotRun ? e.reason : (e as Error).message.split('\n')[0]);

async function openEngines(a: Args): Promise<{ engines: Engine[]; missing: { name: string; reason: string }[] }> {
  const engines: Engine[] = [];
  const missing: { name: string; reason: string }[] = [];
  for (const e of a.engines) {
    try {
      if (e === 'kit') engines.push(await KitEngine.create());
      else if (e === 'pytorch-fp32' || e === 'pytorch-bf16') engines.push(await PyTorchEngine.create({ dtype: e === 'pytorch-bf16' ? 'bf16' : 'fp32', workDir: path.join(a.out, 'torch') }));
      else engines.push(await LlamaCppEngine.create({ gpu: e === 'llama.cpp-vulkan' ? 'vulkan' : false, threads: a.threads, workDir: path.join(a.out, 'gguf') }));
    } catch (err) {
      missing.push({ name: e, reason: reasonOf(err) });
    }
  }
  return { engines, missing };
}

/** GGUF export check: llama.cpp's perplexity against the kit's, on the same weights. */
async function checkPpl(model: Model, a: Args, gpu: 'vulkan' | false): Promise<Record<string, string | number>[]> {
  const ids = pplTokens(model);
  const seqlen = Math.min(model.config.maxPositions, 256);
  const out: Record<string, string | number>[] = [];
  const llama = await openLlama(gpu);
  try {
    const dense = await kitPerplexity(model, ids, seqlen, a.pplWindows);
    for (const type of ['f32', 'q8_0', 'q4_0'] as const) {
      const file = path.join(a.out, 'gguf', `${model.name}-check-${type}.gguf`);
      const rep = await exportLlamaGguf(model, file, { type });
      const g = readGguf(file);
      const deq: Model = { ...model, weights: new Map(model.weights) };
      const c = model.config;
      const made: tf.Tensor[] = [];
      for (const t of rep.tensors) {
        if (!/_proj\.weight$/.test(t.hf)) continue;
        const shape = model.weights.get(t.hf)!.shape as number[];
        let w = readGgufTensor(file, g.tensors.find((x) => x.name === t.name)!);
        if (/\.(q|k)_proj/.test(t.hf)) w = permuteRopeRows(w, t.hf.includes('.q_proj') ? c.numHeads : c.numKvHeads, c.headDim, shape[1]);
        const tt = tf.tensor(w, shape);
        made.push(tt);
        deq.weights.set(t.hf, tt);
      }
      const kitOnGguf = await kitPerplexity(deq, ids, seqlen, a.pplWindows);
      made.forEach((t) => t.dispose());
      const lm = await llama.loadModel({ modelPath: file, gpuLayers: gpu ? 'max' : 0 });
      const lc = await llamaCppPerplexity(lm, ids, seqlen, a.pplWindows);
      await lm.dispose();
      out.push({
        model: model.name, gguf: type, engine: gpu ? `llama.cpp-${gpu}` : 'llama.cpp-cpu', windows: lc.windows, seqlen,
        ppl_kit_fp32: dense.ppl, ppl_kit_on_gguf_weights: kitOnGguf.ppl, ppl_llamacpp: lc.ppl,
        rel_diff_llamacpp_vs_kit_same_weights: lc.ppl / kitOnGguf.ppl - 1, rel_diff_llamacpp_vs_kit_fp32: lc.ppl / dense.ppl - 1,
        export: rep.summary,
      });
      console.log(`ppl check ${model.name} ${type}: llama.cpp ${lc.ppl.toFixed(4)}, kit on the same weights ${kitOnGguf.ppl.toFixed(4)}, kit fp32 ${dense.ppl.toFixed(4)}`);
    }
  } finally {
    await llama.dispose();
  }
  return out;
}

/** Speed ratios compressed/dense per (model, engine, speed metric) and OM_hard per preset. */
export function speedups(rows: readonly ResultRow[]): Record<string, string | number>[] {
  const speed = new Set<string>(metricNames(5).filter((m) => METRIC_CATALOGUE[5][m].inOverall));
  const ok = rows.filter((r) => r.status === 'ok' && speed.has(r.metric));
  const key = (r: ResultRow) => `${r.model}|${r.task}|${r.metric}`;
  const dense = new Map(ok.filter((r) => r.method === 'dense').map((r) => [key(r), r.value as number]));
  const out: Record<string, string | number>[] = [];
  const byMethod = new Map<string, number[]>();
  for (const r of ok) {
    const d = dense.get(key(r));
    if (d === undefined) continue;
    const label = `${r.method} ${JSON.stringify(r.method_config)}`;
    const ratio = (r.value as number) / d;
    out.push({ kind: 'ratio', method: r.method, method_config: JSON.stringify(r.method_config), model: r.model, engine: r.task, metric: r.metric, value: ratio });
    if (!byMethod.has(label)) byMethod.set(label, []);
    byMethod.get(label)!.push(ratio);
  }
  for (const [label, rs] of byMethod) {
    const om = 100 * Math.sqrt(rs.reduce((s, x) => s + x * x, 0) / rs.length);
    const [method, ...cfg] = label.split(' ');
    out.push({ kind: 'OM_hard', method, method_config: cfg.join(' '), model: 'all', engine: 'all', metric: `OM_hard over ${rs.length} pairs`, value: om });
  }
  return out;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const rt = await initRuntime({ backend: parseBackend(a.backend) });
  const ctx = startRun(rt);
  const file = trackFile(5, a.out);
  console.log(`track 5 on ${rt.backend} (${rt.device}); rows → ${file}`);
  const { engines, missing } = await openEngines(a);
  for (const m of missing) console.log(`engine ${m.name}: not run: ${m.reason}`);
  const servers: { engine: Engine; method: string }[] = [];
  for (const s of a.servers) {
    try {
      servers.push({ engine: await OpenAiHttpEngine.create({ baseUrl: s.url, engine: s.engine }), method: s.method });
    } catch (e) {
      missing.push({ name: s.engine, reason: reasonOf(e) });
    }
  }
  for (const s of SERVER_ENGINES) if (!a.servers.some((x) => x.engine === s)) missing.push({ name: s, reason: 'no server' });
  const all: ResultRow[] = [];
  const write = (rows: ResultRow[]) => {
    appendResults(file, rows);
    all.push(...rows);
  };
  const checks: Record<string, string | number>[] = [];
  for (const modelPath of a.models) {
    let base: Model;
    try {
      base = await loadModel(modelPath);
    } catch (e) {
      console.log(`model ${modelPath}: no data: ${reasonOf(e)}`);
      write([makeRow(ctx, { track: 5, model: path.basename(modelPath).replace(/\.bin$/, ''), model_family: 'llama', method: 'dense', method_config: {}, ...engineMetricFields('all engines', 'decode_tok_per_s'), value: null, status: 'no_data', note: `model not available: ${reasonOf(e)}` })]);
      continue;
    }
    if (a.checkPpl) {
      const gpu = engines.some((e) => e.name === 'llama.cpp-vulkan') ? 'vulkan' : engines.some((e) => e.name === 'llama.cpp-cpu') ? false : null;
      if (gpu !== null) {
        try {
          checks.push(...(await checkPpl(base, a, gpu)));
        } catch (e) {
          console.log(`ppl check ${base.name}: failed: ${reasonOf(e)}`);
          checks.push({ model: base.name, gguf: 'all', engine: String(gpu), error: reasonOf(e) });
        }
      }
    }
    disposeModel(base);
    for (const preset of a.methods) {
      const p = PRESETS[preset];
      const t0 = performance.now();
      const model = await loadModel(modelPath);
      let cell: Cell = { model, preset, compress: null, calib: 'none' };
      try {
        if (p.method !== 'dense') {
          const mod = getMethod(p.method);
          const calib = mod.needsCalib ? calibFor(model, a) : null;
          const res = await mod.compress(model, calib, { ...p.opts } as never);
          cell = { model, preset, compress: res, calib: res.calib };
          console.log(`${model.name} ${preset}: compressed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        }
      } catch (e) {
        console.log(`${model.name} ${preset}: compression failed: ${reasonOf(e)}`);
        write([...engines, ...servers.map((s) => s.engine)].map((eng) => notRunRow(ctx, cell, engineTask(eng), eng.device, a.settings, `${p.method} failed: ${reasonOf(e)}`)));
        disposeModel(model);
        continue;
      }
      const rows: ResultRow[] = [];
      for (const eng of engines) {
        const t1 = performance.now();
        try {
          const prep = await eng.prepare({ model, compress: cell.compress, method: p.method, sparse: p.sparse });
          try {
            const m = await eng.measure(prep, a.settings);
            rows.push(...measuredRows(ctx, cell, eng, prep.format, m, (performance.now() - t1) / 1000));
            console.log(`${model.name} ${preset} ${eng.name}: prefill ${m.prefillTokPerS.median.toFixed(1)} tok/s, decode ${m.decodeTokPerS.median.toFixed(1)} tok/s, ttft ${m.ttftMs.median.toFixed(2)} ms`);
          } finally {
            await prep.dispose();
          }
        } catch (e) {
          console.log(`${model.name} ${preset} ${eng.name}: not run: ${reasonOf(e)}`);
          rows.push(notRunRow(ctx, cell, engineTask(eng), eng.device, a.settings, reasonOf(e)));
        }
      }
      for (const s of servers.filter((x) => x.method === preset)) {
        try {
          const prep = await s.engine.prepare({ model, compress: cell.compress, method: p.method, sparse: p.sparse });
          const m = await s.engine.measure(prep, a.settings);
          rows.push(...measuredRows(ctx, cell, s.engine, prep.format, m, 0));
        } catch (e) {
          rows.push(notRunRow(ctx, cell, engineTask(s.engine), s.engine.device, a.settings, reasonOf(e)));
        }
      }
      for (const m of missing) rows.push(notRunRow(ctx, cell, m.name, 'none', a.settings, m.reason));
      write(rows);
      disposeModel(model);
    }
  }
  for (const e of engines) await e.dispose();
  const sp = speedups(all);
  if (sp.length) writeBenchCsv(path.join(a.out, 'bench', 'track5-speedup.csv'), sp);
  if (checks.length) writeBenchCsv(path.join(a.out, 'bench', 'gguf-check.csv'), checks.map((c) => ({ error: '', ...c })));
  for (const r of sp.filter((x) => x.kind === 'OM_hard')) console.log(`${r.method} ${r.method_config}: ${r.metric} = ${(r.value as number).toFixed(2)}`);
  console.log(`wrote ${all.length} rows to ${file}`);
}

if (isMainModule(import.meta.url)) {
  main().catch((e) => {
    console.error(`bench-engines: ${(e as Error).stack ?? e}`);
    process.exit(1);
  });
}
