// The executor's exactness checks, shared by test/engine.test.ts (lavapipe, in CI) and
// scripts/check-executor.ts (the GPU host): per-request log-likelihoods against the tfjs path
// (the exact reference) on requests of every shape the evaluator sends, and logits against the
// transformers fixtures of test/fixtures/models.
import { readReference } from '../models/parity';
import { disposeModel, loadModel } from '../models/load';
import type { Model } from '../models/types';
import { tensorScorer } from '../eval/model-scorer';
import type { ContinuationRequest, NextTokenRequest } from '../eval/scorer';
import { mulberry32 } from '../rng';
import { Executor, executorUnsupported, type ExecutorOptions } from './executor';
import { Arena, engineDevice, Program, spill, type Buf, type DispatchSpec } from './gpu';
import { gemmKernel, gemmSplitReduceKernel, type GemmTile } from './kernels';
import { EngineScorer } from './scorer';

/** Requests of every shape the evaluator sends: short and long contexts and continuations, left truncation, continuations longer than the window, choices sharing a context, next-token candidates. */
export function checkRequests(V: number, maxLength: number): { cont: ContinuationRequest[]; next: NextTokenRequest[] } {
  const ids = (n: number, s: number) => Array.from({ length: n }, (_, i) => (i * 31 + s * 17 + 5) % V);
  return {
    cont: [
      { context: ids(20, 1), continuation: ids(5, 2) },
      { context: ids(3, 3), continuation: ids(40, 4) },
      { context: ids(70, 5), continuation: ids(1, 6) },
      { context: ids(1, 7), continuation: ids(Math.min(100, maxLength - 2), 8) },
      { context: ids(maxLength, 9), continuation: ids(3, 10) },
      { context: ids(2, 11), continuation: ids(maxLength + 5, 12) },
      // Choices of one item (a shared context, run once): continuations that differ at once, share
      // their first tokens, repeat one another, or are truncated on the left alike.
      ...[ids(4, 17), ids(9, 18), [...ids(2, 17), 1, 2, 3], ids(4, 17)].map((continuation) => ({ context: ids(25, 16), continuation })),
      ...[ids(3, 20), ids(3, 21)].map((continuation) => ({ context: ids(maxLength, 19), continuation })),
    ],
    next: [
      { context: ids(30, 13), candidates: [1, 2, 3, 4] },
      { context: ids(7, 14), candidates: [5, 6] },
      { context: ids(maxLength + 3, 15), candidates: [7, 8, 9, 10] },
    ],
  };
}

export interface ScorerAgreement {
  /** Largest relative difference of a request's log-likelihood (continuations) or log-prob (candidates). */
  maxRel: number;
  /** Requests whose greedy flag, scored-token count or truncation differ. */
  mismatches: number;
  requests: number;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);

/** The executor's scorer against the tfjs scorer on checkRequests (sequences of at most maxLength). */
export async function scorerAgreement(model: Model, maxLength = Math.min(128, model.config.maxPositions), opts: Partial<ExecutorOptions> = {}): Promise<ScorerAgreement> {
  const { cont, next } = checkRequests(model.config.vocabSize, maxLength);
  const ref = tensorScorer(model, {}, maxLength);
  const eng = new EngineScorer(model, maxLength, { executor: opts });
  const [a, b] = [await ref.continuations(cont), await eng.continuations(cont)];
  const [c, d] = [await ref.nextToken(next), await eng.nextToken(next)];
  let maxRel = 0;
  let mismatches = 0;
  a.forEach((x, k) => {
    maxRel = Math.max(maxRel, rel(b[k].logprob, x.logprob));
    if (b[k].greedy !== x.greedy || b[k].tokens !== x.tokens || b[k].truncated !== x.truncated || b[k].unscored !== x.unscored) mismatches++;
  });
  c.forEach((x, k) => {
    x.logprobs.forEach((v, j) => (maxRel = Math.max(maxRel, rel(d[k].logprobs[j], v))));
    if (d[k].truncated !== x.truncated) mismatches++;
  });
  return { maxRel: Number.isNaN(maxRel) ? Infinity : maxRel, mismatches, requests: cont.length + next.length };
}

