// The wasm plan's matmuls (lib/models/matmul.ts) against tfjs's matMul and its gradient: same values
// and same gradients for both ways of forming dw (a narrow and a wide output), on tfjs-wasm (where
// they take the XNNPACK path) and the pure-JS cpu backend. No tensor may leak.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { constMatMul, matMulT } from '../lib/models/matmul';
import { initRuntime } from '../lib/runtime';

const relErr = (a: tf.Tensor, b: tf.Tensor) =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / Math.max(1e-30, tf.max(tf.abs(b)).dataSync()[0]));

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`wasm-plan matmuls on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
    });
    afterAll(() => tf.disposeVariables());

    // [N, in, out]: the dw = dyᵀ·x form (out ≤ in) and the (xᵀ·dy)ᵀ form (out ≫ in, an LM head)
    for (const [N, inDim, outDim] of [
      [37, 24, 16],
      [64, 12, 200],
    ]) {
      it(`matMulT equals matMul(x, w, false, true) and its gradients, N=${N} in=${inDim} out=${outDim}`, () => {
        const before = tf.memory().numTensors;
        const x = tf.randomNormal([N, inDim], 0, 1, 'float32', 1) as tf.Tensor2D;
        const w = tf.randomNormal([outDim, inDim], 0, 1, 'float32', 2) as tf.Tensor2D;
        const up = tf.randomNormal([N, outDim], 0, 1, 'float32', 3); // a fixed upstream gradient
        const loss = (f: (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D) => (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a as tf.Tensor2D, b as tf.Tensor2D), up));
        const ref = tf.grads(loss((a, b) => tf.matMul(a, b, false, true)))([x, w]);
        const got = tf.grads(loss(matMulT))([x, w]);
        const yRef = tf.matMul(x, w, false, true);
        const y = matMulT(x, w);
        expect(y.shape).toEqual([N, outDim]);
        expect(relErr(y, yRef)).toBeLessThan(1e-6);
        expect(got[0].shape).toEqual([N, inDim]);
        expect(got[1].shape).toEqual([outDim, inDim]);
        expect(relErr(got[0], ref[0])).toBeLessThan(1e-6);
        expect(relErr(got[1], ref[1])).toBeLessThan(1e-6);
        tf.dispose([x, w, up, ...ref, ...got, yRef, y]);
        expect(tf.memory().numTensors).toBe(before);
      });
    }

    it('constMatMul (a one-hot lookup) equals matMul and its weight gradient', () => {
      const before = tf.memory().numTensors;
      const ids = tf.tensor1d([3, 0, 7, 3, 5, 1], 'int32');
      const c = tf.tidy(() => tf.oneHot(ids, 9).toFloat()) as tf.Tensor2D; // [6, 9]
      const w = tf.tidy(() => tf.variable(tf.randomNormal([9, 5], 0, 1, 'float32', 4))) as tf.Variable<tf.Rank.R2>; // tidy frees the initial value
      const up = tf.randomNormal([6, 5], 0, 1, 'float32', 5);
      const ref = tf.variableGrads(() => tf.sum(tf.mul(tf.matMul(c, w), up)), [w]);
      const got = tf.variableGrads(() => tf.sum(tf.mul(constMatMul(c, w), up)), [w]);
      expect(relErr(got.value, ref.value)).toBeLessThan(1e-6);
      expect(relErr(got.grads[w.name], ref.grads[w.name])).toBeLessThan(1e-6);
      // row 3 is looked up twice: its gradient is the sum of two upstream rows
      const dw = got.grads[w.name].arraySync() as number[][];
      const u = up.arraySync() as number[][];
      expect(Math.abs(dw[3][0] - u[0][0] - u[3][0])).toBeLessThan(1e-5);
      tf.dispose([ids, c, up, ref.value, got.value, ...Object.values(ref.grads), ...Object.values(got.grads)]);
      w.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}
