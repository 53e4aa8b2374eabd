// The engine interface of Track 5: prepare a (compressed) model for an inference engine, then
// measure it at stated settings. Speeds are medians over repeats with their spread; a missing
// engine is an EngineNotRun error that the runner turns into a "not run: reason" row.
import type { MetricName } from '../../metrics/catalogue';
import type { CompressResult } from '../../methods/types';
import type { InferenceModel } from '../../engine/inference';
import { mulberry32 } from '../../rng';

export interface BenchSettings {
  promptTokens: number; // prompt length in tokens (prefill)
  newTokens: number; // tokens generated after the prompt (decode; EOS does not stop it)
  batch: number; // sequences run together (llama.cpp: sequences of one context; http: concurrent requests)
  warmup: number; // untimed runs first (kernel compilation, buffer pools, caches), for at least WARMUP_MIN_MS in all
  repeats: number; // timed runs; medians and spread are over these
  seed: number; // seed of the synthetic prompt token ids
}

export const benchDefaults: BenchSettings = {
  promptTokens: 128, // a short prompt; the paper's engines are measured at fixed prompt/output lengths
  newTokens: 64, // enough decode steps for a stable tokens/s
  batch: 1, // single-stream latency, the common local deployment case
  warmup: 1, // one untimed run compiles shaders / fills pools
  repeats: 5, // median of five
  seed: 0, // same prompt ids in every engine
};

/**
 * The least warm-up time, when warm-up runs are asked. A fast engine's one run (a tiny model
 * decodes 64 tokens in ~20 ms) may end before the JavaScript JIT has optimised the host loop and an
 * idle GPU is back at its sustained clocks: the first model measured in a fresh process decoded at
 * ~40% of its compressed variants' speed (H100, 5340519). With it, cells still spread 1.5-2x
 * between runs of the same compute (d9fd61c's rows): tiny models' decode is host-bound.
 */
export const WARMUP_MIN_MS = 1000;

/**
 * Runs `once` untimed until `warmup` runs are done and WARMUP_MIN_MS have passed (no warm-up at all
 * when warmup is 0), then `repeats` times; returns the timed runs' results.
 */
export async function warmThenTime<T>(settings: Pick<BenchSettings, 'warmup' | 'repeats'>, once: () => Promise<T>): Promise<T[]> {
  // A full collection first where the process allows it (cell processes run with --expose-gc), so
  // that the garbage of what ran before (a compression's tensors) is not collected while timing.
  (globalThis as { gc?: () => void }).gc?.();
  const t0 = performance.now();
  for (let r = 0; r < settings.warmup || (settings.warmup > 0 && performance.now() - t0 < WARMUP_MIN_MS); r++) await once();
  const runs: T[] = [];
  for (let r = 0; r < settings.repeats; r++) runs.push(await once());
  return runs;
}

export function checkSettings(s: BenchSettings): void {
  for (const k of ['promptTokens', 'newTokens', 'batch', 'repeats'] as const) {
    if (!Number.isInteger(s[k]) || s[k] < 1) throw new Error(`bench settings: ${k} must be a positive integer, got ${s[k]}`);
  }
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new Error(`bench settings: warmup must be a non-negative integer, got ${s.warmup}`);
  if (s.newTokens < 2) throw new Error('bench settings: newTokens must be at least 2 (decode speed needs tokens after the first)');
}

/** A median with its spread over the timed repeats. */
export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Standard error of the mean (sample sd / √n); null for one repeat. */
  stderr: number | null;
  n: number;
}

