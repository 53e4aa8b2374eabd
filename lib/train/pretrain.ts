// Pre-training one zoo model end to end: tokenizer, corpus tokens, init, training (with a
// time-budget probe when asked), fp16 rounding, held-out perplexity, HF directory, model card,
// loss curve and summary as tidy CSV.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatCsv, parseCsvRecords } from '../csv';
import { HfTokenizer, saveModel } from '../models/hf';
import { f16ToF32, f32ToF16 } from '../models/safetensors';
import { ByteLevelBpe, trainBpe } from '../models/tokenizer-bpe';
import type { Model } from '../models/types';
import { gitSha, writeFileAtomic } from '../results';
import type { RuntimeInfo } from '../runtime';
import { readCorpusSplit, sha256, DEFAULT_CORPUS_DIR, type CorpusManifest, type Split } from './corpus';
import { WindowLoader } from './data';
import { lmLoss, perplexity, type PerplexityResult } from './lm';
import { train, TRAIN_DEFAULTS, type CurvePoint, type TrainOptions, type TrainResult } from './trainer';
import {
  ZOO, ZOO_CONTEXT, ZOO_GLM, ZOO_VOCAB, countParams, decayMatrices, initWeights, makeTrainableModel, trainableParams, zooConfig,
  type ZooSpec,
} from './zoo';

/** Small specs for trying the pipeline on wasm (not part of the zoo). */
export const TINY = {
  'llama-tiny': { name: 'llama-tiny', arch: 'llama', hidden: 32, layers: 2, heads: 2, ffn: 64, lr: 1e-2, batch: 4 },
  'opt-tiny': { name: 'opt-tiny', arch: 'opt', hidden: 32, layers: 2, heads: 2, ffn: 128, lr: 1e-2, batch: 4 },
  'glm-tiny': { name: 'glm-tiny', arch: 'glm', hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, lr: 1e-2, batch: 4 },
} satisfies Record<string, ZooSpec>;

export function findSpec(name: string): ZooSpec {
  const all: Record<string, ZooSpec> = { ...ZOO, ...ZOO_GLM, ...TINY };
  const s = all[name];
  if (!s) throw new Error(`unknown model '${name}' (zoo: ${Object.keys(ZOO).join(', ')}; GLM, to train: ${Object.keys(ZOO_GLM).join(', ')}; tiny: ${Object.keys(TINY).join(', ')})`);
  return s;
}

export interface PretrainOptions {
  model: string; // a ZOO or TINY name
  corpusDir: string; // built by scripts/build-corpus.ts
  tokenizerDir: string; // shared zoo tokenizer: trained on the train split and saved here when absent
  outRoot: string; // writes <outRoot>/models/zoo/<name>/ and <outRoot>/data/zoo/
  vocab: number; // tokenizer vocabulary when it has to be trained
  seqLen: number; // training context (= max positions of the model)
  steps: number | null; // optimizer steps; null = from budgetS
  budgetS: number | null; // training-time budget in seconds: steps = budget / (probed step time)
  probeSteps: number; // timed steps of the budget probe (after one untimed warm-up step)
  batch: number | null; // sequences per step (default: the spec's)
  lr: number | null; // peak learning rate (default: the spec's)
  warmupFrac: number; // warmup steps as a fraction of all steps
  logEvery: number; // curve point every this many steps
  evalPoints: number; // evaluate held-out loss at about this many points along the run
  evalWindows: number; // valid windows per in-training evaluation
  finalEvalWindows: number; // windows of the final valid/test perplexity (Infinity = the whole splits)
  checkpointDir: string | null; // default: <tmpdir>/llmcb-zoo-ckpt/<name>
  checkpointEvery: number; // steps between checkpoints (rounded to logEvery; 0 = only at the end)
  resume: boolean; // continue from the checkpoint when there is one
  stopAfter: number | null; // stop at this step (checkpointed) without saving the model
  seed: number; // init and data-order seed
  save: boolean; // write the HF directory, card and CSVs
  fp16: boolean; // round weights to fp16 before evaluating and store them as F16
}
export const PRETRAIN_DEFAULTS: PretrainOptions = {
  model: 'llama-1m',
  corpusDir: DEFAULT_CORPUS_DIR,
  tokenizerDir: 'models/zoo/tokenizer',
  outRoot: '.',
  vocab: ZOO_VOCAB,
  seqLen: ZOO_CONTEXT,
  steps: null,
  budgetS: null,
  probeSteps: 4,
  batch: null,
  lr: null,
  warmupFrac: 0.05,
  logEvery: 10,
  evalPoints: 10,
  evalWindows: 64,
  finalEvalWindows: Infinity,
  checkpointDir: null,
  checkpointEvery: 200,
  resume: false,
  stopAfter: null,
  seed: 0,
  save: true,
  fp16: true,
};

