// The GPU-side Scorer (lib/eval/scorer.ts's interface) over the executor: requests become
// sequences packed into steps by a token budget (longest first, no padding), only the scored
// positions get logits, and log-softmax, the target's log-likelihood and the greedy flag are
// computed on the GPU; one small readback per step, two steps in flight. Requests are fed as
// every scorer feeds them (lib/eval/scorer.ts continuationInput, nextTokenInput).
//
// Shared contexts: continuation requests with the same context (a multiple-choice item's choices)
// form a group whose longest common input prefix runs once, as its own sequence; each choice then
// runs only its remaining tokens, attending to the prefix's keys (the executor's StepSeq.prefix),
// and a position inside the prefix is scored once for every choice that reads it. The numbers are
// those of running each request alone (the prefix's keys and values are the same computation).
import { assertFinite } from '../eval/finite';
import type { InferenceModel } from './inference';
import { continuationInput, nextTokenInput, type ContinuationRequest, type ContinuationResult, type NextTokenRequest, type NextTokenResult, type Progress, type Scorer } from '../eval/scorer';
import { Executor, type ExecutorOptions, type StepInput, type StepOutput } from './executor';
import type { KernelTimes } from '../kernels/timing';

/** One request as the model reads it: input tokens, scored positions and tokens. */
interface Seq {
  req: number;
  input: number[];
  positions: number[]; // positions whose next-token distribution is read (one score row each)
  tokens: number[]; // the tokens scored, `width` per position (flat: position j's are tokens[j·width …])
  width: number;
  truncated: number;
  /** Requests with the same key may share their common input prefix (contextKey; null: never). */
  group: number | null;
}

/** What one step runs: requests sharing `prefix` tokens (0: one request alone). */
interface Unit {
  prefix: number;
  members: Seq[];
  tokens: number; // tokens the unit puts in a step
  scoreRows: number; // distinct score rows
  items: number;
  lengths: number[]; // sequence lengths (prefix first), for attention blocks
}

export interface EngineScorerOptions {
  /** Sizes of the executor each call plans (defaults: sized from the requests, the model and the device). */
  executor: Partial<ExecutorOptions>;
  /** Run the common prefix of continuation requests with the same context once. */
  sharePrefixes: boolean;
  /** Names the model (and method) in errors, e.g. a non-finite log-probability. */
  label: string;
  /** Profiling: every step's dispatches timed with timestamp queries, their GPU time added here (kernels/timing.ts KernelTimes). */
  times?: KernelTimes;
}

export class EngineScorer implements Scorer {
  readonly opts: EngineScorerOptions;

  /** A scorer of `model` with sequences of at most maxLength tokens. Each call plans an executor
   * sized to its requests and frees it before returning, so nothing outlives the call. */
  constructor(
    readonly model: InferenceModel,
    readonly maxLength = model.config.maxPositions,
    opts: Partial<EngineScorerOptions> = {},
  ) {
    this.opts = { executor: {}, sharePrefixes: true, label: model.name, ...opts };
    if (!(Number.isInteger(maxLength) && maxLength >= 1)) throw new Error(`EngineScorer: maxLength ${maxLength} must be a positive integer`);
    if (maxLength > model.config.maxPositions) throw new Error(`EngineScorer: maxLength ${maxLength} exceeds the model's context ${model.config.maxPositions}`);
  }

