// Reading and replacing a block's linear weights in a Model (HF layout [out, in]).
import * as tf from '@tensorflow/tfjs';
import { linearName } from '../models/arch';
import type { Model } from '../models/types';

export interface HostMatrix {
  name: string; // full weight name
  rows: number; // out
  cols: number; // in
  data: Float32Array; // row-major [rows, cols]
}

export function getWeight(model: Model, name: string): tf.Tensor {
  const t = model.weights.get(name);
  if (!t) throw new Error(`model '${model.name}' has no weight '${name}'`);
  return t;
}

/** A block linear's weight copied to the host. */
export function readLinear(model: Model, block: number, linear: string): HostMatrix {
  const name = linearName(model.config.arch, block, linear);
  const t = getWeight(model, name);
  if (t.rank !== 2) throw new Error(`weight '${name}' has rank ${t.rank}, expected 2`);
  const [rows, cols] = t.shape as [number, number];
  return { name, rows, cols, data: Float32Array.from(t.dataSync()) };
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

/** Runs tfjs work and returns its result's values on the host, disposing everything. */
export function hostValues(fn: () => tf.Tensor): Float32Array {
  const t = tf.tidy(fn);
  try {
    return Float32Array.from(t.dataSync());
  } finally {
    t.dispose();
  }
}
