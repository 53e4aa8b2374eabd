// Layer-level sparsity math: patterns and their errors, masks on literal inputs, magnitude /
// Wanda / SparseGPT on one matrix (exact ratios, valid N:M groups, OBS closed form, reconstruction
// error ordering), joint quantization.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { magnitudePrune } from '../lib/methods/magnitude';
import { reconstructionError, sparsegptPrune } from '../lib/methods/sparsegpt';
import { WandaLayer } from '../lib/methods/wanda';
import {
  checkPatternFits,
  countZeros,
  isValidNM,
  maskLowestGlobal,
  maskLowestPerRow,
  maskNM,
  parsePattern,
  patternLabel,
} from '../lib/quant/sparse-pattern';
import { checkLeaks, initRuntime } from '../lib/runtime';
import { mulberry32 } from '../lib/rng';

/** Deterministic normal samples (mulberry32 + Box-Muller). */
function normal(n: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  return out;
}

/** LLM-like inputs [tokens, in]: correlated channels with a few large-magnitude ones. */
function llmLikeInputs(tokens: number, inDim: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const z = tf.tensor2d(normal(tokens * inDim, seed), [tokens, inDim]);
    const mix = tf.tensor2d(normal(inDim * inDim, seed + 1), [inDim, inDim]).mul(0.3).add(tf.eye(inDim));
    const scale = tf.tensor1d(Array.from({ length: inDim }, (_, j) => (j % 7 === 0 ? 8 : 0.5 + (j % 5) * 0.3)));
    return tf.matMul(z, mix).mul(scale) as tf.Tensor2D;
  });
}

function hessianOf(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.matMul(x, x, true, false).mul(2 / x.shape[0]) as tf.Tensor2D);
}

beforeAll(async () => {
  const info = await initRuntime({ backend: 'wasm' });
  expect(info.backend).toBe('wasm');
});

describe('sparsity patterns', () => {
  it('parses ratios and N:M', () => {
    expect(parsePattern('50%')).toEqual({ kind: 'unstructured', ratio: 0.5 });
    expect(parsePattern('0.6')).toEqual({ kind: 'unstructured', ratio: 0.6 });
    expect(parsePattern(0.25)).toEqual({ kind: 'unstructured', ratio: 0.25 });
    expect(parsePattern('2:4')).toEqual({ kind: 'nm', n: 2, m: 4 });
    expect(patternLabel(parsePattern('0.5'))).toBe('50%');
    expect(patternLabel(parsePattern('4:8'))).toBe('4:8');
  });

  it('rejects ratios outside (0,1), N >= M and malformed text', () => {
    for (const bad of [0, 1, 1.5, -0.1, '0%', '100%', '150%'] as const) expect(() => parsePattern(bad)).toThrow(/must be a ratio in \(0, 1\)/);
    expect(() => parsePattern('4:2')).toThrow(/N must be smaller than M/);
    expect(() => parsePattern('4:4')).toThrow(/N must be smaller than M/);
    expect(() => parsePattern('0:4')).toThrow(/positive integers/);
    expect(() => parsePattern('half')).toThrow(/neither a ratio/);
  });

  it('rejects an N:M pattern whose M does not divide the input dimension, naming the tensor', () => {
    expect(() => checkPatternFits(parsePattern('4:8'), 172, 'model.layers.0.mlp.down_proj.weight')).toThrow(
      /4:8 does not fit 'model.layers.0.mlp.down_proj.weight': its input dimension 172 is not a multiple of 8/,
    );
    expect(() => checkPatternFits(parsePattern('2:4'), 172, 'x')).not.toThrow();
  });
});

describe('masks on literal scores', () => {
  it('global: exactly k lowest, ties in index order', () => {
    expect(Array.from(maskLowestGlobal([5, 1, 3, 1, 2, 9], 3))).toEqual([0, 1, 0, 1, 1, 0]);
    expect(Array.from(maskLowestGlobal([2, 2, 2, 2], 2))).toEqual([1, 1, 0, 0]);
  });
  it('per row', () => {
    // rows [4 3 2 1] and [1 2 3 4]: two lowest of each row
    expect(Array.from(maskLowestPerRow([4, 3, 2, 1, 1, 2, 3, 4], 2, 4, 2))).toEqual([0, 0, 1, 1, 1, 1, 0, 0]);
  });
  it('N:M over groups of M columns', () => {
    // one row, two groups of 4; 2:4 prunes the two smallest of each group
    expect(Array.from(maskNM([0.1, 5, 0.3, 2, 7, 0.2, 0.05, 3], 1, 8, 2, 4))).toEqual([1, 0, 1, 0, 0, 1, 1, 0]);
  });
});

