// Parity with Hugging Face transformers: logits of tiny random LLaMA, OPT, GLM (native and ChatGLM
// layouts), Qwen2 and Mistral models (fixtures made by scripts/hf_reference.py on the GPU host) within
// 1e-4 max absolute, and transformers' greedy stories260K continuation token for token. Backend:
// LLMCB_PARITY_BACKEND (default wasm; the GPU host runs it with webgpu), asserted.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime, type BackendName } from '../lib/runtime';
import { FAMILY_FIXTURES, greedyParity, logitParity, PARITY_TOLERANCE, parityFixtures } from '../lib/models/parity';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.join(repoRoot, 'test/fixtures/models');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const backend = (process.env.LLMCB_PARITY_BACKEND ?? 'wasm') as BackendName;

const dirs = parityFixtures(fixtures);
if (dirs.length === 0) console.warn(`skipping HF parity: no fixtures in ${fixtures} (run scripts/hf_reference.py on the GPU host)`);
const greedyFile = path.join(fixtures, 'stories260K_greedy.json');

beforeAll(async () => {
  const rt = await initRuntime({ backend });
  expect(rt.backend).toBe(backend);
});

describe(`transformers parity on ${backend}`, () => {
  it.skipIf(dirs.length === 0)('fixtures cover LLaMA (GQA, tied, llama3 and linear rope), OPT, GLM (both layouts), Qwen2 and Mistral', () => {
    expect(dirs).toEqual(expect.arrayContaining(['llama_gqa', 'llama_tied', 'llama_rope_llama3', 'opt_pre_proj', 'opt_post_ln', ...FAMILY_FIXTURES]));
  });

  for (const d of dirs) {
    it(`${d}: logits within ${PARITY_TOLERANCE} of transformers at every real position`, async () => {
      const r = await logitParity(path.join(fixtures, d), tokFile);
      expect(r.compared).toBeGreaterThan(r.shape[2] * r.shape[1]);
      expect(r.leaked).toBe(0);
      expect(r.worst).toBeLessThan(PARITY_TOLERANCE);
      if (r.greedy) expect(r.greedy.got).toEqual(r.greedy.expected);
    });
  }

  const sources: [string, string, string | undefined][] = [
    ['llama2.c files', path.join(repoRoot, 'models/stories260K/stories260K.bin'), undefined],
    ['shared HF directory', path.join(shared, 'reference/stories260K/hf'), tokFile],
  ];
  for (const [label, src, tok] of sources) {
    it.skipIf(!existsSync(greedyFile) || !existsSync(src))(`stories260K from the ${label}: greedy = transformers token for token`, async () => {
      const r = await greedyParity(src, greedyFile, tok);
      expect(r.promptIds).toEqual(r.refPromptIds);
      expect(r.got).toEqual(r.expected);
    });
  }
});
