// Quantized kernels (lib/kernels/w8a8.ts, wq-gemm.ts, packed-linear.ts). CPU side on every run:
// INT8 packing, the activation-quantization reference against act.ts, the W8A8/weight-only
// eligibility rules. On a WebGPU adapter (lavapipe here; none in CI, where the GPU part skips
// with the reason): every small registry case with poisoned outputs, and leak checks.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { withKernels } from '../lib/kernels';
import { INT8_TILES, int8GemmSource, type Int8TileName } from '../lib/kernels/w8a8';
import { webgpuDevice } from '../lib/runtime';
import { attachPackedLinears } from '../lib/engine/inference';
import { packI8Rows, packLinears, padRowsToWords, w8a8Unsupported, weightOnlyUnsupported } from '../lib/kernels/packed-linear';
import { maxRelError } from '../lib/kernels/cases';
import { int8MatmulRef, quantizeActRef, randomI8, unpackI8, w8a8Checks, weightOnlyChecks } from '../lib/kernels/quant-cases';
import { absmaxQuantizeMatrix, actQuantDefaults, quantizeActPerToken } from '../lib/quant/act';
import { METHODS } from '../lib/methods';
import { disposeModel, loadModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { packCodes, savePacked } from '../lib/quant/pack';
import { quantizeMatrix } from '../lib/quant/quantizer';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';

describe('INT8 packing and references (CPU side)', () => {
  it('packs signed codes 4 per word, first code in the lowest byte, rows padded to 16 bytes', () => {
    const { words, kWords } = packI8Rows([1, 2, 3, 4, 5, 255, 0, 128, 129, 130], 128, 2, 5);
    expect(kWords).toBe(4);
    const bytes = new Int8Array(words.buffer);
    expect([...bytes.subarray(0, 5)]).toEqual([-127, -126, -125, -124, -123]);
    expect([...bytes.subarray(16, 21)]).toEqual([127, -128, 0, 1, 2]);
    expect(words[0]).toBe(((-124 & 0xff) << 24) | ((-125 & 0xff) << 16) | ((-126 & 0xff) << 8) | (-127 & 0xff));
    expect([...bytes.subarray(5, 16)].every((b) => b === 0)).toBe(true);
    expect(() => packI8Rows([300], 0, 1, 1)).toThrow(/outside INT8/);
  });

  it('unpackI8 inverts packI8Rows and int8MatmulRef is the integer dot product', () => {
    const a = randomI8(3, 21, 1);
    const { words, kWords } = packI8Rows(a, 0, 3, 21);
    expect([...unpackI8(words, 3, kWords, 21)]).toEqual([...a]);
    expect([...int8MatmulRef(Int8Array.from([1, -2, 3]), Int8Array.from([4, 5, -6, -128, 127, 0]), 1, 2, 3)]).toEqual([1 * 4 - 2 * 5 - 3 * 6, -128 - 254]);
  });

  it('the activation-quantization reference dequantizes to act.ts quantizeActPerToken exactly', async () => {
    const x = Float32Array.from({ length: 3 * 50 }, (_, i) => Math.sin(i * 1.3) * (i % 7) * 0.9);
    x.fill(0, 100, 150); // an all-zero row takes the 1e-5 floor
    const { codes, scales } = quantizeActRef(x, 3, 50);
    expect(scales[2]).toBe(Math.fround(Math.fround(1e-5) / 127));
    const fq = await quantizeActPerToken(tf.tensor2d(x, [3, 50])).data();
    const mismatches = [...x.keys()].filter((i) => Math.fround(codes[i] * scales[Math.floor(i / 50)]) !== fq[i]); // -0 === 0
    expect(mismatches).toEqual([]);
  });

  it('weight-only rows are pack.ts rows, padded to whole vec4 words', () => {
    const codes = Uint8Array.from({ length: 2 * 10 }, (_, i) => i % 16);
    const packed = packCodes(codes, 2, 10, 4, 'u4'); // 5 bytes per row
    const { words, rowWords } = padRowsToWords(packed, 2, 5);
    expect(rowWords).toBe(4);
    const bytes = new Uint8Array(words.buffer);
    expect([...bytes.subarray(0, 5)]).toEqual([...packed.subarray(0, 5)]);
    expect([...bytes.subarray(16, 21)]).toEqual([...packed.subarray(5, 10)]);
    expect(bytes[0]).toBe(0 | (1 << 4)); // low nibble first
  });

  it('says which matrices each kernel takes, and why not', () => {
    const W = Float32Array.from({ length: 4 * 64 }, (_, i) => Math.cos(i));
    expect(w8a8Unsupported(absmaxQuantizeMatrix(W, 4, 64))).toBeNull();
    expect(w8a8Unsupported(quantizeMatrix(W, 4, 64, { bits: 8, groupSize: -1, sym: false, groupRemainder: 'error' }))).toMatch(/asymmetric/);
    expect(weightOnlyUnsupported({ bits: 3, groupSize: 64 })).toMatch(/3-bit/);
    expect(weightOnlyUnsupported({ bits: 4, groupSize: 4 })).toMatch(/multiple of 8/);
    expect(weightOnlyUnsupported({ bits: 4, groupSize: 128, actOrder: true })).toMatch(/act-order/);
    const q = new Map([['w', quantizeMatrix(W, 4, 64, { bits: 3, groupSize: 32, sym: false, groupRemainder: 'error' })]]);
    expect(packLinears(q, null).skipped.get('w')).toMatch(/3-bit/);
    expect(packLinears(q, { ...actQuantDefaults, granularity: 'per_tensor' }).skipped.get('w')).toMatch(/per_tensor 8-bit has no kernel/);
  });
});

const reason = await webgpuAdapterReason();

/**
 * The subgroup-matrix GEMM's WGSL with its matrix types and builtins replaced by plain stand-ins
 * of the same arity (loads and stores on the same workgroup array, offsets and strides as given),
 * so that a device without subgroup matrices (lavapipe, CI) can still validate everything else the
 * generator writes: staging, launch order, epilogue, syntax.
 */
function withStandIns(code: string): string {
  const words = /var<workgroup> sm: array<i32, (\d+)>;/.exec(code)![1];
  const p = `p: ptr<workgroup, array<i32, ${words}>>`;
  return code
    .replace('enable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);', [
      `fn mLoad(${p}, off: u32, stride: u32) -> vec4<i32> { return vec4<i32>((*p)[off], (*p)[off + stride], 0, 0); }`,
      `fn mLoadB(${p}, off: u32, colMajor: bool, stride: u32) -> vec4<i32> { return select(mLoad(p, off, stride), vec4<i32>(), colMajor); }`,
      `fn mMma(l: vec4<i32>, r: vec4<i32>, acc: vec4<i32>) -> vec4<i32> { return acc + l * r; }`,
      `fn mStore(${p}, off: u32, v: vec4<i32>, stride: u32) { (*p)[off] = v.x; (*p)[off + stride] = v.y; }`,
      `fn mStoreB(${p}, off: u32, v: vec4<i32>, colMajor: bool, stride: u32) { if (!colMajor) { mStore(p, off, v, stride); } }`,
    ].join('\n'))
    .replace(/subgroup_matrix_result<i32, 16, 16>\(\)/g, 'vec4<i32>()')
    .replace(/subgroupMatrixLoad<subgroup_matrix_(left|right)<i8, \d+, \d+>, (row|col)_major>\(/g, 'mLoad(')
    .replace(/subgroupMatrixLoad<subgroup_matrix_(left|right)<i8, \d+, \d+>>\(/g, 'mLoadB(')
    .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'mMma(')
    .replace(/subgroupMatrixStore<row_major>\(/g, 'mStore(')
    .replace(/subgroupMatrixStore\(/g, 'mStoreB(');
}

describe.skipIf(reason !== null)('quantized kernels on webgpu', () => {
  it('every subgroup-matrix tiling (both builtin syntaxes) is valid WGSL once its matrix builtins are stood in for', async () => {
    const device = webgpuDevice()!;
    const sources = (Object.keys(INT8_TILES) as Int8TileName[]).flatMap((t) => (['template', 'bool'] as const).map((syntax) => ({ t, syntax, code: withStandIns(int8GemmSource(t, { syntax })) })));
    for (const { code } of sources) expect(code).not.toMatch(/subgroup_matrix|subgroupMatrix/);
    const errors: string[] = [];
    for (const { t, syntax, code } of sources) {
      device.pushErrorScope('validation');
      device.createShaderModule({ code, label: t });
      const e = await device.popErrorScope();
      if (e) errors.push(`${t} ${syntax}: ${e.message}`);
    }
    expect(errors).toEqual([]);
  });

  itPassesChecks([...w8a8Checks(TEST_SEED), ...weightOnlyChecks(TEST_SEED)]);
});

const ckpt = path.resolve(__dirname, '..', 'models/stories260K/stories260K.bin');

/** max |a − b| over two logit tensors. */
async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [x, y] = (await Promise.all([a.data(), b.data()])) as Float32Array[];
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

/** Logits of ids [1, T] without kernels, and with every kernel the policy allows. */
async function logitsBoth(model: Model, ids: tf.Tensor2D): Promise<{ plain: tf.Tensor; kernels: tf.Tensor }> {
  const plain = forward(model, ids);
  const kernels = await withKernels({ mode: 'auto' }, () => forward(model, ids, { kernels: true }));
  return { plain, kernels };
}

describe.skipIf(reason !== null)('quantized models with kernels on (stories260K)', () => {
  const ids = () => tf.tensor2d([[1, 403, 407, 261, 378, 425, 277, 261, 1144 % 512, 30, 84, 268]], [1, 12], 'int32');

  // "Within the quantization's own tolerance": the kernels may differ from the fake-quantized
  // model only by fp32 summation order (and a rare activation code at a rounding tie), far less
  // than quantization itself moves the logits away from the fp32 model.
  for (const spec of [
    { label: 'W4 g32 asym weight-only (RTN)', opts: { bits: 4, groupSize: 32, sym: false, groupRemainder: 'partial' as const }, act: false },
    { label: 'W8A8 per-channel / per-token (RTN W8 sym + per-token INT8 activations)', opts: { bits: 8, groupSize: -1, sym: true }, act: true },
  ]) {
    it(`${spec.label}: logits with kernels match the fake-quantized model's`, async () => {
      const before = tf.memory().numTensors;
      const model = await loadModel(ckpt);
      const x = ids();
      try {
        const fp32 = forward(model, x);
        const r = await METHODS.rtn.compress(model, null, spec.opts);
        if (spec.act) model.actQuant = actQuantDefaults;
        const skipped = attachPackedLinears(model, packLinears(r.quantized, model.actQuant));
        expect([...skipped]).toEqual([]);
        expect([...model.packedLinears!.values()].every((p) => p.kind === (spec.act ? 'w8a8' : 'wq'))).toBe(true);
        const { plain, kernels } = await logitsBoth(model, x);
        const quantEffect = await maxDiff(plain, fp32);
        const kernelDiff = await maxDiff(kernels, plain);
        expect(quantEffect).toBeGreaterThan(0);
        expect(kernelDiff).toBeGreaterThan(0); // the kernels ran (another summation order), not the fallback
        expect(kernelDiff).toBeLessThan(0.02 * quantEffect);
        tf.dispose([fp32, plain, kernels]);
      } finally {
        x.dispose();
        disposeModel(model);
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('a packed W4 directory loaded with packedLinears runs the kernels from its on-disk codes', async () => {
    const before = tf.memory().numTensors;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-kq-'));
    const model = await loadModel(ckpt);
    const x = ids();
    try {
      const r = await METHODS.rtn.compress(model, null, { bits: 4, groupSize: 32, groupRemainder: 'partial' });
      await savePacked(model, r.quantized, dir, { method: 'rtn', methodConfig: r.config, calib: 'none', actQuant: null });
      const loaded = await loadModel(dir, { packedLinears: true });
      try {
        expect(loaded.packedLinears!.size).toBe(r.quantized.size);
        const { plain, kernels } = await logitsBoth(loaded, x);
        const fake = forward(model, x);
        expect(await maxDiff(plain, fake)).toBe(0); // dequantized at load = the fake-quantized weights
        const err = await maxRelError(kernels, plain);
        expect(err).toBeGreaterThan(0); // the kernels ran
        expect(err).toBeLessThan(1e-4);
        tf.dispose([plain, kernels, fake]);
      } finally {
        disposeModel(loaded);
      }
    } finally {
      x.dispose();
      disposeModel(model);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