describe('magnitude and Wanda on one matrix', () => {
  it('magnitude prunes the smallest |W| of the whole matrix', async () => {
    const w = tf.tensor2d([[1, -4, 0.5, 3], [-0.2, 2, -5, 0.1]]);
    const p = await magnitudePrune(w, parsePattern('50%'));
    expect(Array.from(p.dataSync())).toEqual([0, -4, 0, 3, 0, 2, -5, 0]);
    const p24 = await magnitudePrune(w, parsePattern('2:4'));
    expect(Array.from(p24.dataSync())).toEqual([0, -4, 0, 3, 0, 2, -5, 0]);
    tf.dispose([w, p, p24]);
  });

  it('Wanda weighs |W| by the input-channel norm and compares within each row', async () => {
    // channel norms: ‖X_0‖ = 10, ‖X_1‖ = 1, ‖X_2‖ = 1, ‖X_3‖ = 0.1
    const x = tf.tensor2d([[6, 1, 0, 0.1], [8, 0, 1, 0]]);
    const w = tf.tensor2d([[0.5, 2, 1, 3], [1, 1, 1, 1]]);
    const layer = new WandaLayer('t', 4);
    layer.addBatch(x);
    // scores row 0: 5, 2, 1, 0.3 → prune cols 2,3; row 1: 10, 1, 1, 0.1 → prune col 3 and col 1 (tie by index)
    const p = await layer.prune(w, parsePattern('0.5'));
    expect(Array.from(p.dataSync())).toEqual([0.5, 2, 0, 0, 1, 0, 1, 0]);
    // magnitude would have kept the 3 in row 0: Wanda differs
    const m = await magnitudePrune(w, parsePattern('0.5'));
    expect(m.dataSync()[3]).toBe(3);
    layer.dispose();
    tf.dispose([x, w, p, m]);
  });

  it('Wanda accumulates Σx² over batches exactly as one batch', async () => {
    const x = tf.tensor2d(normal(24 * 8, 3), [24, 8]);
    const w = tf.tensor2d(normal(6 * 8, 4), [6, 8]);
    const one = new WandaLayer('a', 8);
    one.addBatch(x);
    const two = new WandaLayer('b', 8);
    const [x1, x2] = tf.split(x, 2, 0) as tf.Tensor2D[];
    two.addBatch(x1);
    two.addBatch(x2);
    const s1 = await one.score(w);
    const s2 = await two.score(w);
    for (let i = 0; i < s1.length; i++) expect(s2[i]).toBeCloseTo(s1[i], 5);
    one.dispose();
    two.dispose();
    tf.dispose([x, w, x1, x2]);
  });
});

