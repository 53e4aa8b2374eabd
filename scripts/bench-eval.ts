// Scoring throughput of the kit's evaluator against PyTorch on the same GPU (issue 15), with
// per-request agreement: data/bench/eval.csv.
//
// For each model and each task with local data, the benchmark's own path runs: evaluate() builds
// exactly the requests the benchmark scores and sends them through the kit's Scorer
// (lib/eval/model-scorer.ts modelScorer: the WebGPU executor's EngineScorer on webgpu, the tfjs
// TensorScorer elsewhere or with LLMCB_SCORER=tfjs; a black box here) wrapped as
// RecordingScorer(TimingScorer(scorer)) (lib/eval/scorer-bench.ts). Per task:
//   - wall_s: the summed wall time of the task's scorer calls, the device synchronised before and
//     after each (data loading, tokenization and request building are not timed);
//   - scored_tokens: continuation requests count the tokens whose log-probabilities are summed
//     (ContinuationResult.tokens: the continuation, or its last maxLength tokens); next-token
//     requests (MMLU-style letters) count 1 each: one position is scored, its candidates read
//     from that one distribution. Context tokens are not counted. scored_tok_s = scored / wall.
// The recorded requests (as the model reads them, left truncation applied) and the kit's batch
// plan are exported (tmp/bench-eval/<model>/: manifest.json + int32 token files), then
// scripts/py/score_torch.py loads the same model in PyTorch fp32 (TF32 off, sdpa attention),
// runs the SAME batches, times each task with torch.cuda.synchronize around it (model load and
// one warm-up request excluded, as here), and returns per-request log-probabilities. The batches
// (scorer-bench.ts, one place): rows sorted longest first, grouped as the kit grouped them: the
// TensorScorer's rule (token/logit/attention budgets, padded to a multiple of padMultiple unless a
// batch is all one length; checked against the batches it reports), or the executor's steps as
// its progress callback reported them (it packs rows unpadded by its token budget; PyTorch pads
// each to its longest row). --batch-tokens sets the kit's token budget for either. Rows:
//   engine kit|pytorch, ratio_vs_torch = kit scored_tok_s / PyTorch's for the same task;
//   max_abs_logprob_diff = the largest |kit − PyTorch| per-request log-probability (next-token:
//   over the candidates); greedy_agree = the fraction of requests with the same greedy flag
//   (next-token: the same argmax letter). Agreement is computed for real models only: the random
//   1.2B model is speed only (PyTorch draws its own random weights). note: input_tokens (real
//   tokens fed: the rows' lengths), padded_tokens (B·T of the exported plan: what PyTorch runs),
//   batches, the kit scorer and plan source, maxLength, the kernel policy and the task's metrics.
// Models (--models, comma list; names or paths): stories260K (models/stories260K, llama2.c; PyTorch
// reads its HF conversion in $LLMCB_SHARED/reference/stories260K/hf), a zoo name (models/zoo/<name>,
// HF safetensors), random-1b (lib/models/random.ts CONFIG_1B: the ~1.2B LLaMA-3.2-1B-shaped model
// of bench-forward), random-small (CONFIG_SMALL), or a path (HF directory, or a llama2.c .bin whose
// HF conversion is in a sibling hf/ or $LLMCB_SHARED/reference/<stem>/hf).
// The CSV is rewritten atomically after every row; rows of earlier runs are kept unless this run
// produces the same (engine, model, task, backend) (--fresh: start empty).
//
//   npx tsx scripts/bench-eval.ts --backend wasm --no-torch --limit 20 --models stories260K,llama-1m
//   LLMCB_GIT_SHA=<sha> bash .gpul/enter.sh node --import tsx scripts/bench-eval.ts --backend webgpu --models stories260K,llama-1m
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag, REPO_ROOT, sharedDir } from '../lib/cli';
import { printUsage } from '../lib/help';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import { dataOptions, resolveDataDir } from '../lib/data/common';
import { evaluate } from '../lib/eval/evaluate';
import { modelScorer } from '../lib/eval/model-scorer';
import { EngineScorer } from '../lib/engine/scorer';
import { EXECUTOR_DEFAULTS, executorKernelGroups } from '../lib/engine/executor';
import { KernelTimes } from '../lib/kernels/timing';
import { RecordingScorer, SCORER_DEFAULTS, type Scorer, TensorScorer } from '../lib/eval/scorer';
import {
  type CollectedTask,
  collectTask,
  compareTask,
  type PlanRule,
  readTorchResults,
  rowLength,
  TimingScorer,
  type TorchModelSpec,
  writeExport,
} from '../lib/eval/scorer-bench';
import { kernelPolicy } from '../lib/kernels';
import { disposeModel, loadModel } from '../lib/models/load';
import { CONFIG_1B, CONFIG_SMALL, randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { maxHeads } from '../lib/models/weights';
import { dataOutDir, gitSha, writeFileAtomic } from '../lib/results';
import { initRuntime, maxTensorElements, parseBackend } from '../lib/runtime';
import { TASKS } from '../lib/tasks';

const USAGE = `usage: npx tsx scripts/bench-eval.ts [--models stories260K,llama-1m,random-1b | --model PATH ...]
  [--tasks wikitext2,mmlu,...] [--limit N] [--seed S] [--data DIR] [--backend webgpu|wasm|cpu|auto]
  [--batch-tokens N] [--max-length N] [--no-torch] [--profile] [--python python3] [--torch-timeout SECONDS] [--out data/bench/eval.csv]
  [--export-dir tmp/bench-eval] [--fresh] [--help]
  --models     names (stories260K, a models/zoo name, random-1b, random-small) or paths; default stories260K,llama-1m,random-1b
  --model      a model path (repeatable; added to --models)
  --tasks      default: every task in lib/tasks (those without local data are skipped)
  --limit      documents per task (WikiText-2: windows), a seeded subset; default all
  --max-length most tokens a sequence may feed the model (left truncation; WikiText-2 windows are
               min(2048, this)); default: the model's context (the tfjs scorer on WebGPU: capped so
               that one row's [T, vocab] logits and [heads, T, T] scores fit one storage binding)
  --batch-tokens  the kit scorer's token budget per batch (TensorScorer maxBatchTokens, the
               executor's maxTokens); default: the scorer's own
  --no-torch   kit rows only (no PyTorch, no agreement)
  --profile    (the executor) also print where each task's scoring spends its GPU time: the task again
               with every dispatch timed by timestamp queries (stderr only)
  --torch-timeout  seconds the PyTorch scorer may take per model (default 1800)`;

const HEADER = [
  'engine', 'model', 'task', 'n_requests', 'scored_tokens', 'wall_s', 'scored_tok_s', 'ratio_vs_torch',
  'max_abs_logprob_diff', 'greedy_agree', 'backend', 'device', 'git_sha', 'started_at', 'limit', 'note',
] as const;
type Row = Record<(typeof HEADER)[number], string>;
const rowKey = (r: Row) => [r.engine, r.model, r.task, r.backend].join('\u0000');

/** The CSV: earlier rows (kept unless replaced) and this run's, rewritten atomically on every change. */
class Table {
  private rows: Row[] = [];
  constructor(
    readonly file: string,
    fresh: boolean,
  ) {
    if (!fresh && fs.existsSync(file)) {
      const recs = parseCsvRecords(fs.readFileSync(file, 'utf8'), file);
      const cols = recs.length ? Object.keys(recs[0]) : [];
      if (recs.length && cols.join(',') !== HEADER.join(',')) throw new Error(`${file}: columns ${cols.join(',')} are not this script's (move it away or pass --fresh)`);
      this.rows = recs as Row[];
    }
  }
  put(row: Row): void {
    const i = this.rows.findIndex((r) => rowKey(r) === rowKey(row));
    if (i >= 0) this.rows[i] = row;
    else this.rows.push(row);
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileAtomic(this.file, formatCsv(HEADER, this.rows.map((r) => HEADER.map((h) => r[h]))));
  }
}

interface ModelEntry {
  /** Name in rows. */
  label: string;
  load(): Promise<Model>;
  /** What PyTorch loads; null: none (no PyTorch rows for this model). */
  torch: TorchModelSpec | null;
  /** Per-request agreement is meaningful (same weights on both sides). */
  agreement: boolean;
  /** Why there is no PyTorch side, when there is none. */
  noTorch?: string;
}

function resolveModel(spec: string): ModelEntry {
  const random = { 'random-1b': { hf: CONFIG_1B, name: 'llama-1b-random' }, 'random-small': { hf: CONFIG_SMALL, name: 'llama-small-random' } } as const;
  if (spec in random) {
    const r = random[spec as keyof typeof random];
    return {
      label: r.name,
      load: async () => randomModel(r.hf, { seed: 0, dist: 'uniform', name: r.name }),
      torch: { random_config: r.hf, seed: 0 },
      agreement: false,
    };
  }
  let file = spec;
  if (spec === 'stories260K') file = path.join(REPO_ROOT, 'models/stories260K/stories260K.bin');
  else if (!fs.existsSync(spec) && fs.existsSync(path.join(REPO_ROOT, 'models/zoo', spec))) file = path.join(REPO_ROOT, 'models/zoo', spec);
  if (!fs.existsSync(file)) throw new Error(`--models: '${spec}' is neither a known name (stories260K, random-1b, random-small, a models/zoo name) nor a path`);
  const load = () => loadModel(file);
  if (fs.statSync(file).isDirectory()) return { label: path.basename(path.resolve(file)), load, torch: { hf: path.resolve(file) }, agreement: true };
  // A llama2.c checkpoint: PyTorch reads its HF conversion (q/k permuted to HF's RoPE layout).
  const stem = path.basename(file).replace(/\.bin$/, '');
  const candidates = [path.join(path.dirname(file), 'hf'), path.join(sharedDir(), 'reference', stem, 'hf')];
  const hf = candidates.find((d) => fs.existsSync(path.join(d, 'config.json')));
  return {
    label: stem,
    load,
    torch: hf ? { hf: path.resolve(hf) } : null,
    agreement: true,
    noTorch: hf ? undefined : `no HF conversion of ${file} (looked in ${candidates.join(', ')})`,
  };
}

/** The kit's scorer for a model and how its batches are planned for PyTorch (lib/eval/scorer-bench.ts).
 * The tfjs TensorScorer computes [B, T, V] logits and [B, heads, T, T] attention scores: without
 * --max-length its sequences are capped so that one row's logits and scores each fit one GPU
 * storage binding (it bounds batches by these, but a single longer row would be a WebGPU
 * validation error: the 1.2B model's 128k vocabulary at T = 2048). The executor (webgpu's default)
 * computes logits only at scored rows and takes the model's context. */
function kitScorer(model: Model, explicit: number | undefined, batchTokens: number | undefined): { scorer: Scorer; rule: PlanRule } {
  const context = model.config.maxPositions;
  if (explicit !== undefined && explicit > context) throw new Error(`--max-length ${explicit} exceeds ${model.name}'s context ${context}`);
  const build = (L: number) => modelScorer(model, batchTokens ? { maxBatchTokens: Math.max(batchTokens, L) } : {}, L);
  let scorer = build(explicit ?? context);
  const cap = maxTensorElements();
  if (scorer instanceof TensorScorer && explicit === undefined && Number.isFinite(cap)) {
    const fit = Math.min(Math.floor(cap / model.config.vocabSize), Math.floor(Math.sqrt(cap / maxHeads(model.config))));
    const L = Math.min(context, fit >= 64 ? Math.floor(fit / 32) * 32 : fit);
    if (L < context) {
      console.error(`[bench-eval]    sequences capped at ${L} tokens (context ${context}): one row's logits must fit a storage binding`);
      scorer = build(L);
    }
  }
  const rule: PlanRule =
    scorer instanceof TensorScorer
      ? { kind: 'tensor-scorer', options: { ...scorer.opts, maxLength: scorer.maxLength, vocabSize: scorer.vocabSize } }
      : { kind: 'observed', maxLength: scorer.maxLength, vocabSize: model.config.vocabSize, budgetTokens: Math.max(batchTokens ?? SCORER_DEFAULTS.maxBatchTokens, scorer.maxLength) };
  return { scorer, rule };
}

const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      models: { type: 'string' },
      model: { type: 'string', multiple: true },
      tasks: { type: 'string' },
      limit: { type: 'string' },
      seed: { type: 'string', default: '0' },
      data: { type: 'string' },
      backend: { type: 'string', default: process.env.LLMCB_BACKEND ?? 'auto' },
      'batch-tokens': { type: 'string' },
      'max-length': { type: 'string' },
      'no-torch': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      python: { type: 'string', default: process.env.PYTHON ?? 'python3' },
      'torch-timeout': { type: 'string', default: '1800' },
      out: { type: 'string', default: path.join(dataOutDir(), 'bench/eval.csv') },
      'export-dir': { type: 'string', default: 'tmp/bench-eval' },
      fresh: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (a.help) {
    printUsage(USAGE);
    return 0;
  }
  const limit = numberFlag('limit', a.limit, { integer: true, min: 1 }) ?? null;
  const seed = numberFlag('seed', a.seed!, { integer: true, min: 0 });
  const batchTokens = numberFlag('batch-tokens', a['batch-tokens'], { integer: true, min: 1 });
  const maxLengthFlag = numberFlag('max-length', a['max-length'], { integer: true, min: 2 });
  const torchTimeout = numberFlag('torch-timeout', a['torch-timeout']!, { min: 1 });
  const specs = [...(a.models ?? (a.model?.length ? '' : 'stories260K,llama-1m,random-1b')).split(','), ...(a.model ?? [])].map((s) => s.trim()).filter(Boolean);
  const entries = specs.map(resolveModel);
  const taskNames = (a.tasks ?? Object.keys(TASKS).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of taskNames) if (!(t in TASKS)) throw new Error(`--tasks: unknown '${t}' (known: ${Object.keys(TASKS).join(', ')})`);
  const data = dataOptions({ dataDir: resolveDataDir(a.data), hub: false }); // local data only
  const rt = await initRuntime({ backend: parseBackend(a.backend!) });
  const sha = gitSha();
  const startedAt = new Date().toISOString();
  const table = new Table(a.out!, a.fresh!);
  const kp = kernelPolicy();
  console.error(`[bench-eval] ${rt.backend} on ${rt.device}; data ${data.dataDir ?? '(none)'}; kernels ${kp.mode}; models ${entries.map((e) => e.label).join(', ')}; tasks ${taskNames.join(', ')}; limit ${limit ?? 'all'}`);
  let failures = 0;

  for (const entry of entries) {
    console.error(`[bench-eval] == ${entry.label}: loading`);
    const tLoad = performance.now();
    let model: Model;
    try {
      model = await entry.load();
    } catch (e) {
      failures++;
      console.error(`[bench-eval]    cannot load ${entry.label}: ${(e as Error).message}`);
      continue;
    }
    console.error(`[bench-eval]    loaded in ${((performance.now() - tLoad) / 1000).toFixed(1)} s`);
    const collected: { task: CollectedTask; kitRow: Row }[] = [];
    let rule: PlanRule;
    let scorerName = '';
    let warmIds = model.tokenizer.encode('Once upon a time, there was a little girl').slice(0, 12);
    if (warmIds.length < 2) warmIds = [0, 0];
    const warmup = { context: warmIds.slice(0, 1), continuation: warmIds.slice(1) };
    try {
      const kit = kitScorer(model, maxLengthFlag, batchTokens);
      const base = kit.scorer;
      rule = kit.rule;
      scorerName = base instanceof EngineScorer ? `EngineScorer (shared contexts ${base.opts.sharePrefixes ? 'on' : 'off'}, fp32 GEMM tilings '${base.opts.executor.gemm ?? EXECUTOR_DEFAULTS.gemm}', split-K ≤ ${base.opts.executor.splitK ?? EXECUTOR_DEFAULTS.splitK})` : base.constructor.name;
      const timed = new TimingScorer(base);
      const rec = new RecordingScorer(timed);
      await base.continuations([warmup]); // untimed warm-up (PyTorch runs the same request first)
      for (const name of taskNames) {
        const task = TASKS[name as keyof typeof TASKS];
        let lastLog = 0;
        const onProgress = (stage: string, done: number, total: number) => {
          const now = performance.now();
          if (now - lastLog > 10_000 || done === total) {
            lastLog = now;
            console.error(`[bench-eval]    ${stage} ${done}/${total}`);
          }
        };
        try {
          const o = await evaluate(rec, model.tokenizer, task, { limit, seed, data, onProgress });
          const c = collectTask(name, rec, timed, rule);
          if (o.status === 'no_data' || !c) {
            console.error(`[bench-eval]    ${name}: skipped (${o.status === 'no_data' ? o.notes[0] : 'no requests'})`);
            continue;
          }
          const metrics = o.results.filter((r) => r.task === name).map((r) => `${r.metric}=${r.value === null ? '-' : r.value.toFixed(4)}`);
          const kitRow: Row = {
            engine: 'kit', model: entry.label, task: name, n_requests: String(c.exported.requests.length), scored_tokens: String(c.scoredTokens),
            wall_s: f(c.wallS, 4), scored_tok_s: f(c.scoredTokens / c.wallS, 1), ratio_vs_torch: '', max_abs_logprob_diff: '', greedy_agree: '',
            backend: rt.backend, device: rt.device, git_sha: sha, started_at: startedAt, limit: limit === null ? 'all' : String(limit),
            note: [
              `scorer=${scorerName}`, `plan=${c.planSource}`, `input_tokens=${c.exported.requests.reduce((n, r) => n + rowLength(r, base.maxLength), 0)}`,
              `padded_tokens=${c.exported.plan.batches.reduce((n, [T, B]) => n + T * B, 0)}`, `batches=${c.exported.plan.batches.length}`, `maxLength=${base.maxLength}`,
              ...(batchTokens ? [`batch_tokens=${batchTokens}`] : []), `kernels=${kp.mode}`, ...metrics,
            ].join('; '),
          };
          table.put(kitRow);
          collected.push({ task: c, kitRow });
          console.error(`[bench-eval]    ${name}: ${c.exported.requests.length} requests, ${c.scoredTokens} scored tokens, ${c.wallS.toFixed(2)} s, ${(c.scoredTokens / c.wallS).toFixed(0)} tok/s; ${metrics.join(' ')}`);
          if (a.profile && base instanceof EngineScorer) await profileTask(base, c.wallS, (sc) => evaluate(sc, model.tokenizer, task, { limit, seed, data }), name);
        } catch (e) {
          failures++;
          timed.calls.length = 0;
          rec.log.continuations.length = 0;
          rec.log.nextToken.length = 0;
          console.error(`[bench-eval]    ${name}: FAILED: ${(e as Error).stack ?? e}`);
        }
      }
    } finally {
      disposeModel(model); // free the GPU for PyTorch
    }
    if (collected.length === 0) continue;
    const exportDir = path.join(a['export-dir']!, entry.label.replace(/[^\w.-]/g, '_'));
    const manifest = writeExport(exportDir, { model: entry.label, rule: rule!, torch: entry.torch, warmup }, collected.map((c) => c.task.exported));
    console.error(`[bench-eval]    exported ${collected.reduce((s, c) => s + c.task.exported.requests.length, 0)} requests to ${manifest}`);
    if (a['no-torch']) continue;
    if (!entry.torch) {
      failures++;
      console.error(`[bench-eval]    no PyTorch side: ${entry.noTorch}`);
      continue;
    }
    const outFile = path.join(exportDir, 'torch.json');
    const script = path.join(REPO_ROOT, 'scripts/py/score_torch.py');
    console.error(`[bench-eval]    ${a.python} ${script} --export ${exportDir} (timeout ${torchTimeout} s)`);
    try {
      fs.rmSync(outFile, { force: true });
      execFileSync(a.python!, [script, '--export', exportDir, '--out', outFile], { stdio: ['ignore', 'inherit', 'inherit'], timeout: torchTimeout * 1000, killSignal: 'SIGKILL' });
    } catch (e) {
      failures++;
      console.error(`[bench-eval]    PyTorch scorer failed: ${(e as Error).message}`);
      continue;
    }
    const ref = readTorchResults(outFile, collected.map((c) => c.task.exported));
    for (const { task: c, kitRow } of collected) {
      const t = ref.tasks.find((x) => x.name === c.exported.name)!;
      const torchTokS = t.scored_tokens / t.wall_s;
      const notes = [`batches=${t.batches}`, `torch ${ref.torch}, transformers ${ref.transformers}, ${ref.dtype}`];
      if (t.scored_tokens !== c.scoredTokens) notes.push(`scored tokens differ from the kit's ${c.scoredTokens}`);
      table.put({
        ...kitRow, engine: 'pytorch', scored_tokens: String(t.scored_tokens), wall_s: f(t.wall_s, 4), scored_tok_s: f(torchTokS, 1), ratio_vs_torch: '1.0000',
        backend: ref.backend, device: ref.device, note: notes.join('; '),
      });
      const agree = entry.agreement ? compareTask(c.kit, t) : null;
      table.put({
        ...kitRow,
        ratio_vs_torch: f(Number(kitRow.scored_tok_s) / torchTokS, 4),
        max_abs_logprob_diff: agree ? agree.maxAbsDiff.toExponential(3) : '',
        greedy_agree: agree ? f(agree.greedyAgree, 4) : '',
        note: [kitRow.note, agree ? '' : 'random weights: speed only, no agreement'].filter(Boolean).join('; '),
      });
      console.error(`[bench-eval]    ${c.exported.name}: kit ${kitRow.scored_tok_s} vs PyTorch ${torchTokS.toFixed(1)} tok/s${agree ? `, max |Δ logprob| ${agree.maxAbsDiff.toExponential(2)}, greedy agree ${agree.greedyAgree.toFixed(4)}` : ''}`);
    }
  }
  console.error(`[bench-eval] wrote ${table.file}${failures ? `; ${failures} failure(s)` : ''}`);
  return failures ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`bench-eval: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);

/**
 * Where the executor's scoring of a task spends its GPU time (--profile, stderr only): the task
 * scored again with every dispatch timed by timestamp queries (kernels/timing.ts KernelTimes).
 */
async function profileTask(base: EngineScorer, wallS: number, run: (s: Scorer) => Promise<unknown>, task: string): Promise<void> {
  const times = new KernelTimes();
  await run(new EngineScorer(base.model, base.maxLength, { ...base.opts, times }));
  console.error(`[profile] ${task}: wall ${wallS.toFixed(2)} s untimed; GPU ${(times.ms() / 1000).toFixed(2)} s in all`);
  for (const line of times.report(executorKernelGroups(base.model.config.vocabSize))) console.error(`[profile]   ${line}`);
}
