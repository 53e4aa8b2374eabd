import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCsvRecords } from '../lib/csv';
import { loadModel, disposeModel } from '../lib/models/load';
import { readSafetensorsHeader } from '../lib/models/safetensors';
import { ByteLevelBpe, trainBpe } from '../lib/models/tokenizer-bpe';
import { embed, forward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { initRuntime, type RuntimeInfo } from '../lib/runtime';
import { readCorpusSplit } from '../lib/train/corpus';
import { WindowLoader } from '../lib/train/data';
import { lmLoss, perplexity, trainEmbed, trainLogits } from '../lib/train/lm';
import { pretrain, readZooSummary, TINY } from '../lib/train/pretrain';
import { train } from '../lib/train/trainer';
import { decayMatrices, initWeights, makeTrainableModel, trainableParams, zooConfig } from '../lib/train/zoo';

const corpusDir = path.resolve(__dirname, '../data/zoo/corpus');
const V = 320;
const T = 32;
let rt: RuntimeInfo;
let tok: ByteLevelBpe;
let ids: Int32Array;

beforeAll(async () => {
  rt = await initRuntime({ backend: 'wasm' });
  expect(tf.getBackend()).toBe('wasm');
  const text = readCorpusSplit(corpusDir, 'valid').slice(0, 30_000);
  tok = new ByteLevelBpe(trainBpe(text, { vocabSize: V }));
  ids = Int32Array.from(tok.encode(text));
});

function tinyModel(arch: 'llama' | 'opt' | 'glm', seed = 0): Model {
  const spec = TINY[`${arch}-tiny`];
  const config = zooConfig(spec, V, T);
  return makeTrainableModel(`${arch}-tiny`, config, tok, initWeights(config, { seed }));
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe.each(['llama', 'opt', 'glm'] as const)('%s-style training', (arch) => {
  it('trainEmbed/trainLogits equal the engine embed()/forward()', () => {
    const before = tf.memory().numTensors;
    const m = tinyModel(arch, 3);
    const x = tf.tensor2d(ids.slice(0, 2 * T), [2, T], 'int32');
    const [e1, e2, l1, l2] = [trainEmbed(m, x), embed(m, x), trainLogits(m, x), forward(m, x)];
    expect(maxAbsDiff(e1, e2)).toBe(0);
    expect(maxAbsDiff(l1, l2)).toBeLessThan(1e-5);
    tf.dispose([x, e1, e2, l1, l2]);
    m.weights.forEach((w) => w.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });

  it('perplexity follows the protocol: fresh init ≈ uniform; equals exp(lmLoss) on the same positions', async () => {
    const m = tinyModel(arch);
    const p = await perplexity(m, ids, { seqLen: T, maxWindows: 6, batch: 4 });
    expect(p.windows).toBe(6);
    expect(p.predicted).toBe(6 * (T - 1));
    expect(p.ppl).toBeGreaterThan(V * 0.9);
    expect(p.ppl).toBeLessThan(V * 1.1);
    // The same 6 windows as an LM batch: inputs = first T-1 tokens, targets = the next ones.
    const inputs = new Int32Array(6 * (T - 1));
    const targets = new Int32Array(6 * (T - 1));
    for (let w = 0; w < 6; w++) {
      inputs.set(ids.subarray(w * T, w * T + T - 1), w * (T - 1));
      targets.set(ids.subarray(w * T + 1, w * T + T), w * (T - 1));
    }
    const loss = lmLoss(m, { inputs, targets, batch: 6, seqLen: T - 1 });
    expect(Math.abs(loss.dataSync()[0] - p.meanNll)).toBeLessThan(1e-5);
    loss.dispose();
    m.weights.forEach((w) => w.dispose());
  });

  it('learns, and a run resumed from a checkpoint has exactly the losses of an uninterrupted one', async () => {
    const before = tf.memory().numTensors;
    const opts = { steps: 30, lr: 1e-2, warmupSteps: 3, logEvery: 5 };
    const run = async (extra: object) => {
      const m = tinyModel(arch);
      const params = trainableParams(m);
      const r = await train(
        { params, loss: (b) => lmLoss(m, b), data: new WindowLoader(ids, T, 4, 0), tokensPerBatch: 4 * T, decay: decayMatrices(params) },
        { ...opts, ...extra },
      );
      params.forEach((v) => v.dispose());
      return r;
    };
    const full = await run({});
    expect(full.curve.length).toBe(6);
    expect(full.curve[5].trainLoss).toBeLessThan(full.curve[0].trainLoss - 0.5);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `lm-resume-${arch}-`));
    const first = await run({ checkpointDir: dir, stopAfter: 15 });
    expect(first.step).toBe(15);
    const resumed = await run({ checkpointDir: dir, resume: true });
    expect(resumed.resumedFrom).toBe(15);
    expect(resumed.curve.map((p) => p.trainLoss)).toEqual(full.curve.map((p) => p.trainLoss));
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('pretrain end to end (tiny, wasm)', () => {
  it('writes an HF directory the kit loads with the perplexity its card and summary state', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zoo-'));
    const tokDir = path.join(root, 'tok');
    const quiet = () => {};
    const r = await pretrain(rt, {
      model: 'opt-tiny', corpusDir, tokenizerDir: tokDir, outRoot: root, vocab: V, seqLen: T, steps: 10, batch: 4, logEvery: 5,
      evalPoints: 2, evalWindows: 2, finalEvalWindows: 40, checkpointDir: path.join(root, 'ckpt'),
    }, quiet);
    expect(r.dir).toBe(path.join(root, 'models/zoo/opt-tiny'));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'README.md']) {
      expect(fs.existsSync(path.join(r.dir!, f)), f).toBe(true);
    }
    const header = readSafetensorsHeader(path.join(r.dir!, 'model.safetensors'));
    expect(header.entries.every((e) => e.dtype === 'F16')).toBe(true);
    const card = fs.readFileSync(path.join(r.dir!, 'README.md'), 'utf8');
    expect(card).toContain(`| test | ${r.test!.predicted.toLocaleString('en-US')} | ${r.test!.ppl.toFixed(2)} |`);
    // the reproduce command names the backend, and the tokenizer trained under the output root by its path there
    expect(card).toContain(`--model opt-tiny --backend ${rt.backend} --corpus ${corpusDir} --tokenizer tok --steps 10 `);
    const summary = readZooSummary(root);
    const testPpl = Number(summary.find((x) => x.model === 'opt-tiny' && x.metric === 'test_ppl')!.value);
    expect(testPpl).toBe(r.test!.ppl);
    const curve = parseCsvRecords(fs.readFileSync(path.join(root, 'data/zoo/curves/opt-tiny.csv'), 'utf8'));
    expect(curve.filter((x) => x.metric === 'train_loss').map((x) => Number(x.step))).toEqual([5, 10]);
    expect(curve.some((x) => x.metric === 'valid_loss')).toBe(true);
    const loaded = await loadModel(r.dir!);
    expect(loaded.config.arch).toBe('opt');
    const testIds = Int32Array.from(loaded.tokenizer.encode(readCorpusSplit(corpusDir, 'test')));
    // the HF tokenizer.json the kit loads encodes exactly as the kit's BPE that wrote it
    expect(Array.from(testIds)).toEqual(ByteLevelBpe.load(tokDir).encode(readCorpusSplit(corpusDir, 'test')));
    const p = await perplexity(loaded, testIds, { seqLen: T, maxWindows: 40 });
    expect(p.windows).toBe(40);
    expect(Math.abs(p.ppl - r.test!.ppl) / r.test!.ppl).toBeLessThan(1e-5);
    expect(p.ppl).toBeLessThan(V);
    disposeModel(loaded);
  });
});
