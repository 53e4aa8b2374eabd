// Track 3 and Track 4 meters. Everything here is measured by the runtime probes or counted from
// the model's actual weights and files, never estimated from a formula of the method.
//
// Track 3 (training consumption): wall time and peak memory of one compression run, calibration
//   data preparation included.
// Track 4 (inference consumption): peak memory while generating (fixed prompt length, batch and
//   new tokens), the model's stored size on disk in its packed format, and MACs per token at a
//   stated sequence length (zeros skipped, pruned shapes as they are, quantized MACs counted by an
//   explicit, selectable convention).
//
// Memory is the peak of live tfjs tensor bytes (weights, caches, activations), sampled at every
// step and every 50 ms: it is comparable across backends and regions. tfjs's WebGPU pool keeps
// freed buffers for the whole process, so its high-water mark is reported only as an extra,
// separately named figure (gpu_pool_high_water_bytes), never as the track's memory.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MetricName } from '../metrics/catalogue';
import type { CompressResult, MethodKind } from '../methods/types';
import { blockLinears, linearName } from '../models/arch';
import { saveModel } from '../models/hf';
import { embed, forward, generate, head, runBlock } from '../models/transformer';
import type { Model } from '../models/types';
import { actQuantHook, type ActQuantSpec } from '../quant/act';
import { toPattern } from '../quant/sparse-pattern';
import { saveSparseWeights } from '../quant/sparse';
import { shortLinearName } from '../methods/sequential';
import { measurePeakMemory, timeRegion, type MemoryProbe, type PeakMemory } from '../runtime/probes';
import { exportLlamaGguf, llamaGgufUnsupported } from './gguf';
import { countMacs, type MacReport } from './macs';
import { promptIds } from './engines/types';

// ---------------------------------------------------------------------------------------------
// Track 3

export interface TrainMeasurement {
  wallS: number; // seconds from the first calibration step to the compressed model
  peakBytes: number; // peak live tensor bytes in the region (the model's own weights included)
  peakRssBytes: number; // peak resident set of the process (host memory: Hessians live there)
  gpuPoolHighWaterBytes: number | null; // WebGPU only: tfjs's buffer pool high-water mark (process lifetime)
  peakGpuBytes: number | null; // WebGPU only: peak GPU bytes held by live tensors (torch.cuda.max_memory_allocated's analogue)
}

/**
 * Runs a compression (fn gets a sample() to call where intermediates peak, e.g. MethodHooks.sample)
 * and measures its wall time (device synchronised at both ends) and peak memory.
 */
export async function meterCompression<T>(fn: (sample: () => void) => Promise<T>): Promise<{ result: T; measurement: TrainMeasurement }> {
  let peak: PeakMemory | null = null;
  const { result, ms } = await timeRegion(async () => {
    const r = await measurePeakMemory((probe: MemoryProbe) => fn(() => probe.sample()));
    peak = r.peak;
    return r.result;
  });
  const p = peak as unknown as PeakMemory;
  return {
    result,
    measurement: { wallS: ms / 1000, peakBytes: p.peakTensorBytes, peakRssBytes: p.peakRssBytes, gpuPoolHighWaterBytes: p.peakGpuAllocatedBytes, peakGpuBytes: p.peakGpuInUseBytes },
  };
}

