// Backend selection: webgpu (Dawn through the `webgpu` package) > wasm (SIMD) > cpu.
// A backend that was asked for by name and cannot start is an error; 'auto' records why it
// skipped each backend it could not start, so the choice is never silent.
import * as tf from '@tensorflow/tfjs';
import os from 'node:os';
import { checkPinnedAdapter } from '../gpus';

export type BackendName = 'webgpu' | 'wasm' | 'cpu';
export const BACKENDS: readonly BackendName[] = ['webgpu', 'wasm', 'cpu'];

export interface RuntimeInfo {
  backend: BackendName;
  /** One line for result rows, e.g. "nvidia hopper (NVIDIA H100 80GB HBM3, Vulkan)". */
  device: string;
  /** Everything known about the device, for provenance (features, limits, driver, CPU model). */
  details: Record<string, unknown>;
  /** Why 'auto' skipped the backends before the chosen one (empty when one was asked for). */
  skipped: { backend: BackendName; reason: string }[];
}

export interface InitOptions {
  /**
   * 'auto' tries webgpu (a hardware adapter only: a software one such as Mesa's llvmpipe is slower
   * than wasm), then wasm, then cpu. Default: LLMCB_BACKEND or 'auto'.
   */
  backend?: BackendName | 'auto';
}

/** WebGPU features the kit asks for when the adapter has them (custom kernels use the last three). */
const WANTED_FEATURES = [
  'timestamp-query',
  'subgroups',
  'chromium-experimental-subgroup-matrix',
  'shader-f16',
] as const;

export class BackendError extends Error {
  constructor(
    readonly backend: string,
    reason: string,
  ) {
    super(`backend '${backend}' cannot start: ${reason}`);
    this.name = 'BackendError';
  }
}

export function parseBackend(name: string): BackendName | 'auto' {
  if (name === 'auto' || (BACKENDS as readonly string[]).includes(name)) return name as BackendName | 'auto';
  throw new BackendError(name, `unknown backend (choose one of auto, ${BACKENDS.join(', ')})`);
}

/** Initialise tfjs on the requested (or best available) backend and describe the device. */
export async function initRuntime(opts: InitOptions = {}): Promise<RuntimeInfo> {
  const requested = opts.backend ?? parseBackend(process.env.LLMCB_BACKEND ?? 'auto');
  if (requested !== 'auto') {
    await start(requested, false);
    return { ...(await describeRuntime()), skipped: [] };
  }
  const skipped: RuntimeInfo['skipped'] = [];
  for (const name of BACKENDS) {
    try {
      await start(name, true);
      return { ...(await describeRuntime()), skipped };
    } catch (e) {
      skipped.push({ backend: name, reason: e instanceof BackendError ? e.message : String(e) });
    }
  }
  throw new BackendError('auto', skipped.map((s) => s.reason).join('; '));
}

async function start(name: BackendName, auto: boolean): Promise<void> {
  if (!(tf.getBackend() === name && tf.engine().backendNames().includes(name))) await activate(name);
  const info = name === 'webgpu' ? adapterInfo : null;
  if (auto && info?.isFallbackAdapter) {
    throw new BackendError(
      'webgpu',
      `the adapter is a software rasterizer (${info.description || info.device}), slower than wasm; ask for backend 'webgpu' to use it anyway`,
    );
  }
}

async function activate(name: BackendName): Promise<void> {
  if (name === 'webgpu') await registerWebGPU();
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new BackendError(name, (e as Error).message);
  }
  // setBackend returns false and quietly keeps the previous backend: never accept that.
  if (!ok || tf.getBackend() !== name) {
    throw new BackendError(name, `tfjs refused it and stayed on '${tf.getBackend()}'`);
  }
  await tf.ready();
  for (const [flag, value] of tfjsFlags()) tf.env().set(flag, value);
}