  async continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    const seqs = reqs.map((r, k): Seq => {
      const c = continuationInput(r, k, this.maxLength);
      return { req: k, input: c.input, positions: c.positions, tokens: c.tokens, width: 1, truncated: c.truncated, group: this.opts.sharePrefixes ? contextKey(r.context) : null };
    });
    const out = await this.run(seqs, onProgress);
    return reqs.map((r, k) => {
      let s = 0;
      let greedy = true;
      for (let i = out.offsets[k]; i < out.offsets[k + 1]; i++) {
        s += out.logprobs[i]; // float64 on the host
        greedy &&= out.greedy[i] === 1;
      }
      const tokens = seqs[k].positions.length;
      return { logprob: s, greedy, truncated: seqs[k].truncated, tokens, unscored: r.continuation.length - tokens };
    });
  }

  async nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    const seqs = reqs.map((r, k): Seq => {
      const { input, truncated } = nextTokenInput(r, k, this.maxLength);
      return { req: k, input, positions: [input.length - 1], tokens: r.candidates, width: r.candidates.length, truncated, group: null };
    });
    const out = await this.run(seqs, onProgress);
    return reqs.map((_, k) => ({ logprobs: Array.from(out.logprobs.subarray(out.offsets[k], out.offsets[k + 1])), truncated: seqs[k].truncated }));
  }

  /**
   * Packs units (longest first) into steps within every per-step bound; returns every item's
   * log-probability and greedy flag, sequence k's at [offsets[k], offsets[k + 1]) in its order.
   */
  private async run(seqs: Seq[], onProgress?: Progress): Promise<{ logprobs: Float64Array; greedy: Uint8Array; offsets: Uint32Array }> {
    const total = seqs.reduce((n, s) => n + s.input.length, 0);
    const itemsPerRow = Math.max(1, ...seqs.map((s) => s.width));
    const offsets = new Uint32Array(seqs.length + 1);
    seqs.forEach((s, k) => (offsets[k + 1] = offsets[k] + s.tokens.length));
    const logprobs = new Float64Array(offsets[seqs.length]);
    const greedy = new Uint8Array(offsets[seqs.length]);
    const exec = Executor.create(this.model, { itemsPerRow, fitTokens: Math.max(this.maxLength, total), ...this.opts.executor });
    const pending: Promise<void>[] = [];
    try {
      const { maxTokens, maxScoreRows, maxItems, maxBlocks } = exec.sizes;
      if (maxTokens < this.maxLength) throw new Error(`EngineScorer: the executor holds ${maxTokens} tokens per step, fewer than one sequence of ${this.maxLength}`);
      const fits = (u: Unit) => u.tokens <= maxTokens && u.scoreRows <= maxScoreRows && u.items <= maxItems && exec.blocksFor(u.lengths) <= maxBlocks;
      const units = makeUnits(seqs, fits);
      const order = units.map((_, i) => i).sort((a, b) => units[b].tokens - units[a].tokens || a - b);
      let done = 0;
      let i = 0;
      while (i < order.length) {
        const step: Unit[] = [];
        let T = 0;
        let R = 0;
        let I = 0;
        let nb = 0;
        while (i < order.length) {
          const u = units[order[i]];
          const blocks = exec.blocksFor(u.lengths);
          if (step.length > 0 && (T + u.tokens > maxTokens || R + u.scoreRows > maxScoreRows || I + u.items > maxItems || nb + blocks > maxBlocks)) break;
          if (!fits(u)) throw new Error(`request ${u.members[0].req}: ${u.tokens} tokens / ${u.items} scored items exceed one executor step`);
          step.push(u);
          T += u.tokens;
          R += u.scoreRows;
          I += u.items;
          nb += blocks;
          i++;
        }
        const input: StepInput = { seqs: [], scoreRows: [], items: [] };
        let t = 0;
        for (const u of step) {
          const P = u.prefix;
          const prefixRow = t;
          if (P > 0) {
            input.seqs.push({ ids: u.members[0].input.slice(0, P), pos0: 0, kvBase: t });
            t += P;
          }
          const scoreRowOf = new Map<number, number>(); // token row → score row (a prefix position is scored once)
          for (const s of u.members) {
            const own = t;
            input.seqs.push(P > 0 ? { ids: s.input.slice(P), pos0: P, kvBase: own - P, prefix: { kvBase: prefixRow, length: P } } : { ids: s.input, pos0: 0, kvBase: own });
            s.positions.forEach((p, j) => {
              const tokenRow = p < P ? prefixRow + p : own + p - P;
              let row = P > 0 ? scoreRowOf.get(tokenRow) : undefined; // only a prefix's rows repeat
              if (row === undefined) {
                row = input.scoreRows.length;
                input.scoreRows.push(tokenRow);
                if (P > 0) scoreRowOf.set(tokenRow, row);
              }
              for (let w = 0; w < s.width; w++) input.items.push(row, s.tokens[j * s.width + w]);
            });
            t += s.input.length - P;
          }
        }
        const collect = (o: StepOutput) => {
          assertFinite(o.logprobs, `${this.opts.label}: scoring a step of ${input.seqs.length} sequence(s), ${T} tokens: log-probabilities`);
          let n = 0;
          for (const u of step) {
            for (const s of u.members) {
              for (let i = offsets[s.req]; i < offsets[s.req + 1]; i++, n++) {
                logprobs[i] = o.logprobs[n];
                greedy[i] = o.greedy[n];
              }
            }
            done += u.members.length;
          }
          onProgress?.(done, seqs.length);
        };
        pending.push(exec.run(input, { times: this.opts.times }).then(collect));
        // Two steps in flight: the next step's upload and recording overlap this one's GPU work.
        if (pending.length >= 2) await pending.shift();
      }
      await Promise.all(pending);
      return { logprobs, greedy, offsets };
    } finally {
      await Promise.allSettled(pending);
      await exec.idle();
      exec.dispose();
    }
  }
}

