// Where a tensor's values live on the webgpu backend: tfjs-webgpu keeps a new tensor's values on
// the host and uploads them to a GPU buffer the first time a kernel uses it (uploadToGPU); after
// that they stay on the GPU until the tensor is disposed. offloadToHost moves values back (read,
// dispose, recreate from the host copy), so that a model larger than the GPU's share can be
// compressed one block at a time (lib/methods/sequential.ts). Off webgpu, host and device are
// the same memory and these are no-ops.
import * as tf from '@tensorflow/tfjs';
import { webgpuDevice } from './backend';

/** The parts of tfjs-webgpu's backend (4.22) read here; private in its typings. */
interface WebgpuInternals {
  tensorMap: { get(dataId: object): { resource?: unknown } | undefined };
  bufferManager: { numBytesUsed: number };
}

const internals = (): WebgpuInternals | null => (webgpuDevice() ? (tf.backend() as unknown as WebgpuInternals) : null);

/** Whether t's values are in a GPU buffer (false off webgpu). */
export function onDevice(t: tf.Tensor): boolean {
  const b = internals();
  return b !== null && b.tensorMap.get(t.dataId)?.resource != null;
}

/** Bytes of GPU buffers holding live tensors (tfjs-webgpu's in-use count, pool excluded); null off webgpu. */
export function gpuBytesInUse(): number | null {
  return internals()?.bufferManager.numBytesUsed ?? null;
}

/**
 * Moves the values of each tensor in `map` that is on the GPU to the host: the entry is replaced by
 * a new tensor holding a host copy (uploaded again when next used) and the old one is disposed.
 * Only the given keys (default: all). Returns the bytes moved.
 */
export async function offloadToHost(map: Map<string, tf.Tensor>, keys: Iterable<string> = map.keys()): Promise<number> {
  if (!internals()) return 0;
  let bytes = 0;
  for (const k of [...keys]) {
    const t = map.get(k);
    if (!t || !onDevice(t)) continue;
    const values = await t.data(); // a fresh host array
    const copy = tf.tensor(values, t.shape, t.dtype);
    for (const [name, u] of map) if (u === t) map.set(name, copy); // every alias (tied weights) too
    t.dispose();
    bytes += values.byteLength;
  }
  return bytes;
}