/** The executor's logits of a transformers fixture (HF dir with reference.safetensors, right-padded batch): largest |difference| over real positions, or the reason it cannot run. */
export async function fixtureLogitParity(dir: string, tokenizer?: string): Promise<{ worst: number; compared: number } | { unsupported: string }> {
  const { ids, mask, logits } = readReference(dir);
  const [B, T] = ids.shape;
  const V = logits.shape[2];
  const model = await loadModel(dir, { tokenizer });
  try {
    const why = executorUnsupported(model);
    if (why) return { unsupported: why };
    const exec = Executor.create(model, { maxTokens: T, maxScoreRows: T });
    try {
      let worst = 0;
      let compared = 0;
      for (let b = 0; b < B; b++) {
        const row: number[] = [];
        for (let t = 0; t < T && mask.data[b * T + t] !== 0; t++) row.push(ids.data[b * T + t]);
        await exec.run({ seqs: [{ ids: row, pos0: 0, kvBase: 0 }], scoreRows: row.map((_, t) => t), items: [] });
        const got = await exec.readLogits(row.length);
        for (let t = 0; t < row.length; t++) {
          for (let v = 0; v < V; v++) {
            const d = Math.abs(got[t * V + v] - logits.data[(b * T + t) * V + v]);
            worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
            compared++;
          }
        }
      }
      return { worst, compared };
    } finally {
      exec.dispose();
    }
  } finally {
    disposeModel(model);
  }
}

/** Seeded values in [-1, 1). */
export function randomFloats(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/**
 * The dispatches of one fp32 GEMM y [M, N] = x [M, K] · W [N, K]ᵀ (store epilogue) with tiling t: the
 * GEMM, or with splits > 1 its split-K pass into a partials buffer of this arena and the reduce.
 */
export function gemmSpecs(arena: Arena, t: GemmTile, splits: number, M: number, K: number, N: number, x: Buf, w: Buf, y: Buf): DispatchSpec<unknown>[] {
  const params = () => ({ M, ldy: N, colOff: 0 });
  const grid = (): [number, number, number] => [Math.ceil(N / t.BN), Math.ceil(M / t.BM), splits];
  if (splits === 1) return [{ kernel: gemmKernel(K, N, t, 'store', false), buffers: [y, x, w], params, workgroups: grid }];
  const part = arena.storage(`partials-${splits}`, 4 * splits * M * N);
  return [
    { kernel: gemmKernel(K, N, t, 'store', false, splits), buffers: [part, x, w], params, workgroups: grid },
    { kernel: gemmSplitReduceKernel(N, splits, 'store', false), buffers: [y, part], params, workgroups: () => spill(Math.ceil((M * N) / 256), arena.device) },
  ];
}

/**
 * The executor's fp32 GEMM with tiling t, y [M, N] = x [M, K] · W [N, K]ᵀ on seeded values,
 * against a float64 host product: max |error| / max |y| (Infinity for NaN).
 */
export async function gemmTileError(t: GemmTile, M: number, K: number, N: number, splits = 1): Promise<number> {
  const xs = randomFloats(M * K, 1);
  const ws = randomFloats(N * K, 2);
  const arena = new Arena(engineDevice());
  try {
    const x = arena.upload('x', xs);
    const w = arena.upload('w', ws);
    const y = arena.storage('y', 4 * M * N);
    const specs = gemmSpecs(arena, t, splits, M, K, N, x, w, y);
    const prog = new Program(arena, specs, 'gemm-check');
    const enc = arena.device.createCommandEncoder();
    prog.record(enc, null);
    arena.device.queue.submit([enc.finish()]);
    const got = await arena.read(y, M * N);
    let err = 0;
    let scale = 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xs[m * K + k] * ws[n * K + k];
        err = Math.max(err, Math.abs(got[m * N + n] - s));
        scale = Math.max(scale, Math.abs(s));
      }
    }
    return Number.isNaN(err) || got.some(Number.isNaN) ? Infinity : err / scale;
  } finally {
    arena.destroy();
  }
}