/** The Track 3 rows of a compression measurement, named by the metric catalogue (the pool's high-water only on WebGPU). */
export function trainMetrics(m: TrainMeasurement, backend: string): { metric: MetricName<3>; value: number; note: string }[] {
  const out: { metric: MetricName<3>; value: number; note: string }[] = [
    { metric: 'wall_time_s', value: m.wallS, note: 'calibration data prepared before (not included)' },
    { metric: 'peak_memory_bytes', value: m.peakBytes, note: `backend ${backend}; peak = live tfjs tensor bytes (model weights included), sampled per block and every 50 ms; host RSS peak ${m.peakRssBytes} B` },
  ];
  if (m.peakGpuBytes !== null) out.push({ metric: 'peak_gpu_tensor_bytes', value: m.peakGpuBytes, note: 'GPU bytes held by live tensors, sampled per block and every 50 ms (layer streaming: one block plus activations)' });
  if (m.gpuPoolHighWaterBytes !== null) out.push({ metric: 'gpu_pool_high_water_bytes', value: m.gpuPoolHighWaterBytes, note: "tfjs's WebGPU buffer pool high-water mark, process lifetime" });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Track 4: memory while generating

export interface GenerationMeterOptions {
  promptTokens: number; // fixed prompt length (synthetic ids, same in every run)
  batch: number; // sequences generated together
  newTokens: number; // tokens generated per sequence (EOS does not stop the measurement)
  seed: number; // seed of the prompt ids (engines/types promptIds)
}

export const generationMeterDefaults: GenerationMeterOptions = {
  promptTokens: 128, // same as Track 5's default prompt
  batch: 1, // single stream
  newTokens: 64, // enough steps for the KV cache to grow
  seed: 0, // the same prompt in every engine and meter
};

export interface GenerationMeasurement {
  peakBytes: number; // peak live tensor bytes while generating (weights + cache + activations)
  weightBytes: number; // bytes of the model's weight tensors at the start (the resident model)
  gpuPoolHighWaterBytes: number | null;
  tokens: number; // tokens generated in all
  ms: number;
  /** 'kv-cache': transformer.generate (batch 1, no activation quantization); 'recompute': full forward per step. */
  path: 'kv-cache' | 'recompute';
}

function weightBytes(model: Model): number {
  let b = 0;
  for (const t of model.weights.values()) b += t.size * 4;
  for (const ts of model.splitWeights?.values() ?? []) for (const t of ts) b += t.size * 4;
  return b;
}

/** Logits of the model's forward, with activation fake-quantization when the method needs it. */
function logitsOf(model: Model, ids: tf.Tensor2D, act: ActQuantSpec | null): tf.Tensor3D {
  if (!act) return forward(model, ids);
  return tf.tidy(() => {
    let x = embed(model, ids); // [B, T, D]
    for (let i = 0; i < model.config.numLayers; i++) {
      x = runBlock(model, i, x, { onLinearInput: actQuantHook(act, i, (l) => shortLinearName(model, l)) });
    }
    return head(model, x); // [B, T, V]
  });
}

/**
 * Greedy generation of `newTokens` tokens after a fixed synthetic prompt, measuring peak memory.
 * Batch 1 without activation quantization runs the engine's KV-cache generate(); otherwise every
 * step runs the full forward over the sequence so far (stated in `path`).
 */
export async function meterGeneration(model: Model, opts: Partial<GenerationMeterOptions> = {}, act: ActQuantSpec | null = null): Promise<GenerationMeasurement> {
  const o = { ...generationMeterDefaults, ...opts };
  for (const k of ['promptTokens', 'batch', 'newTokens'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`meterGeneration: ${k} must be a positive integer, got ${o[k]}`);
  }
  if (o.promptTokens + o.newTokens > model.config.maxPositions) {
    throw new Error(`meterGeneration: promptTokens ${o.promptTokens} + newTokens ${o.newTokens} exceed ${model.name}'s context of ${model.config.maxPositions}`);
  }
  const prompt = promptIds(o.promptTokens, model.config.vocabSize, o.seed);
  const path_: GenerationMeasurement['path'] = o.batch === 1 && !act ? 'kv-cache' : 'recompute';
  const w = weightBytes(model);
  const t0 = performance.now();
  const { result: tokens, peak } = await measurePeakMemory(async (probe) => {
    if (path_ === 'kv-cache') {
      const out = await generate(model, prompt, { maxNewTokens: o.newTokens, greedy: true, stopAtEos: false, onToken: () => probe.sample() });
      return out.length;
    }
    let seqs = Array.from({ length: o.batch }, () => [...prompt]);
    for (let s = 0; s < o.newTokens; s++) {
      const T = seqs[0].length;
      const next = tf.tidy(() => {
        const ids = tf.tensor2d(seqs.flat(), [o.batch, T], 'int32'); // [B, T]
        const logits = logitsOf(model, ids, act); // [B, T, V]
        probe.sample();
        const last = tf.slice(logits, [0, T - 1, 0], [o.batch, 1, model.config.vocabSize]); // [B, 1, V]
        return tf.argMax(tf.reshape(last, [o.batch, model.config.vocabSize]), 1); // [B]
      });
      const ids = Array.from(await next.data());
      next.dispose();
      seqs = seqs.map((q, b) => [...q, ids[b]]);
    }
    return o.batch * o.newTokens;
  });
  return { peakBytes: peak.peakTensorBytes, weightBytes: w, gpuPoolHighWaterBytes: peak.peakGpuAllocatedBytes, tokens, ms: performance.now() - t0, path: path_ };
}

// ---------------------------------------------------------------------------------------------
// Track 4: MACs with an explicit quantized-MAC convention

/** How a MAC whose weights (and maybe activations) are quantized is counted, in fp16-MAC units. */
export const QUANT_MAC_CONVENTIONS = {
  count: 'every multiply-accumulate counts 1 whatever its operand widths (the architecture count)',
  paper: 'a MAC on b-bit weights (b < 16) counts (b/16)^2, both operands taken at b bits: INT8 = 1/4 (LLMCBench Table 6: GPTQ INT8 0.23 vs dense 0.85 TMACs)',
  bitops: 'a MAC counts (weight bits x activation bits) / (16 x 16); activations are 16-bit unless the method quantizes them (W8A16 = 1/2, W8A8 = 1/4)',
} as const satisfies Record<string, string>;
export type QuantMacConvention = keyof typeof QUANT_MAC_CONVENTIONS;

/** Cost of one MAC in fp16-MAC units; full-precision weights (the kit's fp32 included) count 1. */
export function macWeight(convention: QuantMacConvention, weightBits: number | null, actBits: number | null): number {
  if (!(convention in QUANT_MAC_CONVENTIONS)) throw new Error(`unknown quantized-MAC convention '${convention}' (known: ${Object.keys(QUANT_MAC_CONVENTIONS).join(', ')})`);
  const w = weightBits === null || weightBits >= 16 ? 16 : weightBits;
  const a = actBits === null || actBits >= 16 ? 16 : actBits;
  if (convention === 'count') return 1;
  if (convention === 'paper') return (w / 16) ** 2;
  return (w * a) / 256;
}

export interface MacMeasurement {
  seqlen: number;
  convention: QuantMacConvention;
  /** MACs of one forward pass over seqlen tokens: non-zero linear MACs weighted by the convention, plus attention and head at full precision. */
  total: number;
  perToken: number;
  /** The same pass with every weight multiplying at full precision (the architecture count). */
  denseTotal: number;
  report: MacReport;
}

/** MACs per token at `seqlen`, from the model's weights (zeros skipped, pruned shapes as they are). */
export async function measureMacs(model: Model, compress: CompressResult | null, seqlen: number, convention: QuantMacConvention): Promise<MacMeasurement> {
  const report = await countMacs(model, { seqlen, attention: 'full', includeHead: true });
  const act = compress?.actQuant?.bits ?? null;
  let linear = 0;
  for (const [name, [, nz]] of Object.entries(report.perLinear)) {
    const bits = compress?.quantized.get(name)?.bits ?? null;
    linear += nz * macWeight(convention, bits, bits === null ? null : act);
  }
  const total = linear + report.attention + report.head;
  return { seqlen, convention, total, perToken: total / seqlen, denseTotal: report.dense, report };
}

// ---------------------------------------------------------------------------------------------
// Track 4: stored size on disk

export interface StoredSize {
  bytes: number; // size of the written file(s)
  format: string; // what was written, for the row's note
}

/**
 * The sparsity layout of a method's weights from its kind and config, or null when they are not
 * stored sparse (quantized, dense, or structurally pruned: smaller dense shapes).
 */
export function sparseLayout(kind: MethodKind | null, config: Record<string, unknown>): { n: number; m: number } | 'bitmask' | null {
  if (kind !== 'sparsity') return null;
  const p = toPattern((config.pattern ?? 0.5) as string | number);
  return p.kind === 'nm' ? { n: p.n, m: p.m } : 'bitmask';
}

/**
 * Writes the model in its packed format into a fresh temporary directory and returns the bytes
 * on disk: quantized LLaMA-family models as GGUF with the method's own integer codes
 * (Q8_0/Q4_0/Q4_1, other tensors fp32), sparse models as the kit's sparse safetensors (fp32
 * values + N:M positions or a bitmask), dense and structurally pruned models as GGUF fp32 (LLaMA)
 * or fp32 safetensors (other architectures). Values are fp32 throughout: the kit's compute width.
 */
export async function measureStoredSize(model: Model, kind: MethodKind | null, config: Record<string, unknown>, compress: CompressResult | null, workDir?: string): Promise<StoredSize> {
  const dir = fs.mkdtempSync(path.join(workDir ?? os.tmpdir(), 'llmcb-size-'));
  try {
    const quantized = compress?.quantized.size ? compress.quantized : null;
    const layout = sparseLayout(kind, config);
    if (quantized) {
      const why = llamaGgufUnsupported(model.config);
      if (why) throw new Error(`no packed on-disk format for quantized weights of model '${model.name}': the GGUF export refuses it (${why})`);
      const r = await exportLlamaGguf(model, path.join(dir, 'model.gguf'), { type: 'auto', quantized });
      return { bytes: fs.statSync(path.join(dir, 'model.gguf')).size, format: `GGUF ${r.fileType} (${r.summary})` };
    }
    if (layout) {
      const file = path.join(dir, 'model.safetensors');
      await saveSparseWeights(model, file, layout);
      return { bytes: fs.statSync(file).size, format: `llmcb sparse safetensors (${layout === 'bitmask' ? 'bitmask' : `${layout.n}:${layout.m}`}, fp32 values)` };
    }
    if (llamaGgufUnsupported(model.config) === null) {
      const r = await exportLlamaGguf(model, path.join(dir, 'model.gguf'), { type: 'f32' });
      return { bytes: fs.statSync(path.join(dir, 'model.gguf')).size, format: `GGUF ${r.fileType}` };
    }
    await saveModel(model, path.join(dir, 'hf'));
    const st = fs.readdirSync(path.join(dir, 'hf')).filter((f) => f.endsWith('.safetensors'));
    return { bytes: st.reduce((s, f) => s + fs.statSync(path.join(dir, 'hf', f)).size, 0), format: 'safetensors fp32' };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Every block linear's full weight name (for tests and reports). */
export function allLinearNames(model: Model): string[] {
  const out: string[] = [];
  for (let b = 0; b < model.config.numLayers; b++) for (const l of blockLinears(model.config.arch)) out.push(linearName(model.config.arch, b, l));
  return out;
}
