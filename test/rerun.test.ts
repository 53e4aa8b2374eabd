// Reproducibility of a re-run (lib/metrics/rerun.ts) on fixture rows: scores of the cells both runs
// ran must be equal, perplexities within PPL_REL_TOL; cells of one run only and cost tracks are not
// compared; a cell's latest row counts.
import { describe, expect, it } from 'vitest';
import { cellNote } from '../lib/matrix';
import { compareRuns, PPL_REL_TOL } from '../lib/metrics/rerun';
import { makeRow, type ResultRow } from '../lib/results';

const ctx = { run_id: 'r', git_sha: 'abcdef1', started_at: '2026-01-01T00:00:00Z', backend: 'webgpu', device: 'gpu' };
const row = (cell: string, metric: string, value: number, over: Partial<Parameters<typeof makeRow>[1]> = {}): ResultRow =>
  makeRow(ctx, { track: 1, model: 'm', model_family: 'llama', method: 'gptq', method_config: {}, task: metric === 'ppl' ? 'wikitext2' : 'arc_easy', metric, value, higher_is_better: metric !== 'ppl', note: cellNote(cell.padEnd(16, '0'), ''), ...over });

describe('compareRuns', () => {
  const a = [row('a1', 'acc', 0.25), row('a1', 'acc_norm', 0.3), row('b2', 'ppl', 120), row('c3', 'acc', 0.5), row('d4', 'decode_tok_per_s', 900, { track: 5, task: 'kit' })];

  it('equal scores pass; perplexity within the tolerance passes; cells of one run and speed rows are left out', () => {
    const b = [row('a1', 'acc', 0.25), row('a1', 'acc_norm', 0.3), row('b2', 'ppl', 120 * (1 + PPL_REL_TOL / 2)), row('e5', 'acc', 0.9), row('d4', 'decode_tok_per_s', 1200, { track: 5, task: 'kit' })];
    const { metrics, mismatches } = compareRuns(a, b);
    expect(mismatches).toEqual([]);
    expect(metrics.map((m) => [m.track, m.metric, m.compared, m.identical, m.pass])).toEqual([
      [1, 'acc', 1, 1, true],
      [1, 'acc_norm', 1, 1, true],
      [1, 'ppl', 1, 0, true],
    ]);
    expect(metrics[2].maxRelDiff).toBeCloseTo(PPL_REL_TOL / 2, 12);
  });

  it('an accuracy that moves at all, or a perplexity beyond the tolerance, is a mismatch naming the cell', () => {
    const b = [row('a1', 'acc', 0.25 + 1e-12), row('b2', 'ppl', 120 * (1 + 2 * PPL_REL_TOL)), row('c3', 'acc', NaN)];
    const { metrics, mismatches } = compareRuns(a, b);
    expect(mismatches.map((m) => [m.metric, m.a, m.b])).toEqual([['acc', 0.25, 0.25 + 1e-12], ['ppl', 120, 120 * (1 + 2 * PPL_REL_TOL)], ['acc', 0.5, NaN]]);
    expect(metrics.every((m) => !m.pass)).toBe(true);
    expect(metrics.find((m) => m.metric === 'acc')!.maxRelDiff).toBe(Infinity);
  });

  it("a cell's latest ok row counts (a --redo appends); not_run rows do not", () => {
    const b = [row('a1', 'acc', 0.1), row('a1', 'acc', 0.25), row('c3', 'acc', 0.7), { ...row('c3', 'acc', 0.7), status: 'not_run' as const, value: null }];
    const { mismatches } = compareRuns(a, b);
    expect(mismatches.map((m) => [m.model, m.metric, m.b])).toEqual([['m', 'acc', 0.7]]);
  });
});