/** The shared zoo tokenizer: loaded from dir, or trained on the corpus train split and saved there. */
export function zooTokenizer(dir: string, corpusDir: string, vocab: number, maxLength: number): ByteLevelBpe {
  if (fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    const tok = ByteLevelBpe.load(dir);
    if (tok.vocabSize !== vocab) throw new Error(`${dir}/tokenizer.json has ${tok.vocabSize} tokens, the run asks for ${vocab}`);
    return tok;
  }
  const tok = new ByteLevelBpe(trainBpe(readCorpusSplit(corpusDir, 'train'), { vocabSize: vocab }));
  tok.save(dir, maxLength);
  return tok;
}

/**
 * A corpus split's token ids, cached in the temp directory under a hash of the tokenizer and the
 * text (the zoo script trains several models on the same tokens; encoding takes seconds).
 */
export function splitTokens(tok: ByteLevelBpe, corpusDir: string, split: Split): Int32Array {
  const text = readCorpusSplit(corpusDir, split);
  const key = sha256(JSON.stringify(tok.toTokenizerJson()) + '\u0000' + text).slice(0, 24);
  const file = path.join(os.tmpdir(), 'llmcb-zoo-tokens', `${split}-${key}.i32`);
  if (fs.existsSync(file)) {
    const b = fs.readFileSync(file);
    return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  const ids = Int32Array.from(tok.encode(text));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, new Uint8Array(ids.buffer));
  fs.renameSync(tmp, file);
  return ids;
}

export interface PretrainResult {
  name: string;
  params: number;
  train: TrainResult;
  steps: number;
  batch: number;
  lr: number;
  stepTimeProbeS: number | null;
  valid: PerplexityResult | null;
  test: PerplexityResult | null;
  dir: string | null;
}

function curveFile(root: string, name: string): string {
  return path.join(root, 'data/zoo/curves', `${name}.csv`);
}

/** The loss curve as a tidy long table: one row per (model, step, metric). */
export function curveRows(name: string, family: string, params: number, curve: CurvePoint[], tokensPerEpoch: number): string[][] {
  const rows: string[][] = [];
  for (const p of curve) {
    const base = [name, family, String(params), String(p.step), String(p.tokens), (p.tokens / tokensPerEpoch).toFixed(4)];
    const metrics: [string, number][] = [
      ['train_loss', p.trainLoss], ['lr', p.lr], ['grad_norm', p.gradNorm], ['tokens_per_s', p.tokensPerS], ['elapsed_s', p.elapsedS],
      ...Object.entries(p.eval),
    ];
    for (const [m, v] of metrics) rows.push([...base, m, String(v)]);
  }
  return rows;
}
export const CURVE_COLUMNS = ['model', 'family', 'params', 'step', 'tokens', 'epoch', 'metric', 'value'] as const;
export const SUMMARY_COLUMNS = ['model', 'family', 'params', 'backend', 'device', 'metric', 'value'] as const;

/** The model's summary rows: data/zoo/summary/<name>.csv (one file per model, so runs on different hosts merge by copying). */
export function summaryFile(root: string, name: string): string {
  return path.join(root, 'data/zoo/summary', `${name}.csv`);
}

/** All models' summary rows under root, as records (columns SUMMARY_COLUMNS). */
export function readZooSummary(root = '.'): Record<string, string>[] {
  const dir = path.join(root, 'data/zoo/summary');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.csv'))
    .sort()
    .flatMap((f) => parseCsvRecords(fs.readFileSync(path.join(dir, f), 'utf8'), path.join(dir, f)));
}

/** Rounds every weight to fp16 in place (what the F16 file will hold). */
async function roundToFp16(model: Model): Promise<void> {
  for (const [, w] of model.weights) {
    const r = f16ToF32(f32ToF16((await w.data()) as Float32Array));
    (w as tf.Variable).assign(tf.tidy(() => tf.tensor(r, w.shape, 'float32')));
  }
}

/** Saves the model as an HF directory; with fp16 the safetensors file stores F16. */
async function saveZooModel(model: Model, dir: string, fp16: boolean): Promise<void> {
  await saveModel(model, dir, { dtype: fp16 ? 'F16' : 'F32' });
}