describe('SparseGPT on one layer', () => {
  it('OBS update on two columns matches the closed form (prune w0, w1 += w0·H01/H11)', async () => {
    const h = tf.tensor2d([[4, 1.5], [1.5, 2]]);
    const w = tf.tensor2d([[0.3, 2]]);
    // the pruned column is the one with least w²/[H⁻¹]²_jj; for this H and w it is column 0
    const r = await sparsegptPrune(w, h, { pattern: '50%', percdamp: 0, blocksize: 2 });
    const out = r.weight.dataSync();
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(2 + (0.3 * 1.5) / 2, 5);
    tf.dispose([h, w, r.weight]);
  });

  it('with H ∝ I it is magnitude pruning (no compensation possible)', async () => {
    const w = tf.tensor2d(normal(8 * 16, 7), [8, 16]);
    const h = tf.eye(16).mul(3) as tf.Tensor2D;
    const r = await sparsegptPrune(w, h, { pattern: '50%', blocksize: 128 });
    const m = await magnitudePrune(w, parsePattern('50%'));
    expect(Array.from(r.weight.dataSync())).toEqual(Array.from(m.dataSync()));
    tf.dispose([w, h, r.weight, m]);
  });

  it('exact sparsity per layer for any ratio and blocksize, every N:M group valid, no leaks', async () => {
    const rows = 12;
    const cols = 40;
    const x = llmLikeInputs(200, cols, 11);
    const h = hessianOf(x);
    const w = tf.tensor2d(normal(rows * cols, 12), [rows, cols]);
    for (const ratio of [0.3, 0.5, 0.77]) {
      for (const blocksize of [8, 16, 128]) {
        const r = await checkLeaks('sparsegpt', () => sparsegptPrune(w, h, { pattern: ratio, blocksize }), (res) => [res.weight]);
        expect(countZeros(r.weight.dataSync())).toBe(Math.floor(rows * cols * ratio));
        r.weight.dispose();
      }
    }
    for (const [n, m] of [[2, 4], [4, 8], [1, 4]]) {
      const r = await sparsegptPrune(w, h, { pattern: `${n}:${m}`, blocksize: 16 });
      const d = r.weight.dataSync();
      expect(isValidNM(d, rows, cols, n, m)).toBe(true);
      expect(countZeros(d)).toBe((rows * cols * n) / m);
      r.weight.dispose();
    }
    await expect(sparsegptPrune(w, h, { pattern: '4:8', blocksize: 12 })).rejects.toThrow(/blocksize 12 must be a multiple of M = 8/);
    const w36 = tf.tensor2d(normal(4 * 36, 1), [4, 36]);
    const h36 = tf.eye(36) as tf.Tensor2D;
    await expect(sparsegptPrune(w36, h36, { pattern: '4:8' }, 'fc.weight')).rejects.toThrow(/does not fit 'fc.weight'.*36 is not a multiple of 8/);
    tf.dispose([x, h, w, w36, h36]);
  });

  it('reconstruction error: SparseGPT < Wanda < magnitude on the same calibration inputs', async () => {
    const rows = 32;
    const cols = 64;
    const x = llmLikeInputs(512, cols, 21);
    const h = hessianOf(x);
    const w = tf.tensor2d(normal(rows * cols, 22), [rows, cols]);
    const wanda = new WandaLayer('t', cols);
    wanda.addBatch(x);
    for (const pattern of ['50%', '2:4', '4:8', '0.7']) {
      const p = parsePattern(pattern);
      const mag = await magnitudePrune(w, p);
      const wa = await wanda.prune(w, p);
      const sg = await sparsegptPrune(w, h, { pattern: p, blocksize: 16 });
      const eMag = await reconstructionError(w, mag, x);
      const eWanda = await reconstructionError(w, wa, x);
      const eSg = await reconstructionError(w, sg.weight, x);
      expect(eSg, pattern).toBeLessThan(eWanda);
      expect(eWanda, pattern).toBeLessThan(eMag);
      tf.dispose([mag, wa, sg.weight]);
    }
    wanda.dispose();
    tf.dispose([x, h, w]);
  });

  it('joint quantization keeps the zeros and puts every kept weight on its row grid', async () => {
    const rows = 6;
    const cols = 32;
    const x = llmLikeInputs(100, cols, 31);
    const h = hessianOf(x);
    const wData = normal(rows * cols, 32);
    const w = tf.tensor2d(wData, [rows, cols]);
    const r = await sparsegptPrune(w, h, { pattern: '2:4', wbits: 4, blocksize: 16 });
    const d = r.weight.dataSync();
    expect(isValidNM(d, rows, cols, 2, 4)).toBe(true);
    for (let row = 0; row < rows; row++) {
      const vals = Array.from(wData.slice(row * cols, (row + 1) * cols));
      const lo = Math.min(0, ...vals);
      const hi = Math.max(0, ...vals);
      const scale = (hi - lo) / 15;
      const zero = Math.round(-lo / scale);
      for (let c = 0; c < cols; c++) {
        const q = d[row * cols + c] / scale + zero;
        expect(Math.abs(q - Math.round(q))).toBeLessThan(1e-3);
        expect(Math.round(q)).toBeGreaterThanOrEqual(0);
        expect(Math.round(q)).toBeLessThanOrEqual(15);
      }
    }
    tf.dispose([x, h, w, r.weight]);
  });
});
