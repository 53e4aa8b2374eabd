// Track 5 engines on CPU with stories260K: the HTTP client against the kit's own server on
// loopback (tokens received = tokens requested, latencies positive and ordered), llama.cpp (CPU
// build) and the kit executor measured at stated settings, and the not-run paths.
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaCppEngine } from '../lib/efficiency/engines/llamacpp';
import { PyTorchEngine } from '../lib/efficiency/engines/pytorch';
import { OpenAiHttpEngine, readSse } from '../lib/efficiency/engines/openai-http';
import { EngineNotRun, WARMUP_MIN_MS, benchDefaults, promptIds, stat, summarize, warmThenTime, type BenchSettings, type EngineMeasurement } from '../lib/efficiency/engines/types';
import { KitEngine } from '../lib/efficiency/engines/webgpu';
import { loadHfDir } from '../lib/models/hf';
import { loadLlama2c } from '../lib/models/llama2c';
import { generate } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { initRuntime } from '../lib/runtime';
import { startServer, type Server } from '../scripts/serve';
import { speedups } from '../scripts/bench-engines';
import { makeRow } from '../lib/results';

const repoRoot = path.resolve(__dirname, '..');
const settings: BenchSettings = { ...benchDefaults, promptTokens: 16, newTokens: 8, batch: 1, warmup: 1, repeats: 3 };

function sane(m: EngineMeasurement): void {
  for (const s of [m.prefillTokPerS, m.decodeTokPerS, m.ttftMs, m.itlMs, m.throughputTokPerS]) {
    expect(s.n).toBe(settings.repeats);
    expect(s.min).toBeGreaterThan(0);
    expect(s.min).toBeLessThanOrEqual(s.median);
    expect(s.median).toBeLessThanOrEqual(s.max);
    expect(Number.isFinite(s.max)).toBe(true);
  }
}

describe('statistics and settings', () => {
  it('stat: median, spread and standard error of literal samples', () => {
    const s = stat([3, 1, 2, 10]);
    expect(s).toMatchObject({ median: 2.5, min: 1, max: 10, n: 4 });
    expect(s.stderr).toBeCloseTo(Math.sqrt(((1 - 4) ** 2 + (2 - 4) ** 2 + (3 - 4) ** 2 + (10 - 4) ** 2) / 3) / 2, 12);
    expect(stat([5]).stderr).toBeNull();
  });

  it('promptIds is deterministic, in range and avoids the special ids', () => {
    const a = promptIds(100, 512, 7);
    expect(a).toEqual(promptIds(100, 512, 7));
    expect(a).not.toEqual(promptIds(100, 512, 8));
    expect(Math.min(...a)).toBeGreaterThanOrEqual(3);
    expect(Math.max(...a)).toBeLessThan(512);
  });

  it('summarize: rates from timings, and refuses short streams or disordered times', () => {
    const s2: BenchSettings = { ...settings, promptTokens: 10, newTokens: 5, batch: 2, repeats: 1 };
    const m = summarize([{ ttftMs: 100, totalMs: 300, tokens: [5, 5], gapsMs: [50, 50, 50, 50] }], s2, null, 'none', []);
    expect(m.prefillTokPerS.median).toBeCloseTo(200, 9); // 2 × 10 tokens in 0.1 s
    expect(m.decodeTokPerS.median).toBeCloseTo(40, 9); // 2 × 4 tokens in 0.2 s
    expect(m.throughputTokPerS.median).toBeCloseTo(100, 9); // 2 × 15 tokens in 0.3 s
    expect(() => summarize([{ ttftMs: 100, totalMs: 300, tokens: [5, 4], gapsMs: [1] }], s2, null, '', [])).toThrow(/5\/4 new tokens per sequence, 5 were requested/);
    expect(() => summarize([{ ttftMs: 300, totalMs: 100, tokens: [5, 5], gapsMs: [1] }], s2, null, '', [])).toThrow(/out of order/);
  });

  it('warm-up runs go on until the asked count and WARMUP_MIN_MS; only the repeats are returned; warmup 0 warms nothing', async () => {
    let calls = 0;
    const fast = async () => {
      await new Promise((r) => setTimeout(r, 50));
      return ++calls;
    };
    const t0 = performance.now();
    const timed = await warmThenTime({ ...settings, warmup: 1, repeats: 3 }, fast);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(WARMUP_MIN_MS);
    expect(calls - 3).toBeGreaterThanOrEqual(Math.floor(WARMUP_MIN_MS / 60)); // warm-up runs of ~50 ms fill the least time
    expect(timed).toEqual([calls - 2, calls - 1, calls]);
    calls = 0;
    expect(await warmThenTime({ ...settings, warmup: 0, repeats: 2 }, fast)).toEqual([1, 2]);
  });

  it('readSse joins multi-line data and handles CRLF and split chunks', async () => {
    const enc = new TextEncoder();
    const parts = ['data: {"a":', '1}\r\n\r\ndata: x\ndata: y\n\n', 'data: [DONE]\n\n'];
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const p of parts) c.enqueue(enc.encode(p));
        c.close();
      },
    });
    const got: string[] = [];
    await readSse(body, (d) => got.push(d));
    expect(got).toEqual(['{"a":1}', 'x\ny', '[DONE]']);
  });
});

