// Engine 'webgpu': the kit's own inference executor (lib/engine: a planned forward with its KV
// cache, Decoder) on GPU hosts; on wasm/cpu the tfjs path (lib/models/transformer.ts generate),
// named kit-wasm / kit-cpu so rows never pass a CPU run off as WebGPU. A model the executor cannot
// run (packed quantized linears) takes the tfjs path with the custom WGSL kernels (lib/kernels)
// unless created with kernels 'off', and the row's note says so; quantized weights without a
// packed form run dequantized in fp32, so their speed-up is measured, not assumed.
import * as tf from '@tensorflow/tfjs';
import { windowPerplexity } from '../../eval/perplexity';
import { describeRuntime, measurePeakMemory } from '../../runtime';
import { withKernels, type KernelMode } from '../../kernels';
import { generate } from '../../models/transformer';
import { Decoder } from '../../engine/generate';
import { executorUnsupported } from '../../engine/executor';
import type { InferenceModel } from '../../engine/inference';
import {
  EngineNotRun, checkSettings, promptIds, summarize, timingOf, warmThenTime,
  type BenchSettings, type Engine, type EngineInput, type EngineMeasurement, type Prepared, type RunTiming,
} from './types';

export interface KitPrepared extends Prepared {
  model: InferenceModel;
}

export class KitEngine implements Engine<KitPrepared> {
  private constructor(
    readonly name: string,
    readonly device: string,
    readonly kernels: KernelMode,
  ) {}

  /** The engine on tfjs's current backend (call initRuntime first); kernels 'auto' (default) uses the custom kernels on webgpu. */
  static async create(opts: { kernels?: KernelMode } = {}): Promise<KitEngine> {
    const rt = await describeRuntime();
    const kernels = rt.backend === 'webgpu' ? (opts.kernels ?? 'auto') : 'off';
    return new KitEngine(rt.backend === 'webgpu' ? 'webgpu' : `kit-${rt.backend}`, rt.device, kernels);
  }

  async prepare(input: EngineInput): Promise<KitPrepared> {
    const notes: string[] = [];
    const packed = this.kernels === 'auto' ? (input.model.packedLinears?.size ?? 0) : 0;
    if (packed) notes.push(`${packed} quantized linears run packed on the quantized kernels (lib/kernels)`);
    else if (input.compress?.quantized?.size) notes.push('quantized weights run dequantized in fp32 (no packed linears on the kernels)');
    if (input.compress?.actQuant && !input.model.actQuant) notes.push('activation quantization not applied during generation (weights only)');
    if (input.model.actQuant) notes.push('activations fake-quantized in fp32 during generation (InferenceModel.actQuant)');
    if (input.sparse) notes.push('sparse weights run dense (no sparse kernels)');
    const format = this.name === 'webgpu' && executorUnsupported(input.model) === null ? 'fp32 kit executor (WebGPU)' : `fp32 tfjs ${tf.getBackend()}`;
    return { model: input.model, format, notes, dispose: async () => undefined };
  }

  async measure(p: KitPrepared, settings: BenchSettings): Promise<EngineMeasurement> {
    checkSettings(settings);
    const { promptTokens: P, newTokens: N, batch: B } = settings;
    if (B !== 1) throw new EngineNotRun(this.name, `the kit's generate decodes one sequence at a time (batch ${B} asked)`);
    const c = p.model.config;
    if (P + N > c.maxPositions) throw new Error(`${this.name}: prompt ${P} + new ${N} tokens exceed the model's context ${c.maxPositions}`);
    const prompt = promptIds(P, c.vocabSize, settings.seed);
    const why = this.name === 'webgpu' ? executorUnsupported(p.model) : 'not on webgpu';
    const decoder = why === null ? Decoder.create(p.model, P + N) : null;
    const notes = [...p.notes, decoder ? 'the kit inference executor (lib/engine): planned forward, KV cache, one readback per token' : this.name === 'webgpu' ? `tfjs path (the executor does not run this model: ${why})` : 'tfjs path'];
    /** One generation over the prompt (a warm-up or a timed run): its token times. */
    const once = async (probe: { sample(): void } | null): Promise<RunTiming> => {
      const times: number[] = [];
      const t0 = performance.now();
      // Both paths read each token back from the device before the next step, so times are synced.
      const opts = {
        maxNewTokens: N,
        greedy: true,
        stopAtEos: false,
        onToken: () => {
          times.push(performance.now() - t0);
          if (times.length === 1) probe?.sample();
        },
      };
      const out = decoder ? await decoder.generate(prompt, opts) : await generate(p.model, prompt, opts);
      if (out.length !== times.length) throw new Error(`${this.name}: generate returned ${out.length} tokens but reported ${times.length}`);
      return timingOf([times]);
    };
    try {
      if (decoder) {
        const runs = await warmThenTime(settings, () => once(null));
        const weights = [...p.model.weights.values(), ...[...(p.model.splitWeights?.values() ?? [])].flat()].reduce((a, t) => a + 4 * t.size, 0);
        return summarize(runs, settings, weights + decoder.exec.allocatedBytes, 'model weights + executor buffers (all allocated up front)', notes);
      }
      const { result: runs, peak } = await withKernels({ mode: this.kernels }, () => measurePeakMemory((probe) => warmThenTime(settings, () => once(probe))));
      const gpu = peak.peakGpuAllocatedBytes;
      return summarize(
        runs,
        settings,
        gpu ?? peak.peakTensorBytes,
        gpu !== null ? 'GPU bytes allocated by tfjs (high-water mark incl. its buffer pool)' : 'live tfjs tensor bytes (sampled)',
        [...notes, this.kernels === 'auto' ? 'custom WGSL kernels on (lib/kernels)' : 'plain tfjs ops (custom kernels off)'],
      );
    } finally {
      await decoder?.dispose();
    }
  }

  async dispose(): Promise<void> {
    // Nothing engine-wide to free: models belong to the caller.
  }
}

/**
 * The kit's token-level perplexity over non-overlapping windows of `seqlen` tokens (loss over every
 * predicted position, no BOS inserted), as the evaluation protocol (lib/eval's windowPerplexity);
 * for checking GGUF exports.
 */
export async function kitPerplexity(model: InferenceModel, ids: readonly number[], seqlen: number, maxWindows: number): Promise<{ ppl: number; nll: number; tokens: number; windows: number }> {
  if (!(maxWindows >= 1)) throw new Error(`perplexity: maxWindows ${maxWindows} must be ≥ 1`);
  const r = await windowPerplexity(model, ids, { seqlen, windows: Number.isFinite(maxWindows) ? maxWindows : null });
  return { ppl: r.ppl, nll: r.nll, tokens: r.predicted, windows: r.windows };
}