export function stat(xs: readonly number[]): Stat {
  if (xs.length === 0) throw new Error('stat of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const sd = s.length > 1 ? Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / (s.length - 1)) : null;
  return { median, min: s[0], max: s[s.length - 1], stderr: sd === null ? null : sd / Math.sqrt(s.length), n: s.length };
}

/** One timed run: when each sequence's first token arrived and when the last one did (ms from start). */
export interface RunTiming {
  /** Time to the first new token of the slowest sequence (the whole prompt batch prefilled). */
  ttftMs: number;
  /** Time to the last token of every sequence. */
  totalMs: number;
  /** New tokens received per sequence (each must equal newTokens). */
  tokens: number[];
  /** Gaps between consecutive tokens of each stream (ms), for inter-token latency. */
  gapsMs: number[];
}

export interface EngineMeasurement {
  prefillTokPerS: Stat; // batch × prompt tokens / time to first token
  decodeTokPerS: Stat; // batch × (new − 1) tokens / (total − time to first token)
  ttftMs: Stat;
  /** Median inter-token latency per stream (ms). */
  itlMs: Stat;
  /** All tokens (prompt + new, all sequences) per second of the whole run. */
  throughputTokPerS: Stat;
  /** Peak memory of the measured runs in bytes, and what was measured; null when unknown. */
  peakMemoryBytes: number | null;
  memoryWhat: string;
  settings: BenchSettings;
  /** Facts a reader needs (format, conversion, fallbacks), for the row's note: the prepared model's notes first, then the measurement's. */
  notes: string[];
}

/** One catalogue metric of a measurement: its median (or single value), standard error and count. */
export interface MeasuredMetric {
  metric: MetricName<5>;
  value: number;
  stderr: number | null;
  n: number;
  /** Spread over the repeats; null for a single value (peak memory). */
  min: number | null;
  max: number | null;
}

/** The Track 5 metrics of a measurement, named by the metric catalogue (peak memory only when known). */
export function measuredMetrics(m: EngineMeasurement): MeasuredMetric[] {
  const stat = (metric: MetricName<5>, st: Stat): MeasuredMetric => ({ metric, value: st.median, stderr: st.stderr, n: st.n, min: st.min, max: st.max });
  const out = [
    stat('prefill_tok_per_s', m.prefillTokPerS),
    stat('decode_tok_per_s', m.decodeTokPerS),
    stat('throughput_tok_per_s', m.throughputTokPerS),
    stat('ttft_ms', m.ttftMs),
    stat('itl_ms', m.itlMs),
  ];
  if (m.peakMemoryBytes !== null) out.push({ metric: 'peak_memory_bytes', value: m.peakMemoryBytes, stderr: null, n: m.settings.repeats, min: null, max: null });
  return out;
}

/** A model handed to an engine: the kit model (weights already compressed) and what compressed it. */
export interface EngineInput {
  model: InferenceModel;
  /** The method's result (integer codes, config), null for the dense model. */
  compress: CompressResult | null;
  /** Method name for rows ('dense', 'gptq', …). */
  method: string;
  /** Sparse models: the engine runs them dense (no sparse kernels). */
  sparse: boolean;
}

export interface Prepared {
  /** Format actually run, e.g. 'GGUF Q4_0 (codes)', 'fp32 tfjs webgpu'. */
  format: string;
  notes: string[];
  dispose(): Promise<void>;
}

export interface Engine<P extends Prepared = Prepared> {
  /** Engine name for rows ('llama.cpp', 'webgpu', 'vllm', …). */
  readonly name: string;
  /** Device in words, for rows. */
  readonly device: string;
  prepare(input: EngineInput): Promise<P>;
  measure(prepared: P, settings: BenchSettings): Promise<EngineMeasurement>;
  dispose(): Promise<void>;
}

/** The engine cannot run here (no device, no server, a file it refuses): becomes a not_run row. */
export class EngineNotRun extends Error {
  constructor(
    readonly engine: string,
    readonly reason: string,
  ) {
    super(`${engine}: not run: ${reason}`);
    this.name = 'EngineNotRun';
  }
}

/** Deterministic prompt token ids in [lo, vocab) (mulberry32), so every engine sees the same prompt. */
export function promptIds(n: number, vocab: number, seed: number, lo = 3): number[] {
  const u = mulberry32(seed);
  return Array.from({ length: n }, () => lo + Math.floor(u() * (vocab - lo)));
}

/** A run's timing from each sequence's token arrival times (ms from the run's start). */
export function timingOf(perSequence: number[][]): RunTiming {
  return {
    ttftMs: Math.max(...perSequence.map((ts) => ts[0])),
    totalMs: Math.max(...perSequence.map((ts) => ts[ts.length - 1])),
    tokens: perSequence.map((ts) => ts.length),
    gapsMs: perSequence.flatMap((ts) => ts.slice(1).map((t, i) => t - ts[i])),
  };
}

/** Builds the measurement from timed runs. */
export function summarize(runs: RunTiming[], settings: BenchSettings, peakMemoryBytes: number | null, memoryWhat: string, notes: string[]): EngineMeasurement {
  const { promptTokens: P, newTokens: N, batch: B } = settings;
  for (const r of runs) {
    if (r.tokens.length !== B || r.tokens.some((t) => t !== N)) throw new Error(`engine returned ${r.tokens.join('/')} new tokens per sequence, ${N} were requested`);
    if (!(r.ttftMs > 0) || !(r.totalMs > r.ttftMs)) throw new Error(`engine timings out of order: ttft ${r.ttftMs} ms, total ${r.totalMs} ms`);
  }
  const median = (xs: number[]) => stat(xs).median;
  return {
    prefillTokPerS: stat(runs.map((r) => (B * P) / (r.ttftMs / 1000))),
    decodeTokPerS: stat(runs.map((r) => (B * (N - 1)) / ((r.totalMs - r.ttftMs) / 1000))),
    ttftMs: stat(runs.map((r) => r.ttftMs)),
    itlMs: stat(runs.map((r) => median(r.gapsMs))),
    throughputTokPerS: stat(runs.map((r) => (B * (P + N)) / (r.totalMs / 1000))),
    peakMemoryBytes,
    memoryWhat,
    settings,
    notes,
  };
}

/** Samples a number (RSS, VRAM used) every `ms` while fn runs; returns fn's result and the peak. */
export async function samplePeak<T>(probe: () => number | Promise<number>, fn: () => Promise<T>, ms = 20): Promise<{ result: T; peak: number }> {
  let peak = await probe();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    Promise.resolve(probe())
      .then((v) => {
        peak = Math.max(peak, v);
      })
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, ms);
  try {
    const result = await fn();
    peak = Math.max(peak, await probe());
    return { result, peak };
  } finally {
    clearInterval(timer);
  }
}
