// llama2.c tokenizer and checkpoint reader: exact ids on tiny strings, the full WikiText-2 test
// encoding against the reference ids, and the checkpoint equal to the shared HF conversion.
import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { loadHfDir } from '../lib/models/hf';
import { loadLlama2c, readLlama2cHeader } from '../lib/models/llama2c';
import { Llama2cTokenizer } from '../lib/models/tokenizer-llama2c';
import { permuteRopeRows } from '../lib/models/weights';

const repoRoot = path.resolve(__dirname, '..');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const ckpt = path.join(repoRoot, 'models/stories260K/stories260K.bin');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin');
const hasShared = existsSync(path.join(shared, 'reference/stories260K'));
if (!hasShared) console.warn(`skipping shared-data tests: ${shared}/reference/stories260K not found (set LLMCB_SHARED)`);

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('llama2.c tokenizer', () => {
  const tok = Llama2cTokenizer.fromFile(tokFile, 512);

  it('encodes with the dummy prefix, merges and BOS', () => {
    expect(tok.encode('Once upon a time', { bos: true })).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('', { bos: true })).toEqual([1]);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
  });

  it('falls back to <0xNN> byte tokens (id = byte + 3 in tok512) for unknown code points', () => {
    const ids = tok.encode('a☃b'); // U+2603 = E2 98 83 is not a piece of tok512; ' a' and 'b' are
    expect(ids).toEqual([261, 0xe2 + 3, 0x98 + 3, 0x83 + 3, 430]);
    expect(tok.decode(ids)).toBe('a☃b');
  });

  it('decode inverts encode (dummy space dropped, BOS/EOS skipped)', () => {
    for (const s of ['Once upon a time', 'Hello, world!\n\n = Title = \n', 'naïve café ☃ 日本']) {
      expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
    }
    expect(tok.decode([1, 403, 407, 261, 378, 2])).toBe('Once upon a time');
  });

  it('round-trips its file format', () => {
    const again = new Llama2cTokenizer([...tok.pieces], tok.scores);
    expect(Buffer.compare(again.toBinary(), readFileSync(tokFile))).toBe(0);
  });

  it.skipIf(!hasShared)('reproduces the reference WikiText-2 test ids exactly, fast', () => {
    const raw = readFileSync(path.join(shared, 'datasets/wikitext-2-raw/wiki.test.raw'), 'utf8');
    const lines = raw.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    expect(lines.length).toBe(4358);
    const ref = JSON.parse(readFileSync(path.join(shared, 'reference/stories260K/wikitext2_test_tok512.json'), 'utf8')).test_ids as number[];
    const t0 = performance.now();
    const ids = tok.encode(lines.join('\n\n'));
    const ms = performance.now() - t0;
    expect(ids.length).toBe(813645);
    expect(ids.length).toBe(ref.length);
    let firstDiff = -1;
    for (let i = 0; i < ids.length && firstDiff < 0; i++) if (ids[i] !== ref[i]) firstDiff = i;
    expect(firstDiff).toBe(-1);
    expect(ms).toBeLessThan(30_000);
  });
});

describe('llama2.c checkpoint', () => {
  it('reads the header', () => {
    expect(readLlama2cHeader(ckpt)).toEqual({
      dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true,
    });
  });

  it('permutes interleaved RoPE rows to the half-split layout', () => {
    // one head of 4 rows (pairs (0,1), (2,3)) × 1 column: HF order is rows 0, 2, 1, 3
    expect([...permuteRopeRows(Float32Array.from([10, 11, 12, 13]), 1, 4, 1)]).toEqual([10, 12, 11, 13]);
    // two heads of 2 rows each keep their rows
    expect([...permuteRopeRows(Float32Array.from([1, 2, 3, 4]), 2, 2, 1)]).toEqual([1, 2, 3, 4]);
  });

  it('loads with HF names and shapes, leaving nothing behind after dispose', () => {
    const before = tf.memory().numTensors;
    const m = loadLlama2c(ckpt);
    expect(m.weights.size).toBe(1 + 5 * 9 + 1);
    expect(m.weights.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([32, 64]);
    expect(m.weights.has('lm_head.weight')).toBe(false); // tied
    expect(m.config.tieWordEmbeddings).toBe(true);
    for (const t of m.weights.values()) t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.skipIf(!hasShared)('equals the shared HF conversion tensor for tensor', () => {
    const a = loadLlama2c(ckpt);
    const b = loadHfDir(path.join(shared, 'reference/stories260K/hf'), { tokenizer: tokFile });
    expect([...a.weights.keys()].sort()).toEqual([...b.weights.keys()].sort());
    for (const [k, t] of a.weights) {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(t, b.weights.get(k)!))).dataSync()[0]);
      expect(d, k).toBe(0);
    }
    for (const m of [a, b]) for (const t of m.weights.values()) t.dispose();
  });
});
