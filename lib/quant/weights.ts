// Reading and replacing a block's linear weights in a Model (HF layout [out, in]).
import * as tf from '@tensorflow/tfjs';
import { linearName } from '../models/arch';
import type { Model } from '../models/types';
import { missingWeight } from '../models/weights';

export interface HostMatrix {
  name: string; // full weight name
  rows: number; // out
  cols: number; // in
  data: Float32Array; // row-major [rows, cols]
}

export function getWeight(model: Model, name: string): tf.Tensor {
  const t = model.weights.get(name);
  if (!t) throw missingWeight(model, name);
  return t;
}

/** A block linear's weight copied to the host (an async read: WebGPU in Node has no synchronous one). */
export async function readLinear(model: Model, block: number, linear: string): Promise<HostMatrix> {
  const name = linearName(model.config.arch, block, linear);
  const t = getWeight(model, name);
  if (t.rank !== 2) throw new Error(`weight '${name}' has rank ${t.rank}, expected 2`);
  const [rows, cols] = t.shape as [number, number];
  return { name, rows, cols, data: await readFloat32(t) };
}

/** A private fp32 copy of a tensor's values on the host (async read). */
export async function readFloat32(t: tf.Tensor): Promise<Float32Array> {
  return Float32Array.from((await t.data()) as Float32Array);
}

/** Replaces a weight (disposing the old tensor); the new one keeps the old shape. */
export function replaceWeight(model: Model, name: string, data: Float32Array | tf.Tensor): void {
  const old = getWeight(model, name);
  const t = data instanceof tf.Tensor ? data : tf.tensor(data, old.shape, 'float32');
  if (t.shape.join() !== old.shape.join()) throw new Error(`replacing '${name}': shape [${t.shape}] differs from [${old.shape}]`);
  model.weights.set(name, t);
  if (t !== old) old.dispose();
}

/** Every (block, short linear name) pair of the model, in execution order. */
export function allLinears(model: Model, linears: string[]): { block: number; linear: string }[] {
  const out: { block: number; linear: string }[] = [];
  for (let b = 0; b < model.config.numLayers; b++) for (const l of linears) out.push({ block: b, linear: l });
  return out;
}

/** Shape [out, in] of a block linear (block 0 unless given). */
export function linearShape(model: Model, linear: string, block = 0): [number, number] {
  const t = getWeight(model, linearName(model.config.arch, block, linear));
  return t.shape as [number, number];
}

/** Runs tfjs work (in a tidy) and returns its result's values on the host, disposing everything. */
export async function hostValues(fn: () => tf.Tensor): Promise<Float32Array> {
  const t = tf.tidy(fn);
  try {
    return Float32Array.from((await t.data()) as Float32Array);
  } finally {
    t.dispose();
  }
}

/**
 * Element-wise running maximum kept on the device, for observers that run synchronously inside
 * a forward pass: add() folds a tensor in, read() returns the values on the host (async).
 */
export class DeviceMax {
  private cur: tf.Tensor | null = null;

  /** Folds fn()'s result (computed in a tidy) into the running maximum. */
  add(fn: () => tf.Tensor): void {
    const old = this.cur;
    this.cur = tf.keep(tf.tidy(() => (old ? tf.maximum(old, fn()) : fn())));
    old?.dispose();
  }

  /** The running maximum on the host, or null when nothing was added. */
  async read(): Promise<Float32Array | null> {
    return this.cur ? Float32Array.from((await this.cur.data()) as Float32Array) : null;
  }

  dispose(): void {
    this.cur?.dispose();
    this.cur = null;
  }
}

/**
 * Runs a block's observation and returns, for every observed linear that `keep` accepts, the
 * maximum |x| over all calibration batches: per input channel ([in]) or per tensor ([1]).
 * The running maxima stay on the device while the block runs and are read once at the end.
 */
export async function observeAbsMax(
  observe: (fn: (linear: string, x: tf.Tensor2D) => void) => void,
  keep: (linear: string) => boolean,
  perChannel: boolean,
): Promise<Map<string, Float32Array>> {
  const acc = new Map<string, DeviceMax>();
  try {
    observe((l, x) => {
      if (!keep(l)) return;
      if (!acc.has(l)) acc.set(l, new DeviceMax());
      acc.get(l)!.add(() => (perChannel ? tf.max(tf.abs(x), 0) : tf.max(tf.abs(x)))); // [in] or scalar
    });
    const out = new Map<string, Float32Array>();
    for (const [l, a] of acc) out.set(l, (await a.read())!);
    return out;
  } finally {
    acc.forEach((a) => a.dispose());
  }
}
