// GGUF export of a zoo-shaped LLaMA model with the zoo's byte-level BPE tokenizer.json (the
// tokenizer the zoo's models ship with): llama.cpp tokenizes text as the kit does, continues it
// greedily with the same tokens and scores it with the same perplexity. Weights are random (the
// trained zoo may be absent here); the check is the format, not the model.
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { exportLlamaGguf, readGguf } from '../lib/efficiency/gguf';
import { llamaCppPerplexity, openLlama } from '../lib/efficiency/engines/llamacpp';
import { kitPerplexity } from '../lib/efficiency/engines/webgpu';
import { loadTokenizer } from '../lib/models/hf';
import { randomModel } from '../lib/models/random';
import { generate } from '../lib/models/transformer';
import { disposeModel } from '../lib/models/load';
import { ZOO, zooHfConfig } from '../lib/train/zoo';
import { initRuntime } from '../lib/runtime';

const repoRoot = path.resolve(__dirname, '..');

describe('BPE tokenizer.json models in llama.cpp', () => {
  it('same tokens, same greedy continuation, same perplexity', async () => {
    const rt = await initRuntime({ backend: 'wasm' });
    expect(rt.backend).toBe('wasm');
    const model = randomModel(zooHfConfig(ZOO['llama-1m']), { std: 0.08, seed: 3, name: 'llama-1m-random' });
    model.tokenizer = loadTokenizer(path.join(repoRoot, 'models/zoo/tokenizer'), model.config.vocabSize);
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'gguf-bpe-')), 'm.gguf');
    try {
      await exportLlamaGguf(model, file, { type: 'f32' });
      const g = readGguf(file);
      expect(g.metadata.get('tokenizer.ggml.model')).toBe('gpt2');
      expect(g.metadata.get('tokenizer.ggml.pre')).toBe('gpt-2');
      expect((g.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(model.config.vocabSize);
      const llama = await openLlama(false);
      try {
        const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
        const text = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; 12 tribes!';
        const ids = model.tokenizer.encode(text);
        expect(lm.tokenize(text).map(Number)).toEqual(ids);
        const prompt = model.tokenizer.encode(text, { bos: true });
        const want = await generate(model, prompt, { maxNewTokens: 8, stopAtEos: false });
        const ctx = await lm.createContext({ contextSize: 64, threads: 1 });
        const got: number[] = [];
        for await (const t of ctx.getSequence().evaluate(prompt as never[], { temperature: 0 })) {
          got.push(Number(t));
          if (got.length >= 8) break;
        }
        await ctx.dispose();
        const corpus = model.tokenizer.encode(text.repeat(6));
        const a = await llamaCppPerplexity(lm, corpus, 64, 2);
        const b = await kitPerplexity(model, corpus, 64, 2);
        expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(1e-3);
        expect(got).toEqual(want);
        await lm.dispose();
      } finally {
        await llama.dispose();
      }
    } finally {
      disposeModel(model);
    }
  }, 120_000);
});
