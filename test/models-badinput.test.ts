// Bad checkpoints fail loudly, naming the file and the tensor, and leave no tensor behind.
// Also: F16/BF16 storage is upcast exactly on load.
import * as tf from '@tensorflow/tfjs';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { saveModel } from '../lib/models/hf';
import { disposeModel, loadModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32, readSafetensorsHeader, readTensor, writeSafetensors } from '../lib/models/safetensors';
import { uploadSources } from '../lib/models/weights';

const repoRoot = path.resolve(__dirname, '..');
const ckpt = path.join(repoRoot, 'models/stories260K/stories260K.bin');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin');
const OPT = {
  model_type: 'opt', hidden_size: 16, ffn_dim: 24, num_hidden_layers: 2, num_attention_heads: 2, vocab_size: 300,
  max_position_embeddings: 32, do_layer_norm_before: true, activation_function: 'relu',
};

let tmp: string;
let good: string; // stories260K as an HF directory (single file)
let sharded: string; // a tiny OPT as a sharded HF directory
beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  tmp = mkdtempSync(path.join(os.tmpdir(), 'llmcb-bad-'));
  good = path.join(tmp, 'good');
  const m = await loadModel(ckpt);
  await saveModel(m, good);
  disposeModel(m);
  sharded = path.join(tmp, 'sharded');
  const o = randomModel(OPT);
  await saveModel(o, sharded, { maxShardBytes: 8_000 });
  disposeModel(o);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a directory to break. */
function copyDir(src: string, name: string): string {
  const dst = path.join(tmp, name);
  cpSync(src, dst, { recursive: true });
  return dst;
}

async function expectLoadError(dir: string, pattern: RegExp, opts: { tokenizer?: string } = {}) {
  const before = tf.memory().numTensors;
  await expect(loadModel(dir, opts)).rejects.toThrow(pattern);
  expect(tf.memory().numTensors).toBe(before); // nothing half-loaded
}

