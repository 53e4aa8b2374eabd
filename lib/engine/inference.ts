// The inference state a model runs with: owned by the inference side (the forward pass of
// lib/models/transformer.ts, the kernels, the executor), not by the model representation
// (lib/models/types.ts Model: config, weights, tokenizer), which the loaders, the methods and the
// writers share. A compression method leaves it (CompressResult.actQuant, .quantized); the track
// runner, loadModel (packed directories) and the scripts attach it; disposeModel frees it.
import type { PackedLinear } from '../kernels/packed-linear';
import { disposePackedLinears } from '../kernels/packed-linear';
import type { Model } from '../models/types';
import type { ActQuantSpec } from '../quant/act';

export interface InferenceState {
  /** Activation quantization (W8A8 models): forward() fake-quantizes every linear input with it
   * through the onLinearInput hook, before any hook the caller passes. Absent/null: fp32 inputs. */
  actQuant?: ActQuantSpec | null;
  /** Quantized linears kept on the GPU for the quantized kernels (weight name → packed codes and
   * scales; lib/kernels/packed-linear.ts). With kernels on, linear() runs these instead of the
   * fp32 weight (which stays in `weights` for every other path); absent: fp32 everywhere. */
  packedLinears?: Map<string, PackedLinear>;
}

/** A model as the inference paths run it: the model and its inference state (a plain Model is one
 * with none). */
export type InferenceModel = Model & InferenceState;

/**
 * Gives a model the packed form of its quantized weights (a method's CompressResult.quantized and
 * actQuant, or a packed directory's modules), replacing any it had. Returns the weights left on the
 * fp32 path and why.
 */
export function attachPackedLinears(model: InferenceModel, packed: { linears: Map<string, PackedLinear>; skipped: Map<string, string> }): Map<string, string> {
  for (const name of packed.linears.keys()) {
    if (!model.weights.has(name)) {
      disposePackedLinears(packed.linears);
      throw new Error(`attachPackedLinears: model '${model.name}' has no weight '${name}'`);
    }
  }
  if (model.packedLinears) disposePackedLinears(model.packedLinears);
  model.packedLinears = packed.linears;
  return packed.skipped;
}
