// Fused RMSNorm, RoPE-with-head-transpose and SwiGLU kernels (lib/kernels/fused.ts): on a WebGPU
// adapter (lavapipe here) every small case against the plain tfjs ops with poisoned outputs.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ropeHeads, swiglu, rmsNorm } from '../lib/kernels/fused';
import { fusedChecks } from '../lib/kernels/fused-cases';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('fused block ops on webgpu', () => {
  itPassesChecks(fusedChecks(TEST_SEED));
  it('name mismatched shapes', () => {
    const x = tf.zeros([4, 8]);
    const w = tf.zeros([7]);
    const cos = tf.zeros([3, 8]) as tf.Tensor2D;
    expect(() => rmsNorm(x, w, 1e-5)).toThrow(/rmsNorm: x is \[4, 8\] but w has 7 entries/);
    expect(() => swiglu(x, w)).toThrow(/swiglu: gate \[4, 8\] and up \[7\] differ/);
    expect(() => ropeHeads(x as tf.Tensor2D, cos, cos, 1, 1)).toThrow(/ropeHeads: a \[4, 8\] is not \[B·T, heads·hd\]/);
    tf.dispose([x, w, cos]);
  });
});
