// Statistics of the evaluator: seeded sampling, standard errors (lm-eval's sample-stddev stderr of
// a mean, which for 0/1 scores is the binomial sqrt(p(1-p)/(n-1))), and a per-window bootstrap
// for perplexity.

import { mulberry32 } from '../rng';

/** The kit's seeded PRNG in [0, 1) (lib/rng.ts). */
export const rng = mulberry32;

/** Indices of a seeded random subset of size limit from [0, n), in increasing order; all of them when limit is null or ≥ n. */
export function subsample(n: number, limit: number | null, seed: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  if (limit === null || limit >= n) return all;
  if (!(Number.isInteger(limit) && limit >= 1)) throw new Error(`limit ${limit} must be a positive integer`);
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, limit).sort((a, b) => a - b);
}

/** Mean and its standard error (sample stddev / sqrt(n)); stderr is null for fewer than 2 values. */
export function meanStderr(xs: readonly number[]): { mean: number; stderr: number | null; n: number } {
  const n = xs.length;
  if (n === 0) throw new Error('meanStderr: no values');
  let s = 0;
  for (const x of xs) s += x;
  const mean = s / n;
  if (n < 2) return { mean, stderr: null, n };
  let v = 0;
  for (const x of xs) v += (x - mean) ** 2;
  return { mean, stderr: Math.sqrt(v / (n - 1) / n), n };
}

/** Perplexity of windows: exp(total NLL / total predicted tokens). */
export function perplexity(nll: readonly number[], count: readonly number[]): number {
  let a = 0;
  let c = 0;
  for (let i = 0; i < nll.length; i++) {
    a += nll[i];
    c += count[i];
  }
  if (c === 0) throw new Error('perplexity: no predicted tokens');
  return Math.exp(a / c);
}

/** Standard error of the perplexity by resampling windows with replacement (seeded); null for < 2 windows. */
export function bootstrapPplStderr(nll: readonly number[], count: readonly number[], resamples: number, seed: number): number | null {
  const n = nll.length;
  if (n < 2 || resamples < 2) return null;
  const r = rng(seed);
  const ppls: number[] = [];
  for (let b = 0; b < resamples; b++) {
    let a = 0;
    let c = 0;
    for (let i = 0; i < n; i++) {
      const j = Math.floor(r() * n);
      a += nll[j];
      c += count[j];
    }
    ppls.push(Math.exp(a / c));
  }
  const m = ppls.reduce((s, x) => s + x, 0) / resamples;
  return Math.sqrt(ppls.reduce((s, x) => s + (x - m) ** 2, 0) / (resamples - 1));
}