function safeGitSha(): string {
  try {
    return gitSha();
  } catch {
    return 'unknown';
  }
}

function fmt(x: number, d = 2): string {
  return Number.isFinite(x) ? x.toFixed(d) : String(x);
}

export function modelCard(r: PretrainResult, spec: ZooSpec, model: Model, rt: RuntimeInfo, o: PretrainOptions, corpus: CorpusManifest | null, extra: { trainTokens: number; command: string }): string {
  const c = model.config;
  const last = r.train.curve[r.train.curve.length - 1];
  const tps = medianThroughput(r.train.curve);
  const family = { llama: 'LLaMA', opt: 'OPT', glm: 'GLM' }[spec.arch];
  const archLine = {
    llama: 'RMSNorm, rotary position embeddings (θ = 10000), SwiGLU MLP, no biases, tied input/output embeddings',
    opt: 'pre-LayerNorm (do_layer_norm_before), learned positions (offset 2), ReLU MLP, biases, tied input/output embeddings',
    glm: `RMSNorm, ${spec.kvHeads ?? spec.heads} KV groups, q/k/v biases, rotary embeddings on half of each head (θ = 10000), SwiGLU MLP, untied output layer`,
  }[spec.arch];
  return `---
license: mit
language: en
library_name: transformers
pipeline_tag: text-generation
tags: [llmcbench-ts, model-zoo, ${spec.arch}]
---

# ${r.name}

A ${family}-style causal language model with ${r.params.toLocaleString('en-US')} parameters, trained from
scratch by LLMCBench-TS (\`scripts/train.ts\`) as part of the kit's own model zoo. It is a plain
Hugging Face directory (\`${c.hf.architectures ? (c.hf.architectures as string[])[0] : ''}\`, safetensors${o.fp16 ? ' in fp16' : ''}) that loads in
the kit (\`loadModel('models/zoo/${r.name}')\`) and in transformers (\`AutoModelForCausalLM.from_pretrained\`).
It is a test subject for compression methods, not a useful language model.

## Architecture
| | |
|---|---|
| layers | ${c.numLayers} |
| hidden size | ${c.hiddenSize} |
| attention heads | ${c.numHeads} (head dim ${c.headDim}) |
| MLP width | ${c.intermediateSize} |
| context | ${c.maxPositions} |
| vocabulary | ${c.vocabSize} (byte-level BPE trained on the corpus' train split) |
| details | ${archLine} |

## Training data
${corpus ? `${corpus.source}. Licence: ${corpus.licence} Obtain: ${corpus.obtain}.` : `corpus in ${o.corpusDir}`}
${corpus?.split.rule ? `Split ${corpus.split.rule}` : 'Split by chapter (every 25th chapter from the 13th to *valid*, from the 25th to *test*, the rest *train*)'}${corpus?.decontamination ? `; ${corpus.decontamination.dropped.length} documents sharing a ${corpus.decontamination.n}-gram with an evaluation split were dropped (corpus.json, contamination.md)` : ''};
the evaluation benchmarks' data are never used. Train split: ${extra.trainTokens.toLocaleString('en-US')} tokens.

## Training
| | |
|---|---|
| steps | ${r.steps} (${r.train.tokens.toLocaleString('en-US')} tokens, ${fmt(r.train.tokens / extra.trainTokens)} epochs) |
| batch | ${r.batch} sequences × ${o.seqLen} tokens |
| optimizer | AdamW (β = ${TRAIN_DEFAULTS.beta1}, ${TRAIN_DEFAULTS.beta2}; weight decay ${TRAIN_DEFAULTS.weightDecay} on matrices), peak lr ${r.lr}, ${Math.round(o.warmupFrac * 100)}% linear warmup, cosine to ${TRAIN_DEFAULTS.minLrRatio * 100}% |
| gradient clipping | global norm ${TRAIN_DEFAULTS.gradClip} |
| init | normal(0, 0.02), residual-output linears / sqrt(2·layers), seed ${o.seed} |
| hardware | ${rt.device} (tfjs ${rt.backend} backend) |
| throughput | ${fmt(tps, 0)} tokens/s (median over the run) |
| training time | ${fmt(r.train.elapsedS, 1)} s${r.stepTimeProbeS !== null ? ` (steps chosen from a ${o.budgetS} s budget and a probed step time of ${fmt(r.stepTimeProbeS * 1000, 1)} ms)` : ''} |
| final training loss | ${fmt(last.trainLoss, 4)} |

## Evaluation (held-out, ${o.fp16 ? 'fp16 weights as stored' : 'fp32 weights'})
Token perplexity, non-overlapping windows of ${o.seqLen} tokens, no BOS, every predicted position.

| split | tokens | perplexity |
|---|---|---|
| valid | ${r.valid ? r.valid.predicted.toLocaleString('en-US') : '-'} | ${r.valid ? fmt(r.valid.ppl) : '-'} |
| test | ${r.test ? r.test.predicted.toLocaleString('en-US') : '-'} | ${r.test ? fmt(r.test.ppl) : '-'} |
| uniform baseline | | ${c.vocabSize} |

The loss curve is \`data/zoo/curves/${r.name}.csv\` (tidy: model, step, tokens, epoch, metric, value).

## Reproduce
\`\`\`
${extra.command}
\`\`\`
Git commit: ${safeGitSha()}.
`;
}

