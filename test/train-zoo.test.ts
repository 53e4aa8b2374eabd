import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { configFromHf } from '../lib/models/hf';
import { ByteLevelBpe } from '../lib/models/tokenizer-bpe';
import { CORPUS_FILE, parseBibleOutput, readCorpusSplit, sha256, splitCorpus, splitOf, type CorpusManifest } from '../lib/train/corpus';
import { ZOO, ZOO_GLM, countParams, initWeights, zooConfig, zooDirs, zooHfConfig } from '../lib/train/zoo';

const repo = path.resolve(__dirname, '..');
const corpusDir = path.join(repo, 'data/zoo/corpus');

describe('corpus', () => {
  it('parses `bible -f` output into chapters, one verse a line', () => {
    const out = 'Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\n1Jo1:1 That which was.\n';
    const ch = parseBibleOutput(out);
    expect(ch.map((c) => c.ref)).toEqual(['Ge1', 'Ge2', '1Jo1']);
    expect(ch[0].verses).toEqual(['In the beginning.', 'And the earth.']);
    expect(() => parseBibleOutput('Ge1:1 ok\nnot a verse\n', 'x.txt')).toThrow(/x.txt:2: not a verse line/);
  });

  it('splits chapters deterministically: index % 25 = 12 → valid, 24 → test', () => {
    expect([0, 11, 12, 13, 24, 25, 37, 49].map((i) => splitOf(i))).toEqual(['train', 'train', 'valid', 'train', 'test', 'train', 'valid', 'test']);
    const chapters = Array.from({ length: 26 }, (_, i) => ({ ref: `C${i}`, verses: [`v${i}a`, `v${i}b`] }));
    const s = splitCorpus(chapters);
    expect(s.valid).toBe('v12a\nv12b');
    expect(s.test).toBe('v24a\nv24b');
    expect(s.train.split('\n\n').length).toBe(24);
  });

  it('the committed splits match their manifest (sizes, sha256) and do not overlap', () => {
    const m = JSON.parse(fs.readFileSync(path.join(corpusDir, 'corpus.json'), 'utf8')) as CorpusManifest;
    expect(m.licence).toMatch(/public domain/i);
    const texts = (['train', 'valid', 'test'] as const).map((s) => readCorpusSplit(corpusDir, s));
    texts.forEach((t, i) => {
      const f = m.files[(['train', 'valid', 'test'] as const)[i]];
      expect(t.length).toBe(f.chars);
      expect(sha256(t)).toBe(f.sha256);
    });
    expect(m.files.train.docs + m.files.valid.docs + m.files.test.docs).toBe(1189);
    const trainDocs = new Set(texts[0].split('\n\n'));
    expect(texts[2].split('\n\n').filter((d) => trainDocs.has(d))).toEqual([]);
  });

  it('refuses a split whose text does not match the manifest', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-'));
    fs.copyFileSync(path.join(corpusDir, 'corpus.json'), path.join(dir, 'corpus.json'));
    fs.writeFileSync(path.join(dir, CORPUS_FILE('valid')), zlib.gzipSync('tampered'));
    expect(() => readCorpusSplit(dir, 'valid')).toThrow(/sha256 differs/);
    expect(() => readCorpusSplit(dir, 'test')).toThrow(/build-corpus/);
  });
});

