// The console summary that ends every run (lib/tracks/summary.ts, scripts/run.ts): its numbers on
// literal rows, and its columns at the end of a real run of a slice of the smoke matrix.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { engineMetricFields, metricFields } from '../lib/metrics/catalogue';
import { appendResults, makeRow, trackFile, type ResultRow, type RunContext, type Track } from '../lib/results';
import { emptySettings, formatSummary, SUMMARY_COLUMNS, summaryLines } from '../lib/tracks/summary';

const ROOT = path.resolve(import.meta.dirname, '..');
const ctx: RunContext = { run_id: 'r', git_sha: '0123456789abcdef', started_at: '2025-01-01T00:00:00.000Z', backend: 'wasm', device: 'test cpu' };
const dirs: string[] = [];
const tmpDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-summary-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

type Fields = Pick<ResultRow, 'task' | 'metric' | 'higher_is_better'>;
const row = (track: Track, model: string, method: string, cfg: Record<string, unknown>, f: Fields, value: number) =>
  makeRow(ctx, { track, model, model_family: 'llama', method, method_config: cfg, ...f, value });
const acc = (task: string): Fields => ({ task, metric: 'acc', higher_is_better: true });
const ppl: Fields = { task: 'wikitext2', metric: 'ppl', higher_is_better: false };

describe('summary table', () => {
  it('gives each method setting its PPL, mean accuracy, size, speed-up and overall metrics', () => {
    const out = tmpDir();
    const w = { sparsity: 0.5 };
    appendResults(trackFile(1, out), [
      row(1, 'm', 'dense', {}, ppl, 100), row(1, 'm', 'dense', {}, acc('arc_easy'), 0.5), row(1, 'm', 'dense', {}, acc('piqa'), 0.7),
      row(1, 'm', 'wanda', w, ppl, 200), row(1, 'm', 'wanda', w, acc('arc_easy'), 0.4), row(1, 'm', 'wanda', w, acc('piqa'), 0.6),
      row(1, 'n', 'wanda', w, ppl, 50),
    ]);
    const size = metricFields(4, 'model_size_bytes');
    const failed = { ...row(4, 'n', 'rtn', { bits: 8 }, size, 0), value: null, status: 'not_run' as const, note: 'cell=0123; no packed format' };
    appendResults(trackFile(4, out), [row(4, 'm', 'dense', {}, size, 4e6), row(4, 'm', 'wanda', w, size, 3e6), failed]);
    const decode = (engine: string) => engineMetricFields(engine, 'decode_tok_per_s');
    appendResults(trackFile(5, out), [
      row(5, 'm', 'dense', {}, decode('kit'), 100), row(5, 'm', 'dense', {}, decode('vllm'), 400),
      row(5, 'm', 'wanda', w, decode('kit'), 200), row(5, 'm', 'wanda', w, decode('vllm'), 800 * 4),
    ]);
    const lines = summaryLines(out);
    expect(lines.map((l) => [l.method, l.setting, l.model])).toEqual([['Dense', '0', 'm'], ['Wanda', '50%', 'm'], ['Wanda', '50%', 'n']]);
    const [dense, wm, wn] = lines;
    expect(dense).toMatchObject({ ppl: 100, accuracies: 2, sizeBytes: 4e6, speedup: 1 });
    expect(dense.accuracy).toBeCloseTo(60, 10);
    expect(wm).toMatchObject({ ppl: 200, accuracies: 2, sizeBytes: 3e6 });
    expect(wm.accuracy).toBeCloseTo(50, 10);
    expect(wm.speedup).toBeCloseTo(4, 10); // sqrt(2 x 8)
    // OM_inf = 100 * (4 / 3); OM_hard over kit and vllm: 100 * sqrt((2^2 + 8^2) / 2)
    expect(wm.om!.OM_inf).toBeCloseTo(400 / 3, 4);
    expect(wm.om!.OM_hard).toBeCloseTo(100 * Math.sqrt(34), 4);
    // OM_perf: OM_ka over ARC-e (0.4 / 0.5), OM_ia over PIQA (0.6 / 0.7) and perplexity (100 / 200)
    const ka = 80;
    const ia = 100 * Math.sqrt(((0.6 / 0.7) ** 2 + 0.5 ** 2) / 2);
    expect(wm.om!.OM_perf).toBeCloseTo(Math.sqrt((ka ** 2 + ia ** 2) / 2), 4);
    expect(wm.om!.OM_train).toBeNull();
    // The second model's line carries its own numbers but not the method's overall metrics again.
    expect(wn).toMatchObject({ ppl: 50, accuracy: null, sizeBytes: null, speedup: null, om: null });

    // A setting without any ok row gets no line in the table, but one line after it that says why.
    expect(emptySettings(out)).toEqual(['Track 4, RTN INT8 on n: not_run, no packed format']);
    const text = formatSummary(lines, out, emptySettings(out)).split('\n');
    expect(text).toContain('without any value: Track 4, RTN INT8 on n: not_run, no packed format');
    expect(text[1].split(/\s{2,}/)).toEqual([...SUMMARY_COLUMNS]);
    const wandaLine = text.find((l) => l.startsWith('Wanda'))!;
    expect(wandaLine.split(/\s{2,}/)).toEqual(['Wanda', '50%', 'm', '200.00', '50.0 (2)', '3.000', '4.00x', '75.2', '—', '—', '133.3', '583.1', '—']);
    expect(text.join('\n')).toContain(trackFile(1, out));
  });

  it('says so when there are no rows', () => {
    const out = tmpDir();
    expect(formatSummary(summaryLines(out), out)).toBe(`summary: no result rows under ${out}/results`);
  });

  it('ends a run of scripts/run.ts (the npm run main command on a slice of the smoke matrix)', () => {
    const out = tmpDir();
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'scripts/run.ts', '--matrix', 'smoke', '--slice', 'tracks=4;models=stories260K;methods=dense,rtn-w8', '--out', out, '--cell-timeout-s', '0', '--no-derived'],
      { cwd: ROOT, encoding: 'utf8', timeout: 240_000 },
    );
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const lines = r.stdout.split('\n');
    const head = lines.findIndex((l) => l.startsWith('method'));
    expect(head, r.stdout).toBeGreaterThan(0);
    expect(lines[head].split(/\s{2,}/)).toEqual([...SUMMARY_COLUMNS]);
    const dense = lines.find((l) => l.startsWith('Dense'))!.split(/\s{2,}/);
    const rtn = lines.find((l) => l.startsWith('RTN'))!.split(/\s{2,}/);
    // Track 4 only: size and OM_inf are numbers, the other tracks' columns say there is no row.
    expect(Number(rtn[5])).toBeGreaterThan(0);
    expect(Number(rtn[5])).toBeLessThan(Number(dense[5])); // 8-bit codes take less room than fp32
    expect(Number(rtn[SUMMARY_COLUMNS.indexOf('OM_inf')])).toBeGreaterThan(100);
    expect(rtn[SUMMARY_COLUMNS.indexOf('PPL')]).toBe('—');
    expect(r.stdout).toContain(`overall metrics: ${path.join(out, 'overall.csv')}`);
  }, 240_000);
});
