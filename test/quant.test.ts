// Weight quantizer math: literal cases, round trips and error bounds per bit width, config errors.
import { describe, expect, it } from 'vitest';
import {
  QuantConfigError, awqFakeQuantize, awqQuantizeMatrix, checkWeightSpec, quantCode, dequantizeMatrix, findParams, quantizeMatrix, roundHalfEven, weightQuantDefaults,
} from '../lib/quant/quantizer';
import { absmaxQuantizeWeight } from '../lib/quant/act';

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function gaussian(n: number, seed: number): Float32Array {
  const r = lcg(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

describe('quantizer', () => {
  it('rounds half to even like torch.round', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -3]);
  });
  it('literal 2-bit asymmetric case (GPTQ Quantizer)', () => {
    // xmin -1, xmax 2 → scale 1, zero 1; 0.5 rounds to even 0.
    const q = quantizeMatrix([-1, 0.5, 1, 2], 1, 4, { ...weightQuantDefaults, bits: 2 });
    expect(Array.from(q.codes)).toEqual([0, 1, 2, 3]);
    expect(Array.from(q.scales)).toEqual([1]);
    expect(Array.from(q.zeros)).toEqual([1]);
    expect(Array.from(dequantizeMatrix(q))).toEqual([-1, 0, 1, 2]);
  });
  it('includes 0 in the range and handles an all-zero row', () => {
    expect(findParams(1, 3, 2, false)).toEqual({ scale: 1, zero: 0 }); // min clamped to 0
    expect(findParams(0, 0, 4, false)).toEqual({ scale: Math.fround(2 / 15), zero: 7 }); // range [-1, 1]; 1/scale = 7.4999997
  });
  it('symmetric mode puts zero at the middle code', () => {
    const p = findParams(-3, 1, 4, true);
    expect(p.zero).toBe(8);
    expect(p.scale).toBe(Math.fround(6 / 15));
  });
  for (const bits of [8, 4, 3, 2]) {
    for (const groupSize of [-1, 32]) {
      it(`round trip W${bits} g${groupSize}: |w - q| <= scale/2, codes in range, requantizing is exact`, () => {
        const rows = 16, cols = 64;
        const W = gaussian(rows * cols, bits * 100 + groupSize);
        const spec = { ...weightQuantDefaults, bits, groupSize };
        const q = quantizeMatrix(W, rows, cols, spec);
        const D = dequantizeMatrix(q);
        const ng = groupSize === -1 ? 1 : cols / groupSize;
        const gs = groupSize === -1 ? cols : groupSize;
        let worst = 0;
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
          const s = q.scales[r * ng + Math.floor(c / gs)];
          expect(q.codes[r * cols + c]).toBeLessThanOrEqual(2 ** bits - 1);
          worst = Math.max(worst, Math.abs(W[r * cols + c] - D[r * cols + c]) / s);
        }
        expect(worst).toBeLessThanOrEqual(0.5 + 1e-5);
        // Dequantized values lie on the grid: quantizing them again with the same params is the identity.
        let mismatched = 0;
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
          const g = r * ng + Math.floor(c / gs);
          if (quantCode(D[r * cols + c], q.scales[g], q.zeros[g], bits) !== q.codes[r * cols + c]) mismatched++;
        }
        expect(mismatched).toBe(0);
        // Relative error shrinks with bits: ~ range / 2^bits.
        let se = 0, sw = 0;
        for (let i = 0; i < W.length; i++) { se += (W[i] - D[i]) ** 2; sw += W[i] ** 2; }
        const rel = Math.sqrt(se / sw);
        const bound = { 8: 0.01, 4: 0.15, 3: 0.3, 2: 0.65 }[bits]!;
        expect(rel).toBeLessThan(bound);
      });
    }
  }
  it('groups beat per-channel at 4 bits on the same matrix', () => {
    const W = gaussian(32 * 128, 7);
    const err = (g: number) => {
      const D = dequantizeMatrix(quantizeMatrix(W, 32, 128, { ...weightQuantDefaults, bits: 4, groupSize: g }));
      return W.reduce((a, w, i) => a + (w - D[i]) ** 2, 0);
    };
    expect(err(32)).toBeLessThan(err(-1));
  });
  it('rejects bad configurations with a clear error', () => {
    expect(() => checkWeightSpec({ ...weightQuantDefaults, bits: 9 })).toThrow(/bits must be an integer in 1..8, got 9/);
    expect(() => checkWeightSpec({ ...weightQuantDefaults, groupSize: 0 })).toThrow(QuantConfigError);
    expect(() => checkWeightSpec({ ...weightQuantDefaults, groupSize: 32 }, 172, 'down')).toThrow(/down: group size 32 does not divide the input dimension 172/);
    expect(() => checkWeightSpec({ ...weightQuantDefaults, groupSize: 32, groupRemainder: 'partial' }, 172)).not.toThrow();
  });
  it('partial last group: 172 columns in groups of 32 → 6 groups, the last of 12', () => {
    const W = gaussian(2 * 172, 3);
    const q = quantizeMatrix(W, 2, 172, { ...weightQuantDefaults, bits: 4, groupSize: 32, groupRemainder: 'partial' });
    expect(q.scales.length).toBe(12);
  });
  it("AWQ's one-pass fake quantization equals dequantizing its codes, bit for bit (partial last group, per channel, 3/4/8 bits)", () => {
    const W = gaussian(24 * 172, 7).map((x, i) => (i % 37 === 0 ? 0 : x * 0.05)); // zeros and ties included
    for (const spec of [
      { ...weightQuantDefaults, bits: 4, groupSize: 32, groupRemainder: 'partial' as const },
      { ...weightQuantDefaults, bits: 3, groupSize: -1 },
      { ...weightQuantDefaults, bits: 8, groupSize: 86 },
    ]) {
      const want = dequantizeMatrix(awqQuantizeMatrix(W, 24, 172, spec));
      const got = awqFakeQuantize(W, 24, 172, spec);
      expect(Array.from(got)).toEqual(Array.from(want));
      expect(new Set(got).size).toBeLessThan(new Set(W).size); // quantized: fewer distinct values
    }
    expect(() => awqFakeQuantize(W, 24, 172, { ...weightQuantDefaults, bits: 4, groupSize: -1, sym: true })).toThrow(/asymmetric/);
  });
  it('absmax int8 weight quantization (SmoothQuant) literal', () => {
    // max 127 → scale 1: values round half to even
    expect(Array.from(absmaxQuantizeWeight([127, 0.5, 1.5, -2.5], 1, 4))).toEqual([127, 0, 2, -2]);
  });
});