describe('speed ratios', () => {
  it('compressed / dense in the same engine and model, and OM_hard = 100·sqrt(mean r²)', () => {
    const ctx = { run_id: 'r', git_sha: 'abcdef0', started_at: '2025-01-01T00:00:00Z', backend: 'wasm', device: 'cpu' };
    const row = (method: string, task: string, metric: string, value: number | null) =>
      makeRow(ctx, { track: 5, model: 'm', model_family: 'llama', method, method_config: method === 'dense' ? {} : { bits: 4 }, task, metric, value, higher_is_better: true, ...(value === null ? { status: 'not_run' as const, note: 'no server' } : {}) });
    const rows = [
      row('dense', 'llama.cpp', 'decode_tok_per_s', 100), row('dense', 'llama.cpp', 'prefill_tok_per_s', 1000), row('dense', 'kit', 'decode_tok_per_s', 10),
      row('rtn', 'llama.cpp', 'decode_tok_per_s', 200), row('rtn', 'llama.cpp', 'prefill_tok_per_s', 1000), row('rtn', 'kit', 'decode_tok_per_s', 10),
      row('rtn', 'llama.cpp', 'ttft_ms', 5), row('rtn', 'vllm', 'decode_tok_per_s', null),
    ];
    const out = speedups(rows);
    const ratios = out.filter((r) => r.kind === 'ratio' && r.method === 'rtn').map((r) => [r.engine, r.metric, r.value]);
    expect(ratios).toEqual([['llama.cpp', 'decode_tok_per_s', 2], ['llama.cpp', 'prefill_tok_per_s', 1], ['kit', 'decode_tok_per_s', 1]]);
    const om = out.find((r) => r.kind === 'OM_hard' && r.method === 'rtn')!;
    expect(om.value).toBeCloseTo(100 * Math.sqrt((4 + 1 + 1) / 3), 10);
    expect(om.metric).toBe('OM_hard over 3 pairs');
  });
});

