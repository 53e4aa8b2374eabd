// Parity with Hugging Face transformers: compare the kit's logits and greedy continuations with
// reference fixtures made by scripts/hf_reference.py. Shared by test/models-parity.test.ts (wasm,
// in CI) and scripts/check-parity.ts (webgpu, on the GPU host, where vitest is not installed).
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { disposeModel, loadModel } from './load';
import { readSafetensorsHeader, readTensor } from './safetensors';
import { forward, generate } from './transformer';

export const PARITY_TOLERANCE = 1e-4; // max |logit difference| in fp32

/** Fixtures of the families beyond LLaMA and OPT (scripts/hf_reference.py --only glm,chatglm,qwen2,mistral_window on the GPU host). */
export const FAMILY_FIXTURES = ['glm', 'chatglm', 'qwen2', 'mistral_window'];

/** Fixture folders (each an HF dir with reference.safetensors) under root, sorted. */
export function parityFixtures(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((d) => existsSync(path.join(root, d, 'reference.safetensors'))).sort();
}

/** A fixture's reference tensors: input_ids [B, T], attention_mask [B, T], logits [B, T, V] (transformers, fp32);
 * greedy: transformers' greedy continuation ids [1, N] of a prompt [1, P], when the fixture has them. */
export function readReference(dir: string) {
  const file = path.join(dir, 'reference.safetensors');
  const h = readSafetensorsHeader(file);
  const get = (n: string) => {
    const e = h.entries.find((x) => x.name === n);
    if (!e) throw new Error(`${file}: no tensor '${n}'`);
    return { data: readTensor(file, e), shape: e.shape };
  };
  const has = (n: string) => h.entries.some((x) => x.name === n);
  const greedy = has('greedy_ids') ? { prompt: Array.from(get('greedy_prompt').data), ids: Array.from(get('greedy_ids').data) } : null;
  return { ids: get('input_ids'), mask: get('attention_mask'), logits: get('logits'), greedy };
}

export interface LogitParity {
  /** Largest |ours − transformers| over every vocabulary entry at every real (unpadded) position. */
  worst: number;
  compared: number;
  shape: number[];
  /** Live tensors after the comparison minus before (the model excluded): must be 0. */
  leaked: number;
  /** The kit's greedy continuation of the fixture's prompt next to transformers', when the fixture has one. */
  greedy: { got: number[]; expected: number[] } | null;
}

/** Loads the fixture model, runs the kit's forward on its padded batch and compares logits. */
export async function logitParity(dir: string, tokenizer?: string): Promise<LogitParity> {
  const ref = readReference(dir);
  const m = await loadModel(dir, { tokenizer });
  try {
    const before = tf.memory().numTensors;
    const [B, T] = ref.ids.shape;
    const V = ref.logits.shape[2];
    const ours = tf.tidy(() => {
      const ids = tf.tensor2d(Int32Array.from(ref.ids.data), [B, T], 'int32'); // [B, T]
      const mask = tf.tensor2d(Int32Array.from(ref.mask.data), [B, T], 'int32'); // [B, T]
      return forward(m, ids, { attentionMask: mask }); // [B, T, V]
    });
    const shape = ours.shape;
    const got = await ours.data();
    ours.dispose();
    const leaked = tf.memory().numTensors - before;
    let worst = 0;
    let compared = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        if (ref.mask.data[b * T + t] === 0) continue;
        for (let v = 0; v < V; v++) {
          const k = (b * T + t) * V + v;
          const d = Math.abs(got[k] - ref.logits.data[k]);
          worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
          compared++;
        }
      }
    }
    const greedy = ref.greedy ? { got: await generate(m, ref.greedy.prompt, { maxNewTokens: ref.greedy.ids.length, stopAtEos: false }), expected: ref.greedy.ids } : null;
    return { worst, compared, shape, leaked, greedy };
  } finally {
    disposeModel(m);
  }
}

/** The kit's greedy continuation of the fixture's prompt, next to transformers'. */
export async function greedyParity(
  source: string,
  greedyFile: string,
  tokenizer?: string,
): Promise<{ promptIds: number[]; refPromptIds: number[]; got: number[]; expected: number[] }> {
  const ref = JSON.parse(readFileSync(greedyFile, 'utf8')) as { prompt_ids: number[]; new_ids: number[] };
  const m = await loadModel(source, { tokenizer });
  try {
    const promptIds = m.tokenizer.encode('Once upon a time', { bos: true });
    const got = await generate(m, ref.prompt_ids, { maxNewTokens: ref.new_ids.length, stopAtEos: false });
    return { promptIds, refPromptIds: ref.prompt_ids, got, expected: ref.new_ids };
  } finally {
    disposeModel(m);
  }
}
