// Generation on the executor: a KV-cache decoder over one executor planned with a cache of
// `slots` sequences. Same contract as lib/models/transformer.ts generate (greedy or Gumbel-max
// sampling with host noise from the same seeded generator, EOS, context limit); each step reads
// back only the chosen ids. Also the prefill timing Track 5 and bench-forward need.
import { mulberry32 } from '../rng';
import type { InferenceModel } from './inference';
import { GENERATE_DEFAULTS, gumbel, type GenerateOptions } from '../models/transformer';
import { Executor, type ExecutorOptions, type StepOutput } from './executor';
import type { KernelTimes } from '../kernels/timing';

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
   * row statistics and argmax on the GPU; resolves when done (for timing; `times` profiles it, as Executor.run).
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
    const steps = Math.min(o.maxNewTokens, Math.min(c.maxPositions, length) - prompt.length + 1); // each step's input must fit the cache
    // Step s feeds the token of step s − 1 from the GPU (Executor.run's chained steps): step s + 1 is
    // submitted before step s is read back, so the GPU never waits for the host. A step past an
    // end-of-sequence token is submitted and then dropped.
    const pending: Promise<StepOutput>[] = [];
    const submit = (s: number) => {
      const sample = o.greedy ? undefined : { noise: gumbel(rand, V), temperature: o.temperature };
      const seq = s === 0 ? { ids: prompt, pos0: 0, kvBase: 0 } : { ids: [0], pos0: prompt.length + s - 1, kvBase: 0 };
      pending.push(this.exec.run({ seqs: [seq], scoreRows: [seq.ids.length - 1], items: [], sample }, { chained: s > 0, times: s > 0 ? times : undefined }));
    };
    let submitted = 0;
    try {
      while (out.length < steps) {
        while (submitted < steps && submitted <= out.length + 1) submit(submitted++);
        const id = (await pending.shift()!).argmax[0];
        out.push(id);
        o.onToken?.(id);
        if (o.stopAtEos && c.eosTokenId !== null && id === c.eosTokenId) break;
      }
    } finally {
      await Promise.allSettled(pending);
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.exec.idle();
    this.exec.dispose();
  }
}
