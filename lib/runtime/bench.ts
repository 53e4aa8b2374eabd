// Shared pieces of the benchmark scripts: repeated timing with medians, seeded host data,
// and the bench CSV writer (data/bench/*.csv are benchmark tables, not result rows).
import * as tf from '@tensorflow/tfjs';
import { formatCsv } from '../csv';
import { mulberry32 } from '../rng';
import { writeFileAtomic } from '../results';
import { webgpuAdapterInfo, webgpuDevice } from './backend';
import { ClockHold } from './clock-hold';
import { syncDevice, timeRegion } from './probes';

export interface RepeatOptions {
  warmup: number; // untimed runs first: shader compilation and buffer pools stay out of the numbers
  repeats: number; // timed runs; the median is reported
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  repeats: number;
  inner?: number; // calls per timed run (timeRecorded): the times above are per call
  recordMs?: number; // median host time to record one call (timeRecorded): above medianMs, the host is the bottleneck
  note?: string;
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

/** The parts of tfjs-webgpu's backend (4.22) that timeRecorded drives. */
interface RecordingBackend {
  submitQueue(): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  commandEncoder: GPUCommandEncoder;
}

const BATCH_FLAG = 'WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE';

/** GPU time of the hold a timed run starts with (ClockHold); lengthened while the GPU idles before the work, up to HOLD_MAX_MS. */
const HOLD_MS = 20;
const HOLD_MAX_MS = 500;
/** Idle time between the hold and the timed work above which the next hold is lengthened (ms). */
const GAP_MS = 0.05;

/** The clock hold of timed runs on this device: none on a software adapter (no clocks to hold) or without timestamp queries. */
async function holdFor(device: GPUDevice): Promise<ClockHold | null> {
  return webgpuAdapterInfo()?.isFallbackAdapter ? null : ClockHold.for(device);
}

/**
 * Device time of work recorded straight into a WebGPU encoder (the engine's programs, outside
 * tfjs), per repetition: `record` writes `inner` repetitions into one encoder, which is submitted
 * right behind a clock hold and timed on the GPU between markers around the work (as timeRecorded),
 * so the clock is sustained and the host's submit and completion latencies stay outside. Without a
 * hold (software adapter, no timestamp queries) it is the wall time from submit to completion.
 * `held` says which.
 */
export async function timeEncoded(device: GPUDevice, record: (enc: GPUCommandEncoder) => void, inner: number): Promise<{ ms: number; held: boolean }> {
  const hold = await holdFor(device);
  const enc = device.createCommandEncoder();
  hold?.open(enc);
  record(enc);
  hold?.close(enc);
  const work = enc.finish(); // recorded before the hold starts: the work queues right behind it
  await device.queue.onSubmittedWorkDone();
  hold?.hold(HOLD_MS);
  const t0 = performance.now();
  device.queue.submit([work]);
  await device.queue.onSubmittedWorkDone();
  const wallMs = performance.now() - t0;
  return { ms: (hold ? (await hold.stamps()).ms : wallMs) / inner, held: hold !== null };
}

/**
 * Device time per call of fn: `inner` calls are recorded into one command buffer (tfjs's
 * deferred-submit batch raised so that nothing is submitted meanwhile), submitted, and timed on the
 * GPU between timestamps recorded before and after the calls in the same encoder (ClockHold), so
 * that neither the host's submit nor its completion wait counts; divided by inner. Each run starts
 * with the GPU busy (the clock hold, submitted before the recording), so that the calls run at
 * sustained clocks, as inside a forward pass, not at the clock a host pause left. Back-to-back calls
 * without a host round trip each: what a short, memory-bound kernel costs inside a forward pass,
 * where timeRepeated would measure one submit-and-wait (~50–80 µs on the H200) instead. If anything
 * submitted during the recording (a tfjs op reading back), the span between the markers includes
 * the host, and the note says so. On a software adapter or without timestamp queries the clock runs
 * from the submit to the queue's completion (no hold). Off webgpu it is timeRepeated over inner calls.
 */
export async function timeRecorded(fn: () => unknown, opts: RepeatOptions & { inner: number }): Promise<Timing> {
  const inner = opts.inner;
  if (!(Number.isInteger(inner) && inner >= 1)) throw new Error(`timeRecorded: inner ${inner} is not a positive integer`);
  if (!webgpuDevice()) {
    const t = await timeRepeated(() => {
      for (let i = 0; i < inner; i++) fn();
    }, opts);
    return { ...t, medianMs: t.medianMs / inner, minMs: t.minMs / inner, maxMs: t.maxMs / inner, inner };
  }
  const b = tf.backend() as unknown as RecordingBackend;
  const env = tf.env();
  const batch = env.get(BATCH_FLAG) as number;
  const submit = b.submitQueue;
  const hold = await holdFor(webgpuDevice()!);
  let holdMs = HOLD_MS;
  let submits = 0;
  let mixed = false;
  let gaps = 0;
  // The markers go into tfjs's own encoder around the calls: one submit holds them and the work.
  const marker = (mark: (enc: GPUCommandEncoder) => void) => {
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    mark(b.commandEncoder);
  };
  const once = async (): Promise<{ ms: number; recordMs: number }> => {
    await syncDevice();
    submits = 0;
    if (hold) {
      hold.hold(holdMs);
      marker((enc) => hold.open(enc));
    }
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    const t1 = performance.now();
    if (hold) marker((enc) => hold.close(enc));
    await syncDevice();
    const t2 = performance.now();
    const early = submits > 1; // syncDevice's own submit is the one expected
    mixed ||= early;
    if (!hold) return { ms: (early ? t2 - t0 : t2 - t1) / inner, recordMs: (t1 - t0) / inner };
    const g = await hold.stamps();
    if (g.gapMs > GAP_MS) {
      gaps++;
      holdMs = Math.min(HOLD_MAX_MS, Math.max(1.5 * holdMs, 1.5 * (t1 - t0) + 5));
    }
    return { ms: g.ms / inner, recordMs: (t1 - t0) / inner };
  };
  env.set(BATCH_FLAG, Number.MAX_SAFE_INTEGER);
  b.submitQueue = function (this: RecordingBackend) {
    submits++;
    submit.call(this);
  };
  try {
    for (let i = 0; i < opts.warmup; i++) await once();
    mixed = false;
    gaps = 0;
    const runs: { ms: number; recordMs: number }[] = [];
    for (let i = 0; i < opts.repeats; i++) runs.push(await once());
    const ms = runs.map((r) => r.ms);
    return {
      medianMs: median(ms),
      minMs: Math.min(...ms),
      maxMs: Math.max(...ms),
      repeats: opts.repeats,
      inner,
      recordMs: median(runs.map((r) => r.recordMs)),
      note: [mixed ? 'work was submitted while recording: times include the host' : '', gaps ? `the GPU idled before the timed work in ${gaps} of ${opts.repeats} runs (the recording outlasted the clock hold)` : '', hold ? 'GPU-timed after a clock hold' : 'timed from the submit, without a clock hold (software adapter or no timestamp queries)'].filter(Boolean).join('; ') || undefined,
    };
  } finally {
    b.submitQueue = submit;
    env.set(BATCH_FLAG, batch);
  }
}

/**
 * Calls per timed run so that one run keeps the device busy for about targetMs: 1 when a single
 * call already takes that long (timed recorded, after a warm-up call), else up to maxInner.
 */
export async function autoInner(fn: () => unknown, targetMs = 2, maxInner = 1024): Promise<number> {
  const probe = async (n: number) => (await timeRecorded(fn, { warmup: 1, repeats: 3, inner: n })).medianMs;
  const one = await probe(1);
  if (one >= targetMs) return 1;
  const per = await probe(Math.min(maxInner, Math.max(2, Math.ceil(targetMs / Math.max(one, 1e-3) / 4))));
  return Math.min(maxInner, Math.max(1, Math.ceil(targetMs / Math.max(per, 1e-4))));
}

/**
 * Device-to-device copy bandwidth: copyBufferToBuffer of `bytes` between two fresh buffers,
 * `inner` copies recorded into one submit, timed on the GPU after a clock hold as timeRecorded. GB/s counts the
 * bytes read and written (2 · bytes per copy), as PyTorch's device copy anchor does.
 */
export async function timeDeviceCopy(bytes: number, opts: RepeatOptions & { inner: number }): Promise<Timing & { gbS: number }> {
  const device = webgpuDevice();
  if (!device) throw new Error('timeDeviceCopy: needs the webgpu backend');
  if (!(Number.isInteger(bytes) && bytes > 0 && bytes % 4 === 0)) throw new Error(`timeDeviceCopy: ${bytes} bytes is not a positive multiple of 4`);
  if (bytes > device.limits.maxBufferSize) throw new Error(`timeDeviceCopy: ${bytes} bytes is over the device's maxBufferSize ${device.limits.maxBufferSize}`);
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const src = device.createBuffer({ size: bytes, usage });
  const dst = device.createBuffer({ size: bytes, usage });
  const hold = await holdFor(device);
  const once = async (): Promise<number> => {
    await syncDevice();
    hold?.hold(HOLD_MS);
    const enc = device.createCommandEncoder();
    hold?.open(enc);
    for (let i = 0; i < opts.inner; i++) enc.copyBufferToBuffer(i % 2 ? dst : src, 0, i % 2 ? src : dst, 0, bytes);
    hold?.close(enc);
    const cb = enc.finish();
    const t0 = performance.now();
    device.queue.submit([cb]);
    if (hold) return (await hold.stamps()).ms / opts.inner;
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / opts.inner;
  };
  try {
    for (let i = 0; i < opts.warmup; i++) await once();
    const ms: number[] = [];
    for (let i = 0; i < opts.repeats; i++) ms.push(await once());
    const medianMs = median(ms);
    return { medianMs, minMs: Math.min(...ms), maxMs: Math.max(...ms), repeats: opts.repeats, inner: opts.inner, gbS: (2 * bytes) / medianMs / 1e6 };
  } finally {
    src.destroy();
    dst.destroy();
  }
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

/**
 * Writes a benchmark table atomically (replacing the previous run's table). The header is every
 * column any row has, in first-seen order; a row without a column leaves it empty. Scripts call it
 * after each row, so that a run killed by its timeout keeps what it measured.
 */
export function writeBenchCsv(file: string, rows: Record<string, string | number | boolean | null | undefined>[]): void {
  if (rows.length === 0) throw new Error(`${file}: no benchmark rows to write`);
  const header = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  writeFileAtomic(file, formatCsv(header, rows.map((r) => header.map((h) => (r[h] === null || r[h] === undefined ? '' : String(r[h]))))));
}