/** A unit of the given members sharing their first `prefix` input tokens. */
function unit(members: Seq[], prefix: number): Unit {
  const shared = new Set<number>(); // scored positions inside the prefix: one score row for all members
  let own = 0;
  let tokens = prefix;
  let items = 0;
  for (const s of members) {
    tokens += s.input.length - prefix;
    for (const p of s.positions) {
      if (p < prefix) shared.add(p);
      else own++;
    }
    items += s.tokens.length;
  }
  return { prefix, members, tokens, scoreRows: shared.size + own, items, lengths: [...(prefix > 0 ? [prefix] : []), ...members.map((s) => s.input.length - prefix)] };
}

/**
 * Groups the sequences into units: those with the same group key share their longest common input
 * prefix (each keeps at least one token of its own); groups too large for one step are cut into
 * consecutive pieces that fit; the rest run alone.
 */
function makeUnits(seqs: Seq[], fits: (u: Unit) => boolean): Unit[] {
  const groups = new Map<number, Seq[]>();
  const units: Unit[] = [];
  for (const s of seqs) {
    if (s.group === null) {
      units.push(unit([s], 0));
      continue;
    }
    const members = groups.get(s.group);
    if (members) members.push(s);
    else groups.set(s.group, [s]);
  }
  for (const members of groups.values()) {
    let start = 0;
    while (start < members.length) {
      // The longest run of members from `start` that fits one step with their common prefix.
      let best = unit([members[start]], 0);
      for (let end = start + 2; end <= members.length; end++) {
        const u = unit(members.slice(start, end), commonPrefix(members.slice(start, end)));
        if (!fits(u)) break;
        best = u;
      }
      units.push(best);
      start += best.members.length;
    }
  }
  return units;
}

/**
 * A grouping key of a context: FNV-1a over its tokens, with its length. Equal contexts get equal
 * keys; a collision only makes unrelated requests one group, whose units share the prefix their
 * inputs really have (commonPrefix), so the numbers stay exact. (Joining the tokens into a string
 * key, as before, hashed and collected ~1 KB per HellaSwag request.)
 */
function contextKey(ids: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const t of ids) h = Math.imul(h ^ t, 0x01000193);
  return (h >>> 0) * 65536 + (ids.length % 65536);
}

/** Length of the longest common prefix of the members' inputs, leaving each at least one token of its own. */
function commonPrefix(members: Seq[]): number {
  const first = members[0].input;
  let P = Math.min(...members.map((s) => s.input.length - 1));
  for (const s of members.slice(1)) {
    let k = 0;
    while (k < P && s.input[k] === first[k]) k++;
    P = k;
  }
  return P;
}
