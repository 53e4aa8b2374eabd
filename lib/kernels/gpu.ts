// The small kernel layer every custom WGSL kernel of the kit uses: it runs a compute shader on
// tfjs tensors' GPU buffers, on the tfjs-webgpu backend's own device, and returns tensors tfjs owns.
//
//   const [y] = runKernel({
//     name: 'scale', code: WGSL, inputs: [x], outputs: [{ shape: x.shape, dtype: 'float32' }],
//     params: { n: u32(x.size), s: f32(2) }, workgroups: [Math.ceil(x.size / 64), 1, 1],
//   });
//
// Binding convention of the shader (all in @group(0), entry point `main`):
//   outputs first (binding 0..), then inputs, then one `var<uniform> params: Params` when params
//   are given; `paramsStruct(params)` writes the matching `struct Params {...}` (scalars in key
//   order). Every binding must be used by the shader (pipelines use layout 'auto').
// The shader is complete WGSL, so it may start with `enable subgroups;` or
// `enable chromium_experimental_subgroup_matrix;` (ask hasSubgroups()/subgroupMatrixConfigs() first).
//
// Why not tfjs's own runWebGPUProgram with a custom program: tfjs 4.22 prepends its own snippets
// (structs, helpers) to every program's code, and WGSL requires `enable` directives before any
// declaration, so a tfjs program cannot use subgroups or subgroup matrices. Instead runKernel
// records its dispatch into tfjs's current command encoder and compute pass exactly as tfjs's
// recordAndSubmit does (same pass, same deferred-submit batching, inputs/outputs marked as owned by
// the pending commands so a disposal waits for the submit), so it is ordered with tfjs's work
// without a queue flush per kernel. Output buffers come from tfjs's buffer pool
// (makeTensorInfo + uploadToGPU) and become ordinary tensors: dispose them, tidy tracks them.
// A kernel has no gradient of its own: wrap it in tf.customGrad with a backward kernel to use it under a tape (fused.ts, train.ts).
import * as tf from '@tensorflow/tfjs';
import { webgpuAdapterInfo, webgpuDevice } from '../runtime/backend';

export type ParamType = 'u32' | 'i32' | 'f32';
export interface Param {
  type: ParamType;
  value: number;
}
export const u32 = (value: number): Param => ({ type: 'u32', value });
export const i32 = (value: number): Param => ({ type: 'i32', value });
export const f32 = (value: number): Param => ({ type: 'f32', value });

export interface OutputSpec {
  shape: number[];
  dtype: 'float32' | 'int32';
}

export interface KernelCall {
  /** Label for errors and GPU debuggers. */
  name: string;
  /** Complete WGSL source; pipelines are cached by this text. */
  code: string;
  /** Tensors bound read-only after the outputs, in order (float32 or int32, on the webgpu backend). */
  inputs: tf.Tensor[];
  /** Fresh output tensors, bound read-write from binding 0. */
  outputs: OutputSpec[];
  /** Small scalar parameters, bound as one uniform struct after the inputs. */
  params?: Record<string, Param>;
  /** Workgroup counts [x, y, z]. */
  workgroups: [number, number, number];
}

/** The WGSL struct declaration `struct Params {...}` matching params (scalars, in key order). */
export function paramsStruct(params: Record<string, Param>): string {
  return `struct Params { ${Object.entries(params).map(([k, p]) => `${k}: ${p.type},`).join(' ')} }`;
}

/** The parts of tfjs-webgpu's backend (4.22) that runKernel and step graphs drive; private in its typings. */
export interface TfjsWebGPUBackend {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  tensorMap: { get(dataId: object): { resource?: unknown; dtype: string } };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: string): tf.TensorInfo;
  makeUniforms(u: { type: 'int32' | 'uint32' | 'float32'; data: number[] }[]): GPUBufferBinding;
  /** Compiled programs by tfjs's shader key (a pipeline, or its promise while compiling in parallel). */
  pipelineCache: Record<string, GPUComputePipeline | Promise<GPUComputePipeline>>;
  bufferManager: {
    acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
    releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
  };
}

/** tfjs-webgpu's backend, or an error naming `name` when another backend is active. */
export function tfjsBackend(name: string): TfjsWebGPUBackend {
  if (!webgpuDevice()) throw new Error(`kernel '${name}' needs the webgpu backend (active: '${tf.getBackend()}')`);
  return tf.backend() as unknown as TfjsWebGPUBackend;
}

/** Compiled pipelines per device, keyed by WGSL source (a cache: same source, same pipeline). */
const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** The compute pipeline of `code` on `device` (entry point main, layout auto), compiled once per source. */
export function pipelineFor(device: GPUDevice, name: string, code: string): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  let p = cache.get(code);
  if (!p) {
    const module = device.createShaderModule({ code, label: name });
    p = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: name });
    cache.set(code, p);
  }
  return p;
}

/** The GPU buffer behind a webgpu tensor (uploaded first if its values are still on the CPU). */
export function gpuBuffer(t: tf.TensorInfo): GPUBuffer {
  const b = tfjsBackend('gpuBuffer');
  b.uploadToGPU(t.dataId);
  const resource = b.tensorMap.get(t.dataId).resource;
  if (!(resource instanceof GPUBuffer)) throw new Error('gpuBuffer: the tensor is not backed by a GPU buffer (texture or external data)');
  return resource;
}

const UNIFORM_TYPE = { u32: 'uint32', i32: 'int32', f32: 'float32' } as const;

