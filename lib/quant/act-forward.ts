// The forward pass of a W8A8 model: every block's linear inputs fake-quantized through the
// onLinearInput hook (block by block, so static per-tensor scales know their block).
import * as tf from '@tensorflow/tfjs';
import type { Model } from '../models/types';
import { embed, head, runBlock, type ForwardOptions } from '../models/transformer';
import { shortLinearName } from '../methods/sequential';
import { actQuantHook, type ActQuantSpec } from './act';

/** Logits of a model whose linear inputs are fake-quantized (block by block, so static scales know their block). */
export function forwardActQuant(model: Model, ids: tf.Tensor2D, spec: ActQuantSpec, opts: Omit<ForwardOptions, 'onLinearInput'> = {}): tf.Tensor3D {
  return tf.tidy(() => {
    let x = embed(model, ids); // [B, T, D]
    for (let i = 0; i < model.config.numLayers; i++) {
      const hook = actQuantHook(spec, i, (l) => shortLinearName(model, l));
      x = runBlock(model, i, x, { ...opts, onLinearInput: hook });
    }
    return head(model, x); // [B, T, V]
  });
}
