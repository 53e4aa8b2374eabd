// Engines 'pytorch-fp32' and 'pytorch-bf16': PyTorch + transformers, eager (no torch.compile, no
// quantized or sparse kernels), what a researcher runs when no inference engine is at hand. The
// kit's (compressed) model is written as an HF directory (lib/models/hf.ts saveModel, fp32
// safetensors) and timed by a Python worker (scripts/py/engine_torch.py) over a line protocol:
// greedy generation with the KV cache, one readback per token, as the other engines. One worker per
// Python executable serves every engine of the process (importing torch takes seconds); it exits
// with the process. No Python with torch and transformers is EngineNotRun.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../cli';
import { saveModel } from '../../models/hf';
import { perLayerWidthKeys } from '../../models/weights';
import {
  EngineNotRun, WARMUP_MIN_MS, checkSettings, promptIds, summarize, timingOf,
  type BenchSettings, type Engine, type EngineInput, type EngineMeasurement, type Prepared,
} from './types';

export type TorchDtype = 'fp32' | 'bf16';

export interface PyTorchOptions {
  dtype: TorchDtype; // fp32 (TF32 off: the kit computes in fp32) or bf16 (what a GPU user would pick)
  python: string; // the interpreter with torch and transformers
  workDir: string; // where the HF directories are written (removed after each measurement)
}

export const pytorchDefaults: PyTorchOptions = {
  dtype: 'fp32',
  python: process.env.LLMCB_PYTHON ?? 'python3', // LLMCB_PYTHON picks another interpreter (a venv)
  workDir: 'tmp/torch', // ignored by git
};

const WORKER = path.join(REPO_ROOT, 'scripts/py/engine_torch.py');

type Answer = { ok: true; [k: string]: unknown } | { ok: false; error: string };

/** The Python side: one request line out, one answer line back, one request at a time. */
class TorchWorker {
  private readonly proc: ChildProcess;
  private readonly answers: AsyncIterator<string>;
  private stderr = '';
  private failure: string | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(python: string) {
    this.proc = spawn(python, [WORKER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.on('error', (e) => (this.failure = `${python} does not start: ${e.message}`));
    this.proc.on('exit', (code, signal) => (this.failure ??= `the worker exited (${signal ?? `code ${code}`}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`));
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    this.answers = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
    this.hold(false);
  }

  /** Whether the worker keeps Node's event loop alive: only while a request waits for its answer. */
  private hold(on: boolean): void {
    for (const h of [this.proc, this.proc.stdin, this.proc.stdout, this.proc.stderr] as unknown as { ref?(): void; unref?(): void }[]) (on ? h?.ref : h?.unref)?.call(h);
  }

  request(req: Record<string, unknown>): Promise<Answer> {
    const run = async (): Promise<Answer> => {
      if (this.failure) return { ok: false, error: this.failure };
      this.hold(true);
      try {
        this.proc.stdin!.write(`${JSON.stringify(req)}\n`);
        const line = await this.answers.next();
        if (line.done) return { ok: false, error: this.failure ?? 'the worker closed its output' };
        return JSON.parse(line.value) as Answer;
      } finally {
        this.hold(false);
      }
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

const workers = new Map<string, TorchWorker>();
function workerFor(python: string): TorchWorker {
  let w = workers.get(python);
  if (!w) workers.set(python, (w = new TorchWorker(python)));
  return w;
}

export interface PyTorchPrepared extends Prepared {
  dir: string;
  vocabSize: number;
  maxPositions: number;
}

export class PyTorchEngine implements Engine<PyTorchPrepared> {
  readonly name: string;

  private constructor(
    readonly opts: PyTorchOptions,
    readonly device: string,
    private readonly worker: TorchWorker,
  ) {
    this.name = `pytorch-${opts.dtype}`;
  }

  /** Starts (or reuses) the worker and asks it for torch, transformers and the device. */
  static async create(options: Partial<PyTorchOptions> = {}): Promise<PyTorchEngine> {
    const o = { ...pytorchDefaults, ...options };
    if (o.dtype !== 'fp32' && o.dtype !== 'bf16') throw new Error(`pytorch engine: dtype must be fp32 or bf16, got '${String(o.dtype)}'`);
    const worker = workerFor(o.python);
    const a = await worker.request({ op: 'probe' });
    if (!a.ok) throw new EngineNotRun(`pytorch-${o.dtype}`, `no PyTorch with transformers in ${o.python} (scripts/py/engine_torch.py): ${a.error}`);
    const where = a.cuda ? `${a.device} (PyTorch ${a.torch} CUDA, transformers ${a.transformers})` : `CPU (PyTorch ${a.torch}, transformers ${a.transformers})`;
    return new PyTorchEngine(o, where, worker);
  }

  /** Writes the (compressed) model as an HF directory the worker loads. */
  async prepare(input: EngineInput): Promise<PyTorchPrepared> {
    const perLayer = perLayerWidthKeys(input.model.config);
    if (perLayer.length) throw new EngineNotRun(this.name, `model '${input.model.name}' has blocks of differing widths (${perLayer.join(', ')}: LLM-Pruner), which transformers' configs do not express (one head count and MLP width for every block)`);
    const tag = createHash('sha1').update(JSON.stringify([input.model.name, input.method, input.compress?.config ?? {}])).digest('hex').slice(0, 10);
    const dir = path.resolve(this.opts.workDir, `${input.model.name}-${input.method}-${tag}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    await saveModel(input.model, dir);
    const notes = ['the model as an HF directory (fp32 safetensors), run dense: eager PyTorch has no quantized or sparse kernels'];
    if (input.compress?.quantized?.size) notes.push('quantized weights run dequantized');
    if (input.compress?.actQuant) notes.push('activation quantization not applied (weights only)');
    if (input.sparse) notes.push('sparse weights run dense');
    if (this.opts.dtype === 'bf16') notes.push('weights cast to bf16 at load');
    return {
      dir,
      vocabSize: input.model.config.vocabSize,
      maxPositions: input.model.config.maxPositions,
      format: `transformers ${this.opts.dtype} (HF export)`,
      notes,
      dispose: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }

  async measure(p: PyTorchPrepared, settings: BenchSettings): Promise<EngineMeasurement> {
    checkSettings(settings);
    const { promptTokens: P, newTokens: N, batch: B } = settings;
    if (P + N > p.maxPositions) throw new Error(`${this.name}: prompt ${P} + new ${N} tokens exceed the model's context ${p.maxPositions}`);
    const a = await this.worker.request({
      op: 'measure',
      model: p.dir,
      dtype: this.opts.dtype,
      prompts: Array.from({ length: B }, (_, b) => promptIds(P, p.vocabSize, settings.seed + b)),
      new_tokens: N,
      warmup: settings.warmup,
      warmup_min_ms: WARMUP_MIN_MS,
      repeats: settings.repeats,
    });
    if (!a.ok) throw new Error(`${this.name}: ${a.error}`);
    const runs = (a.runs as number[][][]).map(timingOf);
    return summarize(runs, settings, (a.peak_memory_bytes as number | null) ?? null, a.memory_what as string, [...p.notes, ...(a.notes as string[])]);
  }

  async dispose(): Promise<void> {
    // The worker serves the process's other engines; it exits with the process.
  }
}
