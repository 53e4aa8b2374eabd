// The k-lowest selection under magnitude, Wanda and SparseGPT masks (lib/quant/sparse-pattern.ts):
// quickselect gives exactly the entries a full sort does (threshold = k-th smallest, ties in index order).
import { describe, expect, it } from 'vitest';
import { kthSmallest, maskLowestGlobal, maskLowestPerRow } from '../lib/quant/sparse-pattern';

/** The sort-based definition. */
function bySort(score: ArrayLike<number>, start: number, len: number, k: number, mask: Uint8Array): void {
  const order = Array.from({ length: len }, (_, j) => j).sort((a, b) => score[start + a] - score[start + b] || a - b);
  for (let j = 0; j < Math.min(k, len); j++) mask[start + order[j]] = 1;
}

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('k-lowest selection', () => {
  it('kthSmallest is the k-th value of the sorted array, ties and duplicates included', () => {
    const r = lcg(1);
    for (const n of [1, 2, 3, 10, 257, 5000]) {
      const a = Float64Array.from({ length: n }, () => Math.floor(r() * 7) - 3 + (r() < 0.5 ? r() : 0));
      const sorted = Float64Array.from(a).sort();
      for (const k of [0, n >> 1, n - 1]) expect(kthSmallest(Float64Array.from(a), k)).toBe(sorted[k]);
    }
  });

  it('global and per-row masks equal the sort-based masks on scores with many ties', () => {
    const r = lcg(7);
    const rows = 13;
    const cols = 301;
    const score = Float32Array.from({ length: rows * cols }, () => (r() < 0.3 ? 0 : Math.floor(r() * 50) / 10));
    for (const k of [0, 1, 1000, 1957, rows * cols - 1, rows * cols]) {
      const want = new Uint8Array(rows * cols);
      bySort(score, 0, rows * cols, k, want);
      expect(maskLowestGlobal(score, k)).toEqual(want);
    }
    for (const k of [0, 5, 150, 300, 301]) {
      const want = new Uint8Array(rows * cols);
      for (let i = 0; i < rows; i++) bySort(score, i * cols, cols, k, want);
      expect(maskLowestPerRow(score, rows, cols, k)).toEqual(want);
    }
  });
});
