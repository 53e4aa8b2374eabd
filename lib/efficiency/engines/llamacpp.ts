// Engine 'llama.cpp' through node-llama-cpp's prebuilt binaries (Vulkan on GPU hosts, CPU in CI).
// The kit's model is exported to GGUF (lib/efficiency/gguf.ts) in the method's own format where
// one matches, loaded with every layer offloaded, and driven token by token: prefill = the prompt
// evaluated in one batch up to the first new token, decode = the greedy tokens after it.
// node-llama-cpp never builds or downloads here (build: 'never'); its failures become EngineNotRun.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Llama, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { exportLlamaGguf, llamaGgufUnsupported, type ExportType, type GgufExportReport } from '../gguf';
import {
  EngineNotRun, checkSettings, promptIds, samplePeak, summarize, timingOf, warmThenTime,
  type BenchSettings, type Engine, type EngineInput, type EngineMeasurement, type Prepared, type RunTiming,
} from './types';

export interface LlamaCppOptions {
  gpu: 'vulkan' | false; // llama.cpp backend: the prebuilt Vulkan build on GPU hosts, CPU otherwise
  workDir: string; // where exported GGUF files are written
  denseType: 'f32' | 'f16'; // storage of dense and sparse models (sparse models run dense: no sparse kernels)
  quantType: ExportType; // storage of quantized models ('auto': the method's own codes where a format matches)
  threads: number | null; // CPU threads (null: node-llama-cpp's default)
}

export const llamaCppDefaults: LlamaCppOptions = {
  gpu: false, // CI has no GPU
  workDir: 'tmp/gguf', // ignored by git
  denseType: 'f32', // the kit's models are fp32; f32 keeps the export exact
  quantType: 'auto', // the method's integer codes, exactly, where GGUF has the format
  threads: null, // llama.cpp's own choice
};

/** Loads node-llama-cpp's prebuilt binding; any failure (no binary, no Vulkan device) is EngineNotRun. */
export async function openLlama(gpu: 'vulkan' | false): Promise<Llama> {
  const name = gpu ? `llama.cpp-${gpu}` : 'llama.cpp-cpu';
  let mod: typeof import('node-llama-cpp');
  try {
    mod = await import('node-llama-cpp');
  } catch (e) {
    throw new EngineNotRun(name, `node-llama-cpp does not load: ${(e as Error).message}`);
  }
  let llama: Llama;
  try {
    llama = await mod.getLlama({ gpu, build: 'never', logLevel: mod.LlamaLogLevel.error, progressLogs: false });
  } catch (e) {
    throw new EngineNotRun(name, `no usable prebuilt llama.cpp binary (${gpu || 'cpu'}): ${(e as Error).message.split('\n')[0]}`);
  }
  if ((llama.gpu || false) !== gpu) {
    await llama.dispose();
    throw new EngineNotRun(name, `asked for ${gpu || 'cpu'}, node-llama-cpp gave ${llama.gpu || 'cpu'}`);
  }
  return llama;
}

export interface LlamaCppPrepared extends Prepared {
  model: LlamaModel;
  gguf: GgufExportReport;
  vocabSize: number;
}

export class LlamaCppEngine implements Engine<LlamaCppPrepared> {
  readonly name: string;
  readonly device: string;

  private constructor(
    readonly llama: Llama,
    readonly opts: LlamaCppOptions,
    device: string,
  ) {
    this.name = opts.gpu ? `llama.cpp-${opts.gpu}` : 'llama.cpp-cpu';
    this.device = device;
  }

  static async create(options: Partial<LlamaCppOptions> = {}): Promise<LlamaCppEngine> {
    const o = { ...llamaCppDefaults, ...options };
    const llama = await openLlama(o.gpu);
    let device = 'cpu';
    try {
      const names = await llama.getGpuDeviceNames();
      device = o.gpu ? `${names.join(', ') || 'unknown GPU'} (llama.cpp ${o.gpu})` : `CPU x${llama.cpuMathCores} (llama.cpp cpu)`;
    } catch {
      device = o.gpu ? `unknown GPU (llama.cpp ${o.gpu})` : 'CPU (llama.cpp cpu)';
    }
    return new LlamaCppEngine(llama, o, device);
  }