describe('engines on stories260K (CPU)', () => {
  let model: Model;
  let server: Server;
  beforeAll(async () => {
    const rt = await initRuntime({ backend: 'wasm' });
    expect(rt.backend).toBe('wasm');
    model = loadLlama2c(path.join(repoRoot, 'models/stories260K/stories260K.bin'));
    server = await startServer(model, { port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    for (const t of model?.weights.values() ?? []) t.dispose();
  });

  it('the kit server answers like the kit: non-streamed greedy completion equals generate', async () => {
    const prompt = model.tokenizer.encode('Once upon a time', { bos: true });
    const want = await generate(model, prompt, { maxNewTokens: 12 });
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 12, temperature: 0 }),
    });
    const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number; prompt_tokens: number } };
    expect(body.choices[0].text).toBe(model.tokenizer.decode(want));
    expect(body.choices[0].text).toMatch(/^, there was a little girl/);
    expect(body.usage).toMatchObject({ prompt_tokens: prompt.length, completion_tokens: 12 });
    const bad = await fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: [1, 99999], max_tokens: 2 }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/token ids must be integers in 0\.\.511/);
  }, 60_000);

  it('HTTP client against the kit server: tokens received = requested, latencies positive and ordered', async () => {
    const before = tf.memory().numTensors;
    for (const endpoint of ['completions', 'chat'] as const) {
      const eng = await OpenAiHttpEngine.create({ baseUrl: server.url, engine: 'kit-serve', endpoint });
      const p = await eng.prepare({ model, compress: null, method: 'dense', sparse: false });
      for (const batch of [1, 2]) {
        const m = await eng.measure(p, { ...settings, batch });
        sane(m);
        // The kit server serves streams one after another: with two, the slower stream's first token waits for the other stream.
        if (batch === 2) expect(m.ttftMs.median).toBeGreaterThan(m.itlMs.median * (settings.newTokens - 1));
      }
      await eng.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  it('an unreachable server is EngineNotRun with the reason', async () => {
    const err = await OpenAiHttpEngine.create({ baseUrl: 'http://127.0.0.1:1', engine: 'vllm', timeoutMs: 2000 }).catch((e) => e);
    expect(err).toBeInstanceOf(EngineNotRun);
    expect(err.message).toMatch(/^vllm: not run: no server at http:\/\/127\.0\.0\.1:1/);
    const wrong = await OpenAiHttpEngine.create({ baseUrl: server.url, engine: 'kit-serve', model: 'other' }).catch((e) => e);
    expect(wrong.message).toMatch(/does not serve 'other' \(it serves stories260K\)/);
  });

  it('llama.cpp (CPU build) and the kit executor measure the model at the stated settings', async () => {
    const eng = await LlamaCppEngine.create({ workDir: path.join(repoRoot, 'tmp/test-gguf'), threads: 1 });
    expect(eng.name).toBe('llama.cpp-cpu');
    const p = await eng.prepare({ model, compress: null, method: 'dense', sparse: false });
    expect(p.format).toBe('GGUF F32');
    for (const batch of [1, 2]) {
      const m = await eng.measure(p, { ...settings, batch });
      sane(m);
      expect(m.peakMemoryBytes).toBeGreaterThan(0);
      expect(m.notes.join(' ')).toMatch(new RegExp(`${batch} sequence`));
    }
    await p.dispose();
    await eng.dispose();
    const before = tf.memory().numTensors;
    const kit = await KitEngine.create();
    expect(kit.name).toBe('kit-wasm');
    const kp = await kit.prepare({ model, compress: null, method: 'dense', sparse: false });
    sane(await kit.measure(kp, settings));
    await expect(kit.measure(kp, { ...settings, batch: 2 })).rejects.toBeInstanceOf(EngineNotRun);
    expect(tf.memory().numTensors).toBe(before);
  }, 180_000);

  it('PyTorch engine: the worker protocol (a stand-in worker) and the exported HF directory', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'torch-engine-'));
    process.env.FAKE_TORCH_LOG = path.join(tmp, 'requests.jsonl');
    try {
      const eng = await PyTorchEngine.create({ dtype: 'bf16', python: path.join(repoRoot, 'test/fixtures/fake-torch-worker.mjs'), workDir: tmp });
      expect(eng.name).toBe('pytorch-bf16');
      expect(eng.device).toBe('Fake GPU (PyTorch 0.0-fake CUDA, transformers 0.0-fake)');
      const p = await eng.prepare({ model, compress: null, method: 'dense', sparse: true });
      // The worker gets the model as written: it loads back equal to the kit's.
      const back = loadHfDir(p.dir);
      for (const [name, t] of model.weights) expect(Array.from(back.weights.get(name)!.dataSync())).toEqual(Array.from(t.dataSync()));
      for (const t of back.weights.values()) t.dispose();
      expect(p.notes.join('; ')).toMatch(/sparse weights run dense; weights cast to bf16/);
      const m = await eng.measure(p, { ...settings, batch: 2 });
      // Fixed times: first token at 10 ms, the last at 10 + 2·(N − 1) ms.
      const N = settings.newTokens;
      expect(m.prefillTokPerS.median).toBeCloseTo((2 * settings.promptTokens) / 0.01, 6);
      expect(m.decodeTokPerS.median).toBeCloseTo((2 * (N - 1)) / (0.002 * (N - 1)), 6);
      expect(m.itlMs.median).toBeCloseTo(2, 9);
      expect(m.peakMemoryBytes).toBe(1234);
      expect(m.notes).toContain('fake worker');
      const sent = readFileSync(process.env.FAKE_TORCH_LOG, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(sent.map((r) => r.op)).toEqual(['probe', 'measure']);
      expect(sent[1]).toMatchObject({ dtype: 'bf16', new_tokens: N, warmup: settings.warmup, warmup_min_ms: WARMUP_MIN_MS, repeats: settings.repeats });
      expect(sent[1].prompts).toEqual([promptIds(16, 512, 0), promptIds(16, 512, 1)]);
      // LLM-Pruner's per-block widths have no transformers config: refused before anything is written.
      const pruned: Model = { ...model, name: 'pruned', config: { ...model.config, hf: { ...model.config.hf, intermediate_size_per_layer: [96, 80, 96, 96, 96] } } };
      const refused = await eng.prepare({ model: pruned, compress: null, method: 'llm-pruner', sparse: false }).catch((e) => e);
      expect(refused).toBeInstanceOf(EngineNotRun);
      expect(refused.message).toMatch(/^pytorch-bf16: not run: model 'pruned' has blocks of differing widths \(intermediate_size_per_layer: LLM-Pruner\)/);
      // A failure on the Python side is an error naming it; the worker serves the next request.
      await expect(eng.measure(p, { ...settings, newTokens: 41 })).rejects.toThrow(/pytorch-bf16: RuntimeError: CUDA out of memory/);
      await p.dispose();
      expect(existsSync(p.dir)).toBe(false);
      await expect(eng.measure(p, settings)).rejects.toThrow(/no HF model in/);
    } finally {
      delete process.env.FAKE_TORCH_LOG;
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);

  it('PyTorch engine: no interpreter, or no torch in it, is EngineNotRun with the reason', async () => {
    const none = await PyTorchEngine.create({ python: '/nonexistent/python3' }).catch((e) => e);
    expect(none).toBeInstanceOf(EngineNotRun);
    expect(none.message).toMatch(/^pytorch-fp32: not run: no PyTorch with transformers in \/nonexistent\/python3 .*does not start: spawn \/nonexistent\/python3 ENOENT/);
    // The real worker with this machine's python3: CI has no torch (then the reason names the missing module); with torch, it measures.
    const real = await PyTorchEngine.create({ python: 'python3', workDir: path.join(repoRoot, 'tmp/test-torch') }).catch((e) => e);
    if (real instanceof EngineNotRun) {
      expect(real.message).toMatch(/^pytorch-fp32: not run: no PyTorch with transformers in python3 \(scripts\/py\/engine_torch\.py\): ModuleNotFoundError: No module named '(torch|transformers)'/);
    } else {
      const p = await real.prepare({ model, compress: null, method: 'dense', sparse: false });
      sane(await real.measure(p, settings));
      await p.dispose();
    }
  }, 120_000);

  it('a GGUF llama.cpp refuses is EngineNotRun, not a crash', async () => {
    const eng = await LlamaCppEngine.create({ workDir: path.join(repoRoot, 'tmp/test-gguf'), threads: 1 });
    try {
      // A config that disagrees with the tensors (FFN width): the export is written, llama.cpp rejects the shapes.
      const broken: Model = { ...model, config: { ...model.config, intermediateSize: 100 }, name: 'broken' };
      const err = await eng.prepare({ model: broken, compress: null, method: 'dense', sparse: false }).catch((e) => e);
      expect(err).toBeInstanceOf(EngineNotRun);
      expect(err.message).toMatch(/llama\.cpp-cpu: not run: llama\.cpp refused broken-dense-/);
      // A model the export cannot write is refused before any file is written.
      const opt: Model = { ...model, config: { ...model.config, arch: 'opt' }, name: 'opt-like' };
      const refused = await eng.prepare({ model: opt, compress: null, method: 'dense', sparse: false }).catch((e) => e);
      expect(refused).toBeInstanceOf(EngineNotRun);
      expect(refused.message).toMatch(/^llama\.cpp-cpu: not run: GGUF export: model 'opt-like' has the 'opt' architecture is not llama\.cpp's 'llama' graph/);
    } finally {
      await eng.dispose();
    }
  }, 60_000);
});