/**
 * tfjs flags to set, from LLMCB_TFJS_FLAGS (comma-separated NAME=VALUE; numbers and true/false are
 * typed), for measurements, e.g. `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE=256` (tfjs-webgpu submits every
 * 15 dispatches; on the H100 a batch of 256 did not shorten an OmniQuant step once uploads stopped
 * creating buffers, see queueUploads). A name tfjs has not registered (with the backend loaded) is an error.
 */
export function tfjsFlags(raw = process.env.LLMCB_TFJS_FLAGS ?? ''): [string, number | boolean | string][] {
  const registered = (tf.env() as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry;
  return raw
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const m = /^([A-Z0-9_]+)=(.+)$/.exec(t);
      if (!m) throw new Error(`LLMCB_TFJS_FLAGS: '${t}' is not NAME=VALUE`);
      if (!(m[1] in registered)) throw new Error(`LLMCB_TFJS_FLAGS: '${m[1]}' is not a tfjs flag of the loaded backends`);
      const v = m[2] === 'true' ? true : m[2] === 'false' ? false : Number.isFinite(Number(m[2])) ? Number(m[2]) : m[2];
      return [m[1], v];
    });
}

/**
 * Extra Dawn toggles to enable, from LLMCB_DAWN_TOGGLES (comma-separated; for measurements, e.g.
 * `disable_robustness,disable_workgroup_init`: Tint then drops its bounds checks, which guard every
 * subgroup-matrix load and storage access, and the zeroing of workgroup memory). The kit's kernels
 * bound every access themselves; tfjs's own kernels are not audited for it, so this is off by default.
 */
export function extraDawnToggles(): string[] {
  const raw = process.env.LLMCB_DAWN_TOGGLES ?? '';
  const toggles = raw.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of toggles) if (!/^[a-z0-9_]+$/.test(t)) throw new BackendError('webgpu', `LLMCB_DAWN_TOGGLES: '${t}' is not a Dawn toggle name`);
  return toggles;
}

/** Registers a 'webgpu' backend on a Dawn device that has the subgroup features the kernels use. */
async function registerWebGPU(): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!g.navigator?.gpu) {
    let dawn: typeof import('webgpu');
    try {
      dawn = await import('webgpu');
    } catch (e) {
      throw new BackendError('webgpu', `the 'webgpu' package (Dawn) did not load: ${(e as Error).message}`);
    }
    Object.assign(globalThis, dawn.globals);
    // navigator is a getter-only global on Node 21+; define it rather than assign it.
    Object.defineProperty(globalThis, 'navigator', {
      // Timestamps unquantized: the executor's per-dispatch profile (Program.record) reads GPU time from them.
      value: { gpu: dawn.create([`enable-dawn-features=${['allow_unsafe_apis', ...extraDawnToggles()].join(',')}`, 'disable-dawn-features=timestamp_quantization']) },
      configurable: true,
      writable: true,
    });
  }
  const gpu = (globalThis as unknown as { navigator: { gpu: GPU } }).navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new BackendError('webgpu', 'no GPU adapter found (Dawn found no Vulkan/Metal/D3D device)');
  if (process.env.LLMCB_GPU !== undefined) {
    // a worker of run.ts --gpus: say which adapter it got, and refuse a pin that did not take
    try {
      console.error(await checkPinnedAdapter(adapter.info, (await import('webgpu')).create));
    } catch (e) {
      throw new BackendError('webgpu', (e as Error).message);
    }
  }
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  if (tf.engine().registryFactory.webgpu) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => {
    const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
    });
    failOnGpuErrors(device);
    adapterInfo = adapter.info;
    const backend = new WebGPUBackend(device, adapter.info);
    capFreeBuffers((backend as unknown as { bufferManager: PooledBuffers }).bufferManager);
    queueUploads(backend as unknown as Uploader);
    return backend;
  });
}

/** Most bytes tfjs-webgpu may keep in released-but-pooled buffers; past it the longest-pooled are destroyed. Default 4 GiB. */
let freeBufferCapBytes = 4 * 2 ** 30;