  /** Exports the model to GGUF (the method's codes where a format matches) and loads it. */
  async prepare(input: EngineInput): Promise<LlamaCppPrepared> {
    const why = llamaGgufUnsupported(input.model.config);
    if (why) throw new EngineNotRun(this.name, `GGUF export: model '${input.model.name}' has ${why}`);
    const quantized = input.compress?.quantized?.size ? input.compress.quantized : null;
    const type: ExportType = quantized && !input.sparse ? this.opts.quantType : this.opts.denseType;
    mkdirSync(this.opts.workDir, { recursive: true });
    const tag = createHash('sha1').update(JSON.stringify([input.model.name, input.method, input.compress?.config ?? {}, type])).digest('hex').slice(0, 10);
    const file = path.join(this.opts.workDir, `${input.model.name}-${input.method}-${tag}.gguf`);
    const gguf = await exportLlamaGguf(input.model, file, { type, quantized, embedType: this.opts.denseType });
    let model: LlamaModel;
    try {
      model = await this.llama.loadModel({ modelPath: file, gpuLayers: this.opts.gpu ? 'max' : 0 });
    } catch (e) {
      throw new EngineNotRun(this.name, `llama.cpp refused ${path.basename(file)}: ${(e as Error).message.split('\n')[0]}`);
    }
    const notes = [`GGUF ${gguf.fileType}: ${gguf.summary}`];
    if (input.sparse) notes.push('sparse weights stored dense: llama.cpp has no sparse kernels');
    return {
      model,
      gguf,
      vocabSize: input.model.config.vocabSize,
      format: `GGUF ${gguf.fileType}`,
      notes,
      dispose: () => model.dispose(),
    };
  }

  async measure(p: LlamaCppPrepared, settings: BenchSettings): Promise<EngineMeasurement> {
    checkSettings(settings);
    const { promptTokens: P, newTokens: N, batch: B } = settings;
    const V = p.vocabSize;
    if (P + N > p.model.trainContextSize) throw new Error(`${this.name}: prompt ${P} + new ${N} tokens exceed the model's context ${p.model.trainContextSize}`);
    const ctx = await p.model.createContext({
      contextSize: P + N,
      sequences: B,
      batchSize: Math.min(P * B, 8192),
      ...(this.opts.threads ? { threads: this.opts.threads } : {}),
    });
    const prompts = Array.from({ length: B }, (_, b) => promptIds(P, V, settings.seed + b));
    const seqs = prompts.map(() => ctx.getSequence());
    const probe = this.opts.gpu ? async () => (await this.llama.getVramState()).used : () => process.memoryUsage().rss;
    try {
      const { result: runs, peak } = await samplePeak(probe, () => warmThenTime(settings, () => runOnce(seqs, prompts, N)));
      const what = this.opts.gpu ? 'device VRAM in use (llama.cpp getVramState, whole device)' : 'process RSS';
      return summarize(runs, settings, peak, what, [...p.notes, `context ${P + N} tokens, ${B} sequence(s)`]);
    } finally {
      await ctx.dispose();
    }
  }

  async dispose(): Promise<void> {
    await this.llama.dispose();
  }
}

/** One timed run: every sequence prefilled together, then greedy decoding to N tokens (EOS ignored). */
async function runOnce(seqs: LlamaContextSequence[], prompts: number[][], N: number): Promise<RunTiming> {
  await Promise.all(seqs.map((s) => s.clearHistory()));
  const t0 = performance.now();
  const per = await Promise.all(
    seqs.map(async (seq, b) => {
      const times: number[] = [];
      for await (const _tok of seq.evaluate(prompts[b] as Token[], { temperature: 0 })) {
        times.push(performance.now() - t0);
        if (times.length >= N) break;
      }
      return times;
    }),
  );
  return timingOf(per);
}

/**
 * Token-level perplexity of a GGUF model in llama.cpp over non-overlapping windows of `seqlen`
 * tokens (the kit's protocol: loss over every predicted position, no BOS inserted).
 */
export async function llamaCppPerplexity(model: LlamaModel, ids: readonly number[], seqlen: number, maxWindows: number): Promise<{ ppl: number; nll: number; tokens: number; windows: number }> {
  const windows = Math.min(Math.floor(ids.length / seqlen), maxWindows);
  if (windows < 1) throw new Error(`perplexity: ${ids.length} tokens make no window of ${seqlen}`);
  const ctx = await model.createContext({ contextSize: seqlen, batchSize: seqlen, sequences: 1 });
  let nll = 0;
  let count = 0;
  try {
    const seq = ctx.getSequence();
    for (let w = 0; w < windows; w++) {
      await seq.clearHistory();
      const win = ids.slice(w * seqlen, (w + 1) * seqlen);
      const input = win.map((t, i) => (i < seqlen - 1 ? ([t as Token, { generateNext: { logits: true } }] as [Token, { generateNext: { logits: true } }]) : (t as Token)));
      const out = await seq.controlledEvaluate(input);
      for (let i = 0; i < seqlen - 1; i++) {
        const logits = out[i]?.next?.logits;
        if (!logits) throw new Error(`perplexity: llama.cpp returned no logits at window ${w} position ${i}`);
        let max = -Infinity;
        for (const v of logits.values()) max = Math.max(max, v);
        let sum = 0;
        for (const v of logits.values()) sum += Math.exp(v - max);
        const target = logits.get(win[i + 1] as Token);
        if (target === undefined) throw new Error(`perplexity: no logit for token ${win[i + 1]}`);
        nll += max + Math.log(sum) - target;
        count++;
      }
    }
  } finally {
    await ctx.dispose();
  }
  return { ppl: Math.exp(nll / count), nll, tokens: count, windows };
}
