// Shared pieces of the benchmark scripts: repeated timing with medians, seeded host data,
// and the bench CSV writer (data/bench/*.csv are benchmark tables, not result rows).
import { formatCsv } from '../csv';
import { mulberry32 } from '../rng';
import { writeFileAtomic } from '../results';
import { timeRegion } from './probes';

export interface RepeatOptions {
  warmup: number; // untimed runs first: shader compilation and buffer pools stay out of the numbers
  repeats: number; // timed runs; the median is reported
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  repeats: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs fn warmup + repeats times, each timed with the device synchronised around it. */
export async function timeRepeated(fn: () => unknown, opts: RepeatOptions): Promise<Timing> {
  for (let i = 0; i < opts.warmup; i++) await timeRegion(fn);
  const ms: number[] = [];
  for (let i = 0; i < opts.repeats; i++) ms.push((await timeRegion(fn)).ms);
  return { medianMs: median(ms), minMs: Math.min(...ms), maxMs: Math.max(...ms), repeats: opts.repeats };
}

/** Deterministic standard-normal samples (mulberry32 + Box-Muller), so every run times the same data. */
export function seededNormal(n: number, seed: number, scale = 1): Float32Array {
  const uniform = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const th = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(th) * scale;
    if (i + 1 < n) out[i + 1] = r * Math.sin(th) * scale;
  }
  return out;
}

/** Writes a benchmark table atomically (replacing the previous run's table). */
export function writeBenchCsv(file: string, rows: Record<string, string | number | boolean | null>[]): void {
  if (rows.length === 0) throw new Error(`${file}: no benchmark rows to write`);
  const header = Object.keys(rows[0]);
  writeFileAtomic(file, formatCsv(header, rows.map((r) => header.map((h) => (r[h] === null ? '' : String(r[h]))))));
}
