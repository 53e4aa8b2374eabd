// The GPU-side Scorer (lib/eval/scorer.ts's interface) over the executor: requests become
// sequences packed into steps by a token budget (longest first, no padding), only the scored
// positions get logits, and log-softmax, the target's log-likelihood and the greedy flag are
// computed on the GPU; one small readback per step, two steps in flight. Requests are fed as
// every scorer feeds them (lib/eval/scorer.ts continuationInput, nextTokenInput).
import type { Model } from '../models/types';
import { continuationInput, nextTokenInput, type ContinuationRequest, type ContinuationResult, type NextTokenRequest, type NextTokenResult, type Progress, type Scorer } from '../eval/scorer';
import { assertFinite } from '../eval/finite';
import { Executor, type ExecutorOptions, type StepInput, type StepOutput } from './executor';

/** One request as the model reads it: input tokens, scored positions and tokens. */
interface Seq {
  req: number;
  input: number[];
  positions: number[]; // positions whose next-token distribution is read (one score row each)
  tokens: number[][]; // per position, the tokens scored there
  truncated: number;
}

export class EngineScorer implements Scorer {
  /** A scorer of `model` with sequences of at most maxLength tokens. Each call plans an executor
   * sized to its requests and frees it before returning, so nothing outlives the call. */
  constructor(
    readonly model: Model,
    readonly maxLength = model.config.maxPositions,
    private readonly opts: Partial<ExecutorOptions> = {},
    /** Names the model (and method) in errors, e.g. a non-finite log-probability. */
    readonly label = model.name,
  ) {
    if (!(Number.isInteger(maxLength) && maxLength >= 1)) throw new Error(`EngineScorer: maxLength ${maxLength} must be a positive integer`);
    if (maxLength > model.config.maxPositions) throw new Error(`EngineScorer: maxLength ${maxLength} exceeds the model's context ${model.config.maxPositions}`);
  }

  async continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    const seqs = reqs.map((r, k): Seq => {
      const c = continuationInput(r, k, this.maxLength);
      return { req: k, input: c.input, positions: c.positions, tokens: c.tokens.map((t) => [t]), truncated: c.truncated };
    });
    const out = await this.run(seqs, onProgress);
    return reqs.map((r, k) => {
      let s = 0;
      let greedy = true;
      for (const [lp, g] of out[k]) {
        s += lp; // float64 on the host
        greedy &&= g;
      }
      const tokens = seqs[k].positions.length;
      return { logprob: s, greedy, truncated: seqs[k].truncated, tokens, unscored: r.continuation.length - tokens };
    });
  }

  async nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    const seqs = reqs.map((r, k): Seq => {
      const { input, truncated } = nextTokenInput(r, k, this.maxLength);
      return { req: k, input, positions: [input.length - 1], tokens: [r.candidates], truncated };
    });
    const out = await this.run(seqs, onProgress);
    return reqs.map((_, k) => ({ logprobs: out[k].map(([lp]) => lp), truncated: seqs[k].truncated }));
  }

  /** Packs sequences (longest first) into steps within every per-step bound; returns per sequence its items' (logprob, greedy). */
  private async run(seqs: Seq[], onProgress?: Progress): Promise<[number, boolean][][]> {
    const total = seqs.reduce((n, s) => n + s.input.length, 0);
    const itemsPerRow = Math.max(1, ...seqs.map((s) => s.tokens.reduce((m, t) => Math.max(m, t.length), 0)));
    const exec = Executor.create(this.model, { itemsPerRow, fitTokens: Math.max(this.maxLength, total), ...this.opts });
    const pending: Promise<void>[] = [];
    try {
      const { maxTokens, maxScoreRows, maxItems, maxBlocks } = exec.sizes;
      if (maxTokens < this.maxLength) throw new Error(`EngineScorer: the executor holds ${maxTokens} tokens per step, fewer than one sequence of ${this.maxLength}`);
      const results: [number, boolean][][] = new Array(seqs.length);
      const order = seqs.map((_, i) => i).sort((a, b) => seqs[b].input.length - seqs[a].input.length || a - b);
      let done = 0;
      let i = 0;
      while (i < order.length) {
        const step: Seq[] = [];
        let T = 0;
        let R = 0;
        let I = 0;
        let nb = 0;
        while (i < order.length) {
          const s = seqs[order[i]];
          const L = s.input.length;
          const items = s.tokens.reduce((n, t) => n + t.length, 0);
          const blocks = exec.blocksFor([L]);
          if (step.length > 0 && (T + L > maxTokens || R + s.positions.length > maxScoreRows || I + items > maxItems || nb + blocks > maxBlocks)) break;
          if (L > maxTokens || s.positions.length > maxScoreRows || items > maxItems) throw new Error(`request ${s.req}: ${L} tokens / ${items} scored items exceed one executor step`);
          step.push(s);
          T += L;
          R += s.positions.length;
          I += items;
          nb += blocks;
          i++;
        }
        const input: StepInput = { seqs: [], scoreRows: [], items: [] };
        let t = 0;
        for (const s of step) {
          input.seqs.push({ ids: s.input, pos0: 0, kvBase: t });
          s.positions.forEach((p, j) => {
            const row = input.scoreRows.length;
            input.scoreRows.push(t + p);
            for (const token of s.tokens[j]) input.items.push({ row, token });
          });
          t += s.input.length;
        }
        const collect = (o: StepOutput) => {
          assertFinite(o.logprobs, `${this.label}: scoring a step of ${step.length} sequence(s), ${T} tokens: log-probabilities`);
          let n = 0;
          for (const s of step) {
            const r: [number, boolean][] = [];
            for (const toks of s.tokens) for (let j = 0; j < toks.length; j++, n++) r.push([o.logprobs[n], o.greedy[n] === 1]);
            results[s.req] = r;
          }
          done += step.length;
          onProgress?.(done, seqs.length);
        };
        pending.push(exec.run(input).then(collect));
        // Two steps in flight: the next step's upload and recording overlap this one's GPU work.
        if (pending.length >= 2) await pending.shift();
      }
      await Promise.all(pending);
      return results;
    } finally {
      await Promise.allSettled(pending);
      await exec.idle();
      exec.dispose();
    }
  }
}
