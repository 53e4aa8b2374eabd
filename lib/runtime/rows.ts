// Row-wise kernels (softmax, log-softmax, reductions over the last axis) in bounded row chunks.
// tfjs-webgpu launches one workgroup per row for these; past the 65,535-workgroup limit of one
// dispatch dimension it reshapes the dispatch, and the kernels do not index rows correctly then
// (stories260K's WikiText-2 perplexity came out 392 instead of 121 on the H100 with 128 windows
// per batch). Chunking keeps every launch under the limit; on other backends it is one chunk.
import * as tf from '@tensorflow/tfjs';

export const MAX_ROWS = 65535; // WebGPU's default maxComputeWorkgroupsPerDimension

/**
 * Applies fn to x viewed as [rows, cols] (rows = product of all but the last axis), at most
 * maxRows rows at a time; fn maps [r, cols] → [r, k] and the result has x's leading shape with k last.
 */
export function byRows(x: tf.Tensor, fn: (rows: tf.Tensor2D) => tf.Tensor2D, maxRows = MAX_ROWS): tf.Tensor {
  return tf.tidy(() => {
    const cols = x.shape[x.rank - 1];
    const rows = x.size / cols;
    const flat = tf.reshape(x, [rows, cols]) as tf.Tensor2D; // [rows, cols]
    let out: tf.Tensor2D;
    if (rows <= maxRows) out = fn(flat);
    else {
      const parts: tf.Tensor2D[] = [];
      for (let r = 0; r < rows; r += maxRows) parts.push(fn(tf.slice(flat, [r, 0], [Math.min(maxRows, rows - r), cols])));
      out = tf.concat(parts, 0);
    }
    return tf.reshape(out, [...x.shape.slice(0, -1), out.shape[1]]);
  });
}

export const softmaxRows = (x: tf.Tensor) => byRows(x, (r) => tf.softmax(r, -1));
export const logSoftmaxRows = (x: tf.Tensor) => byRows(x, (r) => tf.logSoftmax(r, -1));
export const meanRows = (x: tf.Tensor) => byRows(x, (r) => tf.mean(r, -1, true)); // keeps a last axis of 1
export const maxRows = (x: tf.Tensor) => byRows(x, (r) => tf.max(r, -1, true)); // keeps a last axis of 1