const shard = (i: number, n: number) => `model-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

describe('bad checkpoints', () => {
  it('a good directory loads (control)', async () => {
    const m = await loadModel(good);
    expect(m.weights.size).toBe(47);
    disposeModel(m);
    const o = await loadModel(sharded, { tokenizer: tokFile });
    expect(o.config.arch).toBe('opt');
    disposeModel(o);
  });

  it('missing shard: names the shard and a tensor it holds', async () => {
    const dir = copyDir(sharded, 'missing-shard');
    const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    const n = new Set(Object.values(index.weight_map)).size;
    expect(n).toBeGreaterThan(2);
    unlinkSync(path.join(dir, shard(2, n)));
    await expectLoadError(dir, new RegExp(`shard .*${shard(2, n)} is missing \\(it holds 'model\\.decoder\\.`), { tokenizer: tokFile });
  });

  it('truncated file: names the file and the tensor past the end', async () => {
    const dir = copyDir(good, 'truncated');
    const file = path.join(dir, 'model.safetensors');
    const h = readSafetensorsHeader(file);
    const last = [...h.entries].sort((a, b) => b.end - a.end)[0];
    truncateSync(file, last.end - 10);
    await expectLoadError(dir, new RegExp(`model\\.safetensors: tensor '${last.name.replace(/\./g, '\\.')}': data ends at byte ${last.end} .*truncated`));
  });

  it('header that lies about sizes: names the tensor', async () => {
    const dir = copyDir(good, 'lying');
    const file = path.join(dir, 'model.safetensors');
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    header['model.norm.weight'].shape = [65]; // 65 floats do not fit the 64-float span
    let json = JSON.stringify(header);
    json += ' '.repeat(Math.max(0, n - Buffer.byteLength(json)));
    expect(Buffer.byteLength(json)).toBe(n);
    buf.write(json, 8, 'utf8');
    writeFileSync(file, buf);
    await expectLoadError(dir, /model\.safetensors: tensor 'model\.norm\.weight': data_offsets span 256 bytes but F32 \[65\] needs 260/);
  });

  it('header length beyond the file: not a safetensors file', async () => {
    const dir = copyDir(good, 'badlen');
    const file = path.join(dir, 'model.safetensors');
    const buf = readFileSync(file);
    buf.writeBigUInt64LE(BigInt(buf.length), 0);
    writeFileSync(file, buf);
    await expectLoadError(dir, /model\.safetensors: header length \d+ exceeds the file/);
  });

  it('unknown architecture: names config.json and the model type', async () => {
    const dir = copyDir(good, 'unknown-arch');
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.model_type = 'gpt2';
    cfg.architectures = ['GPT2LMHeadModel'];
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expectLoadError(dir, /config\.json: unknown architecture model_type='gpt2' \(GPT2LMHeadModel\)/);
  });

  it('config/weights shape mismatch: names the file, tensor and both shapes', async () => {
    const dir = copyDir(good, 'mismatch');
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.intermediate_size = 100;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expectLoadError(dir, /model\.safetensors: tensor 'model\.layers\.0\.mlp\.down_proj\.weight' has shape \[64, 172\] but the config implies \[64, 100\]/);
  });

  it('a missing weight and an unexpected weight are named', async () => {
    const dir = copyDir(good, 'missing-weight');
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.num_hidden_layers = 6;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expectLoadError(dir, /missing tensor\(s\) 'model\.layers\.5\./);
    cfg.num_hidden_layers = 4;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    await expectLoadError(dir, /unexpected tensor 'model\.layers\.4\./);
  });

  it('truncated llama2.c checkpoint: names the file and sizes', async () => {
    const file = path.join(tmp, 'short.bin');
    copyFileSync(ckpt, file);
    copyFileSync(tokFile, path.join(tmp, 'tok512.bin'));
    truncateSync(file, 500_000);
    await expectLoadError(file, /short\.bin: truncated llama2\.c checkpoint: 500000 bytes, the header implies 1056540/);
  });

  it('a llama2.c checkpoint with trailing bytes loads, with a warning naming the file and the bytes', async () => {
    const file = path.join(tmp, 'long.bin');
    writeFileSync(file, Buffer.concat([readFileSync(ckpt), Buffer.alloc(12)]));
    copyFileSync(tokFile, path.join(tmp, 'tok512.bin'));
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (m: string) => warnings.push(m);
    try {
      disposeModel(await loadModel(file));
    } finally {
      console.warn = warn;
    }
    expect(warnings.some((w) => /long\.bin: 12 bytes after the weights the llama2\.c header implies \(1056540 bytes\) are ignored/.test(w))).toBe(true);
  });

  it('invalid config.json: names the file', async () => {
    const dir = copyDir(good, 'bad-json');
    writeFileSync(path.join(dir, 'config.json'), '{"model_type": "llama",');
    await expectLoadError(dir, /config\.json: invalid JSON/);
  });

  it('a read failing mid-upload disposes what was uploaded', () => {
    const before = tf.memory().numTensors;
    const ok = (name: string) => ({ name, shape: [2], origin: 'x', read: () => new Float32Array(2) });
    const bad = { name: 'b', shape: [2], origin: 'f.safetensors', read: (): Float32Array => { throw new Error('f.safetensors: I/O error'); } };
    expect(() => uploadSources([ok('a'), ok('c'), bad])).toThrow(/I\/O error/);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => uploadSources([ok('a'), ok('a')])).toThrow(/x: tensor 'a' given twice/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('fp16 / bf16 storage', () => {
  it('converts exactly on literal values', () => {
    const x = Float32Array.from([0, -0, 1, -2.5, 65504, 1e-7, 70000, 0.1]);
    // f16: 1e-7 is subnormal (rounds to 2 × 2^-24), 70000 overflows to Inf, 0.1 rounds to 0.0999755859375
    expect([...f16ToF32(f32ToF16(x))]).toEqual([0, -0, 1, -2.5, 65504, 2 ** -23, Infinity, 0.0999755859375]);
    expect([...bf16ToF32(f32ToBf16(Float32Array.from([1, 0.1, -3.140625])))]).toEqual([1, 0.10009765625, -3.140625]);
  });

  it('F16 and BF16 tensors load upcast to fp32', () => {
    const file = path.join(tmp, 'mixed.safetensors');
    const data = Float32Array.from([1, 0.1, -2.5, 3.3]);
    writeSafetensors(file, [
      { name: 'h', shape: [2, 2], chunks: () => [data], dtype: 'F16' },
      { name: 'b', shape: [4], chunks: () => [data], dtype: 'BF16' },
      { name: 'f', shape: [4], chunks: () => [data] },
    ]);
    const h = readSafetensorsHeader(file);
    expect(h.entries.map((e) => [e.name, e.dtype, e.end - e.begin])).toEqual([['h', 'F16', 8], ['b', 'BF16', 8], ['f', 'F32', 16]]);
    const get = (n: string) => [...readTensor(file, h.entries.find((e) => e.name === n)!)];
    expect(get('h')).toEqual([...f16ToF32(f32ToF16(data))]);
    expect(get('b')).toEqual([...bf16ToF32(f32ToBf16(data))]);
    expect(get('f')).toEqual([...data]);
  });
});
