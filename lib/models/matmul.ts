// Matrix products laid out for tfjs-wasm's fast path, with gradients that stay on it.
//
// tfjs-wasm (4.22) sends a matmul to XNNPACK only when it is 2-D and untransposed (about 25–30
// GFLOP/s on one core here); transposeA, transposeB and batched matmuls run a scalar loop at about
// 2 GFLOP/s. tfjs's own gradient of matMul(a, b) uses transposeA and transposeB, so a training step
// on wasm spent ~80% of its time in that loop. These products transpose explicitly (memory-bound,
// cheap) and multiply untransposed, forward and backward. Same math as tf.matMul; only the
// summation order of the fast kernel differs.
import * as tf from '@tensorflow/tfjs';

/**
 * x [N, in] · wᵀ for w [out, in] → [N, out]. Gradients: dx = dy·w and dw = dyᵀ·x, the latter as
 * (xᵀ·dy)ᵀ when that transposes fewer elements (a wide output such as the LM head).
 */
export function matMulT(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([x, w]);
    return {
      value: tf.matMul(x, tf.transpose(w)), // [N, out]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as tf.Tensor2D[];
        const d = dy as tf.Tensor2D; // [N, out]
        const [N, inDim] = xs.shape;
        const outDim = ws.shape[0];
        const dw = N * outDim <= N * inDim + inDim * outDim ? tf.matMul(tf.transpose(d), xs) : tf.transpose(tf.matMul(tf.transpose(xs), d)); // [out, in]
        return [tf.matMul(d, ws), dw]; // [N, in], [out, in]
      },
    };
  });
  return f(x, w) as tf.Tensor2D;
}

/** c [N, K] · w [K, D] → [N, D] where only w needs a gradient (a one-hot embedding lookup): dw = cᵀ·dy, untransposed. */
export function constMatMul(c: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [w, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    save([c]);
    return {
      value: tf.matMul(c, w), // [N, D]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.matMul(tf.transpose(saved[0] as tf.Tensor2D), dy as tf.Tensor2D), // [K, D]
    };
  });
  return f(w) as tf.Tensor2D;
}