let dispatches = 0;
/** Custom-kernel dispatches recorded by this process so far (profiling: tfjs's profiler sees only its own kernels). */
export function kernelDispatches(): number {
  return dispatches;
}

/** Records one dispatch of call.code after all work tfjs has queued; returns the outputs. */
export function runKernel(call: KernelCall): tf.Tensor[] {
  const b = tfjsBackend(call.name);
  const device = b.device;
  const maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  for (const g of call.workgroups) {
    if (!Number.isInteger(g) || g < 0 || g > maxGroups) {
      throw new Error(`kernel '${call.name}': workgroup count ${g} not an integer in [0, ${maxGroups}] (workgroups [${call.workgroups.join(', ')}])`);
    }
  }
  for (const t of call.inputs) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`kernel '${call.name}': input dtype ${t.dtype} (float32 or int32 only)`);
    if (t.isDisposed) throw new Error(`kernel '${call.name}': an input tensor is disposed`);
  }
  const maxBinding = device.limits.maxStorageBufferBindingSize;
  for (const [what, shapes] of [['input', call.inputs.map((t) => t.shape)], ['output', call.outputs.map((o) => o.shape)]] as const) {
    for (const shape of shapes) {
      const bytes = 4 * shape.reduce((a, b) => a * b, 1);
      if (bytes > maxBinding) throw new Error(`kernel '${call.name}': ${what} [${shape.join(', ')}] is ${bytes} B, over the device's ${maxBinding} B storage binding`);
    }
  }
  const pipeline = pipelineFor(device, call.name, call.code);
  const inputBuffers = call.inputs.map((t) => gpuBuffer(t));
  const outInfos = call.outputs.map((o) => {
    const info = b.makeTensorInfo(o.shape, o.dtype);
    b.uploadToGPU(info.dataId);
    return info;
  });
  const entries: GPUBindGroupEntry[] = [
    ...outInfos.map((o) => ({ buffer: b.tensorMap.get(o.dataId).resource as GPUBuffer })),
    ...inputBuffers.map((buffer) => ({ buffer })),
  ].map((resource, binding) => ({ binding, resource }));
  if (call.params && Object.keys(call.params).length > 0) {
    const u = Object.values(call.params).map((p) => ({ type: UNIFORM_TYPE[p.type], data: [p.value] }));
    entries.push({ binding: entries.length, resource: b.makeUniforms(u) });
  }
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: call.name });
  // As tfjs's recordAndSubmit: into the open compute pass, submitted with tfjs's batch.
  b.ensureCommandEncoderReady();
  if (!b.computePassEncoder) b.computePassEncoder = b.commandEncoder!.beginComputePass();
  b.computePassEncoder.setPipeline(pipeline);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  b.computePassEncoder.dispatchWorkgroups(call.workgroups[0], call.workgroups[1], call.workgroups[2]);
  b.dispatchCountInPass++;
  dispatches++;
  for (const t of [...call.inputs, ...outInfos]) b.commandQueueOwnedIds.add(t.dataId);
  if (b.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  return outInfos.map((o) => tf.engine().makeTensorFromTensorInfo(o, tf.backend()));
}

/** Submits the work tfjs has recorded but not yet submitted, so that work submitted to the queue
 * directly (the inference executor, lib/engine) runs after it and sees its results. */
export function flushTfjs(): void {
  const b = tfjsBackend('flushTfjs');
  if (b.computePassEncoder) b.endComputePassEncoder();
  if (b.commandEncoder) b.submitQueue();
}

/** The adapter facts the kernels choose by (tfjs-webgpu's device on Dawn). */
interface AdapterInfoExt extends GPUAdapterInfo {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: SubgroupMatrixConfig[];
}

/** One subgroup-matrix shape the device supports (Chromium's experimental API). */
export interface SubgroupMatrixConfig {
  componentType: string; // operand element type, e.g. 'i8', 'f32'
  resultComponentType: string; // accumulator type, e.g. 'i32'
  M: number;
  N: number;
  K: number;
}

function adapterInfo(): AdapterInfoExt | null {
  return webgpuAdapterInfo() as AdapterInfoExt | null;
}

/** True when the active backend is webgpu and its device has the 'subgroups' feature. */
export function hasSubgroups(): boolean {
  return webgpuDevice()?.features.has('subgroups') ?? false;
}

/** Subgroup sizes the adapter may use ({min, max}), or null off webgpu or when unknown. */
export function subgroupSizes(): { min: number; max: number } | null {
  const i = adapterInfo();
  if (!i?.subgroupMinSize || !i.subgroupMaxSize) return null;
  return { min: i.subgroupMinSize, max: i.subgroupMaxSize };
}

/** Subgroup-matrix configurations usable on the device ([] without the feature or off webgpu). */
export function subgroupMatrixConfigs(): SubgroupMatrixConfig[] {
  const d = webgpuDevice();
  if (!d?.features.has('chromium-experimental-subgroup-matrix' as GPUFeatureName)) return [];
  return [...(adapterInfo()?.subgroupMatrixConfigs ?? [])];
}

/** Workgroup counts for `count` workgroups in x, spilling into y past the per-dimension limit. */
export function grid1d(count: number): [number, number, number] {
  const max = deviceLimits()?.maxComputeWorkgroupsPerDimension ?? 65535;
  return [Math.min(count, max), Math.ceil(count / max), 1];
}

/** The device's limits (workgroup storage, invocations, binding sizes), or null off webgpu. */
export function deviceLimits(): GPUSupportedLimits | null {
  return webgpuDevice()?.limits ?? null;
}
