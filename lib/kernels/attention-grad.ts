// Attention under a gradient tape on the fp32 GEMM (lib/kernels/gemm.ts gemmWithGrad): the fused
// kernel (attention.ts) has no backward, and attentionPlain's batched tfjs matMuls are slow.
import * as tf from '@tensorflow/tfjs';
import { softmaxRows } from '../runtime/rows';
import { causalMask } from './attention';
import { gemmWithGrad, type GemmTilesFor } from './gemm';

/**
 * attentionPlain with the causal mask for T queries after `past` cached keys, one KV head (its rep
 * query heads) at a time, the two products on the fp32 GEMM with their gradients (gemmWithGrad, tiles
 * from tilesFor): scores [rep·T, S] = q·kᵀ, softmax, context = p·(vᵀ)ᵀ. Same inputs and output as
 * attentionPlain; only one head group's scores exist at a time.
 */
export function attentionOnGemm(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, past: number, tilesFor: GemmTilesFor): tf.Tensor2D {
  const [B, H, T, hd] = q.shape;
  const [, KVH, S] = k.shape;
  const rep = H / KVH;
  return tf.tidy(() => {
    const mask = causalMask(T, past); // [1, 1, T, S] or null
    const [qs, ks, vs] = [tf.unstack(tf.reshape(q, [B * KVH, rep * T, hd])), tf.unstack(tf.reshape(k, [B * KVH, S, hd])), tf.unstack(tf.reshape(v, [B * KVH, S, hd]))] as tf.Tensor2D[][]; // per KV head: [rep·T | S, hd]
    const ctx: tf.Tensor2D[] = []; // [rep·T, hd] per KV head
    for (let g = 0; g < B * KVH; g++) {
      let scores: tf.Tensor = tf.mul(gemmWithGrad(qs[g], ks[g], undefined, tilesFor), 1 / Math.sqrt(hd)); // [rep·T, S]
      if (mask) scores = tf.add(tf.reshape(scores, [rep, T, S]), tf.reshape(mask, [1, T, S]));
      const probs = tf.reshape(softmaxRows(scores), [rep * T, S]) as tf.Tensor2D;
      ctx.push(gemmWithGrad(probs, tf.transpose(vs[g]), undefined, tilesFor));
    }
    return tf.reshape(tf.transpose(tf.reshape(tf.stack(ctx), [B, H, T, hd]), [0, 2, 1, 3]), [B * T, H * hd]) as tf.Tensor2D;
  });
}