/** Changes the pooled-buffer cap (bytes ≥ 0); returns the previous one. */
export function setFreeBufferCap(bytes: number): number {
  if (!(bytes >= 0)) throw new Error(`setFreeBufferCap: ${bytes} is not a byte count ≥ 0`);
  const old = freeBufferCapBytes;
  freeBufferCapBytes = bytes;
  return old;
}

/** The parts of tfjs-webgpu's BufferManager (4.22) that capFreeBuffers touches. */
interface PooledBuffers {
  freeBuffers: Map<string, GPUBuffer[]>; // key `${size}_${usage}`
  numFreeBuffers: number;
  numBytesAllocated: number; // pooled + in use
  numBytesUsed: number; // in use
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
}

/**
 * tfjs-webgpu keeps every released buffer for reuse by exact size, forever. Work whose shapes vary
 * (padded evaluation batches) then fills the GPU (HellaSwag ran the H100 out of memory). Once the
 * pooled bytes pass the cap, the buffers pooled longest are destroyed until the pool is under it
 * again. Only the oldest: Dawn frees a destroyed buffer's memory once the GPU has finished the
 * work already queued, so destroying the buffers a loop is recycling (as emptying the whole pool
 * did) makes every iteration allocate afresh while the host runs ahead of the GPU. AWQ's grid
 * search on a 7B block (about 2.4 GB of temporaries per batch) ran the H100 out of memory with the
 * old policy and completes with this one and a wait per grid point (which of the two it needed
 * was not isolated). Pooled buffers belong to no pending command (tfjs releases a tensor used by
 * queued work only after submitting it), so destroying them is safe.
 */
function capFreeBuffers(pool: PooledBuffers): void {
  const release = pool.releaseBuffer.bind(pool);
  const acquire = pool.acquireBuffer.bind(pool);
  const pooled = new Set<GPUBuffer>(); // the pool's buffers, in release order
  pool.acquireBuffer = (...args) => {
    const b = acquire(...args);
    pooled.delete(b);
    return b;
  };
  pool.releaseBuffer = (buffer, reuse = true) => {
    release(buffer, reuse);
    if (reuse) pooled.add(buffer);
    for (const b of pooled) {
      if (pool.numBytesAllocated - pool.numBytesUsed <= freeBufferCapBytes) break;
      pooled.delete(b);
      const list = pool.freeBuffers.get(`${b.size}_${b.usage}`);
      const at = list ? list.indexOf(b) : -1;
      if (at < 0) continue; // no longer pooled (tfjs emptied its pool)
      list!.splice(at, 1);
      pool.numFreeBuffers--;
      pool.numBytesAllocated -= b.size;
      b.destroy();
    }
  };
}

/** The parts of tfjs-webgpu's backend (4.22) that queueUploads touches. */
interface Uploader {
  device: GPUDevice;
  tensorMap: { get(dataId: object): { dtype: tf.DataType; shape: number[]; values: ArrayLike<number> | null; resource: unknown } };
  bufferManager: { acquireBuffer(size: number, usage: number): GPUBuffer };
  uploadToGPU(dataId: object): void;
}

/**
 * tfjs-webgpu uploads a host tensor (every tf.scalar, every constant its gradients and optimizers
 * make) through a staging buffer it creates mapped and destroys at the next submit: a GPU
 * allocation and a free per upload, 1.3 ms each on the H100 against 0.05 ms for queue.writeBuffer
 * (log), and most of an OmniQuant gradient step's host time. Uploads go through
 * queue.writeBuffer instead. It lands on the queue before the open command encoder's commands;
 * that is safe because the destination comes from the free pool, and tfjs pools a buffer only
 * after submitting every command that used it (its uniforms are written the same way).
 */