describe('zoo configs', () => {
  it('have the planned sizes (tied embeddings counted once)', () => {
    const n = Object.fromEntries(Object.values(ZOO).map((s) => [s.name, countParams(zooConfig(s))]));
    expect(n).toEqual({
      'llama-700k': 725664, 'llama-1m': 1127296, 'llama-2m': 2205920,
      'opt-700k': 753696, 'opt-1m': 1152384, 'opt-2m': 2243360,
    });
    // llama-1m by hand: embeddings 4096·128 + 3 blocks · (4·128² + 3·128·352 + 2·128) + final norm 128
    expect(4096 * 128 + 3 * (4 * 128 * 128 + 3 * 128 * 352 + 2 * 128) + 128).toBe(n['llama-1m']);
  });

  it('GLM specs (to train) have their sizes: untied output layer, 2 KV groups, q/k/v biases, fused gate|up', () => {
    const n = Object.fromEntries(Object.values(ZOO_GLM).map((s) => [s.name, countParams(zooConfig(s))]));
    expect(n).toEqual({ 'glm-700k': 746304, 'glm-1m': 1119456, 'glm-2m': 2149776 });
    // glm-700k by hand: embeddings and output layer 2·4096·64 + 3 blocks · (qkv (64 + 2·32)·64 + its bias 128 + o 64² + gate|up 640·64 + down 64·320 + 2·64) + final norm 64
    expect(2 * 4096 * 64 + 3 * (128 * 64 + 128 + 64 * 64 + 640 * 64 + 64 * 320 + 2 * 64) + 64).toBe(n['glm-700k']);
    const c = zooConfig(ZOO_GLM['glm-700k']);
    expect(c).toMatchObject({ arch: 'glm', numKvHeads: 2, headDim: 16, qkvBias: true, tieWordEmbeddings: false });
    expect(() => zooHfConfig({ ...ZOO_GLM['glm-700k'], kvHeads: 3 })).toThrow(/not a multiple of KV heads 3/);
  });

  it('are HF configs the engine reads back unchanged', () => {
    const hf = zooHfConfig(ZOO['opt-2m']);
    expect(hf.model_type).toBe('opt');
    const c = configFromHf(hf);
    expect([c.hiddenSize, c.numLayers, c.numHeads, c.intermediateSize, c.maxPositions, c.tieWordEmbeddings]).toEqual([160, 5, 5, 640, 256, true]);
    expect(() => zooHfConfig({ ...ZOO['llama-1m'], heads: 3 })).toThrow(/not divisible/);
  });

  it('initialize deterministically: norms 1, biases 0, matrices N(0, 0.02), residual outputs scaled', () => {
    const c = zooConfig({ ...ZOO['opt-1m'] });
    const a = initWeights(c, { seed: 1 });
    const b = initWeights(c, { seed: 1 });
    expect(a.get('model.decoder.layers.0.fc1.weight')).toEqual(b.get('model.decoder.layers.0.fc1.weight'));
    expect(initWeights(c, { seed: 2 }).get('model.decoder.layers.0.fc1.weight')).not.toEqual(a.get('model.decoder.layers.0.fc1.weight'));
    expect([...a.get('model.decoder.layers.1.final_layer_norm.weight')!].every((x) => x === 1)).toBe(true);
    expect([...a.get('model.decoder.layers.1.fc1.bias')!].every((x) => x === 0)).toBe(true);
    const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    expect(std(a.get('model.decoder.embed_tokens.weight')!)).toBeCloseTo(0.02, 3);
    expect(std(a.get('model.decoder.layers.0.fc2.weight')!)).toBeCloseTo(0.02 / Math.sqrt(6), 3);
  });

  it('the committed zoo tokenizer is a 4096-token byte-level BPE with <pad>, <s>, </s>', () => {
    const tok = ByteLevelBpe.load(path.join(repo, 'models/zoo/tokenizer'));
    expect(tok.vocabSize).toBe(4096);
    expect([tok.padId, tok.bosId, tok.eosId]).toEqual([0, 1, 2]);
    const s = 'In the beginning God created the heaven and the earth.';
    expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.encode(s).length).toBeLessThan(14); // common words are single tokens
  });

  it('lists only the zoo directories that exist', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zoo-dirs-'));
    fs.mkdirSync(path.join(root, 'opt-2m'));
    fs.writeFileSync(path.join(root, 'opt-2m', 'config.json'), '{}');
    fs.mkdirSync(path.join(root, 'llama-1m')); // no config.json
    expect(zooDirs(root).map((z) => z.name)).toEqual(['opt-2m']);
  });
});
