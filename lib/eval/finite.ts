// Non-finite numbers (NaN, ±Infinity) in logits, log-likelihoods, losses or weights are an error,
// never a result: a NaN log-probability still yields a finite accuracy (argmax picks the first
// choice), so every scorer, every aggregation, the compression and the training loops check their
// numbers here and throw a NonFiniteError whose message names the model, the method and the step.
import * as tf from '@tensorflow/tfjs';
import type { Model } from '../models/types';

export class NonFiniteError extends Error {
  constructor(
    /** The model, method and step, e.g. "stories260K × gptq-w4: scoring log-probabilities". */
    readonly where: string,
    /** Values that are NaN or ±Infinity, out of total. */
    readonly count: number,
    readonly total: number,
    /** The first such value and its index. */
    readonly firstIndex: number,
    readonly firstValue: number,
  ) {
    super(`${where}: ${count} of ${total} value(s) not finite (first at index ${firstIndex}: ${firstValue})`);
    this.name = 'NonFiniteError';
  }
}

/**
 * Throws a NonFiniteError when any value is NaN or ±Infinity. `where` names the model, method and
 * step ("stories260K × wanda-50%: piqa scoring"). The one check every scorer (TensorScorer, the
 * executor's EngineScorer), aggregation, compression and training loop calls.
 */
export function assertFinite(values: ArrayLike<number>, where: string): void {
  let count = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (count > 0) throw new NonFiniteError(where, count, values.length, first, values[first]);
}

/**
 * Throws a NonFiniteError naming the first weight of the model that holds a NaN or ±Infinity.
 * Checked on the device (one boolean read back per tensor); only a bad tensor is read to the host.
 */
export async function assertFiniteWeights(model: Pick<Model, 'weights' | 'splitWeights'>, where: string): Promise<void> {
  const tensors: [string, tf.Tensor][] = [...model.weights];
  for (const [name, parts] of model.splitWeights ?? []) parts.forEach((t, k) => tensors.push([`${name} (row block ${k})`, t]));
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32') continue;
    const ok = tf.tidy(() => tf.all(tf.isFinite(t)));
    const okValue = (await ok.data())[0];
    ok.dispose();
    if (!okValue) assertFinite((await t.data()) as Float32Array, `${where}: weight '${name}'`);
  }
}