function queueUploads(backend: Uploader): void {
  const staged = backend.uploadToGPU.bind(backend);
  backend.uploadToGPU = (dataId) => {
    const d = backend.tensorMap.get(dataId);
    const n = tf.util.sizeFromShape(d.shape);
    if (d.resource != null || d.values == null || n === 0 || !['float32', 'int32', 'bool'].includes(d.dtype)) return staged(dataId);
    // bool and int32 are 32-bit integers on the GPU
    const v = d.dtype === 'float32' ? asArray(Float32Array, d.values) : asArray(Int32Array, d.values);
    const buffer = backend.bufferManager.acquireBuffer(4 * n, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    backend.device.queue.writeBuffer(buffer, 0, v);
    d.values = null;
    d.resource = buffer;
  };
}

const asArray = <T extends Float32Array | Int32Array>(Type: { new (n: number): T; from(a: ArrayLike<number>): T }, a: ArrayLike<number>): T => (a instanceof Type ? a : Type.from(a));

/**
 * Dawn reports validation and out-of-memory errors asynchronously ("uncaptured"), and tfjs never
 * looks: the work then silently yields garbage (NaN log-likelihoods, wrong perplexities). Any such
 * error ends the process with its message, before a wrong number can reach a result row.
 */
function failOnGpuErrors(device: GPUDevice): void {
  device.addEventListener('uncapturederror', (e) => {
    const err = (e as GPUUncapturedErrorEvent).error;
    console.error(`fatal WebGPU ${err.constructor.name}: ${err.message}\n(the process stops: results computed after this error would be wrong)`);
    process.exit(70);
  });
}

/**
 * Most float32 elements one tensor may hold on the current backend: one storage-buffer binding on
 * WebGPU (device limit; 128 MiB on some drivers), unbounded elsewhere. Batching code bounds its
 * largest intermediates (attention scores, logits) by this.
 */
export function maxTensorElements(): number {
  const device = webgpuDevice();
  return device ? Math.floor(device.limits.maxStorageBufferBindingSize / 4) : Infinity;
}

/** Dawn's adapter info, with the spec's newer isFallbackAdapter (not yet in @webgpu/types): true for a software adapter such as llvmpipe. */
export type AdapterInfo = GPUAdapterInfo & { isFallbackAdapter?: boolean };

/** The adapter's info of the registered webgpu backend. */
let adapterInfo: AdapterInfo | null = null;

/**
 * The adapter info of the device tfjs runs on, or null on other backends. Read it here, not from
 * device.adapterInfo: on the H100, Dawn lists the subgroup-matrix configurations only on the
 * adapter's info (the device's copy has none).
 */
export function webgpuAdapterInfo(): AdapterInfo | null {
  return webgpuDevice() ? adapterInfo : null;
}

/** The WebGPU device tfjs runs on (custom kernels share it), or null on other backends. */
export function webgpuDevice(): GPUDevice | null {
  if (tf.getBackend() !== 'webgpu') return null;
  return (tf.backend() as unknown as { device: GPUDevice }).device;
}

/** Describes the active backend's device from the backend itself (no cached state). */
export async function describeRuntime(): Promise<Omit<RuntimeInfo, 'skipped'>> {
  const backend = tf.getBackend() as BackendName;
  const device = webgpuDevice();
  if (device) {
    const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const limits: Record<string, number> = {};
    for (const k in device.limits) limits[k] = (device.limits as unknown as Record<string, number>)[k];
    const details = {
      vendor: info?.vendor,
      architecture: info?.architecture,
      description: info?.description,
      deviceName: info?.device,
      features: [...device.features].sort(),
      limits,
      dawnToggles: ['allow_unsafe_apis', ...extraDawnToggles()],
    };
    const name = info?.device || [info?.vendor, info?.architecture].filter(Boolean).join(' ') || 'unknown GPU';
    const extra = extraDawnToggles();
    return { backend, device: `${name} (WebGPU/Dawn; ${info?.description || 'no driver description'}${extra.length ? `; toggles ${extra.join(' ')}` : ''})`, details };
  }
  const cpus = os.cpus();
  const model = cpus[0]?.model?.trim() || 'unknown CPU';
  const details = { cpuModel: model, cores: cpus.length, arch: process.arch, node: process.version };
  return { backend, device: `${model} x${cpus.length} (${backend})`, details };
}
