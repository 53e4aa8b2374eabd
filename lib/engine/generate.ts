// Generation on the executor: a KV-cache decoder over one executor planned with a cache of
// `slots` sequences. Same contract as lib/models/transformer.ts generate (greedy or Gumbel-max
// sampling with host noise from the same seeded generator, EOS, context limit); each step reads
// back only the chosen ids. Also the prefill timing Track 5 and bench-forward need.
import { mulberry32 } from '../rng';
import type { InferenceModel } from './inference';
import { GENERATE_DEFAULTS, gumbel, type GenerateOptions } from '../models/transformer';
import { Executor, type ExecutorOptions } from './executor';
import type { KernelTimes } from './gpu';

/** A decoder of one model: an executor with a KV cache of `length` positions for one sequence. */
export class Decoder {
  private constructor(readonly exec: Executor) {}

  /** Plans the model with a cache for one sequence of up to `length` positions (prompt + new tokens). */
  static create(model: InferenceModel, length: number, opts: Partial<ExecutorOptions> = {}): Decoder {
    if (!(Number.isInteger(length) && length >= 2)) throw new Error(`Decoder: length ${length} must be an integer ≥ 2`);
    return new Decoder(Executor.create(model, { maxTokens: length, maxScoreRows: length, itemsPerRow: 1, ...opts, cache: { slots: 1, length } }));
  }

  /**
   * Prefill of `prompt` with the logits of every position (as a plain forward computes them), their
   * row statistics and argmax on the GPU; resolves when done (for timing; `skip` as Executor.run).
   */
  async prefill(prompt: readonly number[], times?: KernelTimes): Promise<void> {
    const rows = Array.from({ length: prompt.length }, (_, i) => i);
    await this.exec.run({ seqs: [{ ids: prompt, pos0: 0, kvBase: 0 }], scoreRows: rows, items: [] }, { times });
  }

  /** Generates a continuation of `prompt` (see transformer.ts generate for the options); returns the new ids. With `times` every step is profiled (Executor.run). */
  async generate(prompt: readonly number[], opts: GenerateOptions = {}, times?: KernelTimes): Promise<number[]> {
    const o = { ...GENERATE_DEFAULTS, ...opts };
    if (prompt.length === 0) throw new Error('generate: the prompt is empty (prepend BOS to start from nothing)');
    if (!o.greedy && !(o.temperature > 0)) throw new Error(`generate: temperature must be > 0, got ${o.temperature}`);
    const c = this.exec.model.config;
    const V = c.vocabSize;
    const length = this.exec.options.cache!.length;
    if (prompt.length > length) throw new Error(`generate: a prompt of ${prompt.length} tokens exceeds the decoder's cache of ${length} positions`);
    const rand = mulberry32(o.seed);
    const out: number[] = [];
    let input = [...prompt];
    let past = 0;
    while (out.length < o.maxNewTokens && past + input.length <= Math.min(c.maxPositions, length)) {
      const sample = o.greedy ? undefined : { noise: gumbel(rand, V), temperature: o.temperature };
      const r = await this.exec.run({ seqs: [{ ids: input, pos0: past, kvBase: 0 }], scoreRows: [input.length - 1], items: [], sample }, { times: out.length > 0 ? times : undefined });
      const id = r.argmax[0];
      out.push(id);
      o.onToken?.(id);
      past += input.length;
      input = [id];
      if (o.stopAtEos && c.eosTokenId !== null && id === c.eosTokenId) break;
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.exec.idle();
    this.exec.dispose();
  }
}