/** Median tokens/s over the curve, skipping the first point (shader compilation, warm-up). */
export function medianThroughput(curve: CurvePoint[]): number {
  const xs = curve.slice(curve.length > 1 ? 1 : 0).map((p) => p.tokensPerS).sort((a, b) => a - b);
  return xs.length ? xs[Math.floor(xs.length / 2)] : NaN;
}

/** Trains (or resumes) one model; with save, writes its HF directory, card, curve and summary rows. */
export async function pretrain(rt: RuntimeInfo, options: Partial<PretrainOptions> = {}, log: (s: string) => void = console.log): Promise<PretrainResult> {
  const o: PretrainOptions = { ...PRETRAIN_DEFAULTS, ...options };
  const spec = findSpec(o.model);
  if ((o.steps === null) === (o.budgetS === null)) throw new Error(`pretrain '${o.model}': give exactly one of 'steps' and 'budgetS'`);
  const tok = zooTokenizer(o.tokenizerDir, o.corpusDir, o.vocab, o.seqLen);
  const t0 = performance.now();
  const [trainIds, validIds, testIds] = (['train', 'valid', 'test'] as const).map((s) => splitTokens(tok, o.corpusDir, s));
  log(`${spec.name}: corpus tokens train ${trainIds.length}, valid ${validIds.length}, test ${testIds.length} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const config = zooConfig(spec, tok.vocabSize, o.seqLen);
  const params = countParams(config);
  const init = initWeights(config, { seed: o.seed });
  const hfTok = new HfTokenizer(tok.toTokenizerJson(), tok.toTokenizerConfig(o.seqLen));
  const model = makeTrainableModel(spec.name, config, hfTok, init, `models/zoo/${spec.name}`);
  const batch = o.batch ?? spec.batch;
  const lr = o.lr ?? spec.lr;
  const vars = trainableParams(model);
  const task = () => ({
    params: vars,
    loss: (b: Parameters<typeof lmLoss>[1]) => lmLoss(model, b),
    data: new WindowLoader(trainIds, o.seqLen, batch, o.seed),
    tokensPerBatch: batch * o.seqLen,
    decay: decayMatrices(vars),
  });
  try {
    let steps = o.steps;
    let probe: number | null = null;
    if (steps === null) {
      // Time a few real steps (after one warm-up step that compiles the shaders), then start over.
      const warm = await train(task(), { steps: 1, lr, warmupSteps: 0, logEvery: 1, label: `${spec.name} pretraining (warm-up)` });
      const timed = await train(task(), { steps: o.probeSteps, lr, warmupSteps: 0, logEvery: o.probeSteps, label: `${spec.name} pretraining (step-time probe)` });
      probe = timed.elapsedS / o.probeSteps;
      steps = Math.max(o.logEvery, Math.floor(o.budgetS! / probe / o.logEvery) * o.logEvery);
      log(`${spec.name}: probe ${(probe * 1000).toFixed(1)} ms/step (warm-up step ${warm.elapsedS.toFixed(1)} s) -> ${steps} steps for ${o.budgetS} s`);
      for (const [k, v] of vars) v.assign(tf.tidy(() => tf.tensor(init.get(k)!, v.shape, 'float32')));
    }
    const evalEvery = Math.max(o.logEvery, Math.round(steps / o.evalPoints / o.logEvery) * o.logEvery);
    const ckptEvery = o.checkpointEvery > 0 ? Math.max(o.logEvery, Math.round(o.checkpointEvery / o.logEvery) * o.logEvery) : 0;
    const topts: Partial<TrainOptions> = {
      steps, lr, warmupSteps: Math.round(steps * o.warmupFrac), logEvery: o.logEvery, evalEvery,
      checkpointEvery: ckptEvery, checkpointDir: o.checkpointDir ?? path.join(os.tmpdir(), 'llmcb-zoo-ckpt', spec.name),
      resume: o.resume, stopAfter: o.stopAfter, label: `${spec.name} pretraining`,
    };
    log(`${spec.name}: ${params} parameters, ${steps} steps × ${batch}×${o.seqLen} tokens, lr ${lr}, ${tf.getBackend()}`);
    const result = await train(task(), topts, {
      evaluate: async () => ({ valid_loss: (await perplexity(model, validIds, { seqLen: o.seqLen, maxWindows: o.evalWindows })).meanNll }),
      onPoint: (p) =>
        log(`${spec.name} step ${p.step}/${steps} loss ${p.trainLoss.toFixed(4)}${p.eval.valid_loss !== undefined ? ` valid ${p.eval.valid_loss.toFixed(4)}` : ''} |g| ${p.gradNorm.toFixed(2)} lr ${p.lr.toExponential(2)} ${p.tokensPerS.toFixed(0)} tok/s`),
    });
    const out: PretrainResult = { name: spec.name, params, train: result, steps, batch, lr, stepTimeProbeS: probe, valid: null, test: null, dir: null };
    if (result.step < steps || !o.save) return out;
    if (o.fp16) await roundToFp16(model);
    out.valid = await perplexity(model, validIds, { seqLen: o.seqLen, maxWindows: o.finalEvalWindows });
    out.test = await perplexity(model, testIds, { seqLen: o.seqLen, maxWindows: o.finalEvalWindows });
    log(`${spec.name}: valid ppl ${out.valid.ppl.toFixed(2)}, test ppl ${out.test.ppl.toFixed(2)} (uniform ${config.vocabSize})`);
    const dir = path.join(o.outRoot, 'models/zoo', spec.name);
    await saveZooModel(model, dir, o.fp16);
    const manifestFile = path.join(o.corpusDir, 'corpus.json');
    const corpus = fs.existsSync(manifestFile) ? (JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as CorpusManifest) : null;
    // A tokenizer trained under the output root is the repository's own once the run is unpacked there.
    const inRoot = path.relative(o.outRoot, o.tokenizerDir);
    const tokenizerFlag = inRoot && !inRoot.startsWith('..') && !path.isAbsolute(inRoot) ? inRoot : o.tokenizerDir;
    const corpusFlags = o.corpusDir === PRETRAIN_DEFAULTS.corpusDir ? '' : ` --corpus ${o.corpusDir} --tokenizer ${tokenizerFlag}`;
    const command = `npx tsx scripts/train.ts --model ${spec.name} --backend ${rt.backend}${corpusFlags} --steps ${steps} --batch ${batch} --lr ${lr} --seq-len ${o.seqLen} --seed ${o.seed}`;
    fs.writeFileSync(path.join(dir, 'README.md'), modelCard(out, spec, model, rt, o, corpus, { trainTokens: trainIds.length, command }));
    const tokensPerEpoch = trainIds.length;
    writeFileAtomic(curveFile(o.outRoot, spec.name), formatCsv(CURVE_COLUMNS, curveRows(spec.name, spec.arch, params, result.curve, tokensPerEpoch)));
    const last = result.curve[result.curve.length - 1];
    const metrics: [string, number][] = [
      ['steps', steps], ['tokens', result.tokens], ['epochs', result.tokens / tokensPerEpoch], ['batch', batch], ['seq_len', o.seqLen], ['lr', lr],
      ['train_loss_final', last.trainLoss], ['valid_ppl', out.valid.ppl], ['test_ppl', out.test.ppl], ['uniform_ppl', config.vocabSize],
      ['tokens_per_s', medianThroughput(result.curve)], ['train_s', result.elapsedS],
    ];
    writeFileAtomic(summaryFile(o.outRoot, spec.name), formatCsv(SUMMARY_COLUMNS, metrics.map(([m, v]) => [spec.name, spec.arch, String(params), rt.backend, rt.device, m, String(v)])));
    out.dir = dir;
    return out;
  } finally {
    for (const v of vars.values()) v.dispose();
  }
}
