// Timing, memory and leak probes that work on every backend.
import * as tf from '@tensorflow/tfjs';
import { webgpuDevice } from './backend';
import { gpuBytesInUse } from './residency';

/** Waits until the GPU has finished all work tfjs has queued (no-op on CPU backends). */
export async function syncDevice(): Promise<void> {
  const device = webgpuDevice();
  if (!device) return;
  // tfjs records dispatches into an open compute pass: close it and submit, as its own reads do.
  const b = tf.backend() as unknown as { ensureCommandEncoderReady(): void; endComputePassEncoder(): void; submitQueue(): void };
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await device.queue.onSubmittedWorkDone();
}

/** Times fn with the device synchronised before and after, so queued GPU work is counted. */
export async function timeRegion<T>(fn: () => T | Promise<T>): Promise<{ result: T; ms: number }> {
  await syncDevice();
  const t0 = performance.now();
  const result = await fn();
  await syncDevice();
  return { result, ms: performance.now() - t0 };
}

export interface MemorySnapshot {
  /** Bytes held by live tfjs tensors. */
  tensorBytes: number;
  /** Bytes of GPU buffers tfjs has allocated (in use + its reuse pool); null off the GPU. */
  gpuAllocatedBytes: number | null;
  /** Bytes of GPU buffers holding live tensors (pool excluded: torch.cuda.memory_allocated's analogue); null off the GPU. */
  gpuInUseBytes: number | null;
  rssBytes: number;
}

export function memorySnapshot(): MemorySnapshot {
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
  return {
    tensorBytes: m.numBytes,
    gpuAllocatedBytes: m.numBytesAllocatedInGPU ?? null,
    gpuInUseBytes: gpuBytesInUse(),
    rssBytes: process.memoryUsage().rss,
  };
}

export interface PeakMemory {
  /** Highest live-tensor bytes seen at any sample (start, end, every probe.sample(), every 50 ms). */
  peakTensorBytes: number;
  /** Highest GPU bytes allocated by tfjs; its pool keeps freed buffers, so this is a true high-water mark. */
  peakGpuAllocatedBytes: number | null;
  /** Highest GPU bytes held by live tensors at any sample (torch.cuda.max_memory_allocated's analogue); null off the GPU. */
  peakGpuInUseBytes: number | null;
  peakRssBytes: number;
}

export interface MemoryProbe {
  /** Record the current memory; call it inside loops where the peak may occur. */
  sample(): void;
}

/**
 * Runs fn and reports the peak memory of the region. Samples are taken at start and end, every
 * 50 ms while fn awaits, and whenever fn calls probe.sample(); tensors live only between samples
 * are not seen, so call sample() where intermediates peak.
 */
export async function measurePeakMemory<T>(
  fn: (probe: MemoryProbe) => T | Promise<T>,
): Promise<{ result: T; peak: PeakMemory }> {
  const peak: PeakMemory = { peakTensorBytes: 0, peakGpuAllocatedBytes: null, peakGpuInUseBytes: null, peakRssBytes: 0 };
  const probe: MemoryProbe = {
    sample() {
      const s = memorySnapshot();
      peak.peakTensorBytes = Math.max(peak.peakTensorBytes, s.tensorBytes);
      peak.peakRssBytes = Math.max(peak.peakRssBytes, s.rssBytes);
      if (s.gpuAllocatedBytes !== null) {
        peak.peakGpuAllocatedBytes = Math.max(peak.peakGpuAllocatedBytes ?? 0, s.gpuAllocatedBytes);
      }
      if (s.gpuInUseBytes !== null) peak.peakGpuInUseBytes = Math.max(peak.peakGpuInUseBytes ?? 0, s.gpuInUseBytes);
    },
  };
  probe.sample();
  const timer = setInterval(() => probe.sample(), 50);
  try {
    const result = await fn(probe);
    probe.sample();
    return { result, peak };
  } finally {
    clearInterval(timer);
  }
}

export class TensorLeakError extends Error {
  constructor(
    readonly label: string,
    readonly leaked: number,
  ) {
    super(`${label}: ${leaked} tensor(s) leaked (tf.memory().numTensors grew by ${leaked})`);
    this.name = 'TensorLeakError';
  }
}

/**
 * Runs fn and throws if it leaves more live tensors than it started with, not counting the
 * tensors it returns (pass them back through `keep`).
 */
export async function checkLeaks<T>(
  label: string,
  fn: () => T | Promise<T>,
  keep: (result: T) => tf.Tensor[] = () => [],
): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const leaked = tf.memory().numTensors - before - keep(result).length;
  if (leaked > 0) throw new TensorLeakError(label, leaked);
  return result;
}
