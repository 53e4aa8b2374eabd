import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  combinePerf, computeOverall, kitColumn, kitOverall, maxOverMethods, paperOverall, readOverallCsv, readPaperValues,
  relativeRatio, rmsPercent, scoreAgainst, settingLabel, writeOverallCsv, type Measurement,
} from '../lib/metrics';
import { makeRow, type ResultRow, type RunContext } from '../lib/results';

const repoRoot = path.resolve(import.meta.dirname, '..');
const dataDir = path.join(repoRoot, 'data');
const ctx: RunContext = { run_id: 'r1', git_sha: 'abcdef1', started_at: '2025-01-02T03:04:05.000Z', backend: 'wasm', device: 'cpu test' };

const row = (method: string, cfg: Record<string, unknown>, task: string, metric: string, value: number | null, hib: boolean, extra: Partial<ResultRow> = {}): ResultRow =>
  makeRow(ctx, {
    track: 1, model: 'tiny', model_family: 'llama', method, method_config: cfg, task, metric, value, higher_is_better: hib,
    ...(value === null ? { status: 'no_data', note: 'dataset absent' } : {}),
    ...extra,
  });

describe('overall metric arithmetic', () => {
  it('inverts lower-is-better metrics and takes 100*sqrt(mean r^2)', () => {
    expect(relativeRatio(40, 50, true)).toBe(0.8);
    expect(relativeRatio(10, 5, false)).toBe(0.5);
    // r = 0.8 and 0.6: mean r^2 = (0.64 + 0.36) / 2 = 0.5
    expect(rmsPercent([0.8, 0.6])).toBeCloseTo(100 * Math.sqrt(0.5), 12);
    expect(combinePerf(60, 80)).toBeCloseTo(Math.sqrt(5000), 12);
    expect(() => rmsPercent([])).toThrow(/zero/);
    expect(() => relativeRatio(0, 5, true)).toThrow(/positive/);
  });

  it('scores over the reference pairs and lists the ones the method lacks', () => {
    const ref: Measurement[] = [
      { model: 'a', key: 'MMLU', value: 50, higherIsBetter: true },
      { model: 'a', key: 'WikiText2-PPL', value: 5, higherIsBetter: false },
      { model: 'b', key: 'MMLU', value: 40, higherIsBetter: true },
    ];
    const own: Measurement[] = [
      { model: 'a', key: 'MMLU', value: 40, higherIsBetter: true }, // r = 0.8
      { model: 'a', key: 'WikiText2-PPL', value: 10, higherIsBetter: false }, // r = 0.5
    ];
    const s = scoreAgainst(own, ref, () => true);
    expect(s.pairs).toBe(2);
    expect(s.value).toBeCloseTo(100 * Math.sqrt((0.64 + 0.25) / 2), 12);
    expect(s.missing).toEqual(['b/MMLU']);
    const k = scoreAgainst(own, ref, (key) => key === 'MMLU');
    expect(k.value).toBeCloseTo(80, 12);
    expect(scoreAgainst([], ref, () => true).value).toBeNull();
  });

  it('takes the costliest method as the Track 3 reference', () => {
    const m = (v: number): Measurement[] => [{ model: 'a', key: 'time', value: v, higherIsBetter: false }];
    const ref = maxOverMethods([m(10), m(40), m(20)]);
    expect(ref.map((r) => r.value)).toEqual([40]);
    expect(scoreAgainst(m(20), ref, () => true).value).toBeCloseTo(200, 12);
  });
});

describe('names', () => {
  it('labels settings the way the paper does', () => {
    expect(settingLabel('wanda', { sparsity: 0.5 })).toBe('50%');
    expect(settingLabel('sparsegpt', { pattern: '2:4' })).toBe('2:4');
    expect(settingLabel('wanda', { pattern: '50%' })).toBe('50%'); // the kit's own spelling
    expect(settingLabel('wanda', { prune_n: 4, prune_m: 8 })).toBe('4:8');
    expect(settingLabel('gptq', { bits: 8 })).toBe('INT8');
    expect(settingLabel('gptq', { wbits: 4, groupsize: 128 })).toBe('INT4 g128');
    expect(settingLabel('smoothquant', { wbits: 8, abits: 8, alpha: 0.5 })).toBe('W8A8');
    expect(settingLabel('dense', {})).toBe('0');
    expect(settingLabel('omniquant', { bits: 4, groupSize: -1, epochs: 20 })).toBe('INT4');
    expect(settingLabel('omniquant', { bits: 4, groupSize: -1, epochs: 1 })).toBe('INT4 1 epoch');
  });

  it('maps kit tasks onto the paper columns, acc_norm before acc', () => {
    expect(kitColumn(1, 'arc_challenge', 'acc_norm')).toMatchObject({ key: 'ARC-c', rank: 0, classified: true });
    expect(kitColumn(1, 'arc_challenge', 'acc')).toMatchObject({ key: 'ARC-c', rank: 1 });
    expect(kitColumn(1, 'wikitext2', 'ppl')).toMatchObject({ key: 'WikiText2-PPL', classified: true });
    expect(kitColumn(1, 'mmlu', 'acc_norm').classified).toBe(false);
    expect(kitColumn(4, 'generate', 'peak_memory_bytes')).toMatchObject({ key: 'gpu_memory_GB', scale: 1e-9, classified: true });
    expect(kitColumn(4, 'storage', 'stored_size_bytes').classified).toBe(false); // not the catalogue's name
    expect(kitColumn(1, 'arc-c', 'acc_norm').classified).toBe(false); // tasks go by their registry name
    expect(kitColumn(6, 'truthfulqa', 'mc1')).toMatchObject({ key: 'truthfulqa · mc1', classified: true });
    expect(kitColumn(6, 'advglue', 'acc_orig').classified).toBe(false);
    // OM_hard is speed only: tokens per second count, latencies and memory are shown but kept out.
    expect(kitColumn(5, 'llama.cpp-vulkan', 'decode_tok_per_s').classified).toBe(true);
    expect(kitColumn(5, 'llama.cpp-vulkan', 'decode_tok_s').classified).toBe(false); // a spelling the catalogue does not know
    expect(kitColumn(5, 'llama.cpp-vulkan', 'ttft_ms').classified).toBe(false);
    expect(kitColumn(3, 'compress', 'wall_time_s')).toMatchObject({ key: 'compress · wall_time_s', classified: true, scale: 1, unit: 's' });
    expect(kitColumn(3, 'compress', 'peak_memory_bytes')).toMatchObject({ classified: true, scale: 1e-9 });
    expect(kitColumn(3, 'compress', 'gpu_pool_high_water_bytes').classified).toBe(false); // process-lifetime pool mark, not the track's memory
    expect(kitColumn(5, 'kit', 'peak_memory_bytes').classified).toBe(false);
    expect(kitColumn(4, 'macs', 'macs_per_token')).toMatchObject({ key: 'MACs_T', scale: 1e-12, unit: 'TMACs' });
    expect(kitColumn(4, 'storage', 'model_size_bytes')).toMatchObject({ key: 'model_size_GB', classified: true });
  });
});

describe('the paper recomputed from data/paper', () => {
  const rows = paperOverall(dataDir);
  const find = (track: number, om: string, method: string, setting?: string) =>
    rows.filter((r) => r.track === track && r.om === om && r.method === method && (setting === undefined || r.setting === setting));

  it('Track 1: every OM_ka, OM_ia and OM_perf within 0.01 of the published table', () => {
    const t1 = rows.filter((r) => r.track === 1);
    expect(t1.length).toBe(33); // 11 method settings x 3
    for (const r of t1) {
      expect(r.published, `${r.method} ${r.setting} ${r.om}`).not.toBeNull();
      expect(Math.abs((r.value as number) - (r.published as number)), `${r.method} ${r.setting} ${r.om}`).toBeLessThanOrEqual(0.01);
    }
    expect(find(1, 'OM_perf', 'Wanda', '2:4')[0].value).toBeCloseTo(71.12, 2);
  });

  it('Track 2: every OM_gen within 0.01 except OmniQuant, whose published 48.51 disagrees with its own table', () => {
    const t2 = rows.filter((r) => r.track === 2);
    expect(t2.length).toBe(8);
    for (const r of t2.filter((r) => r.method !== 'OmniQuant')) {
      expect(Math.abs((r.value as number) - (r.published as number)), r.method).toBeLessThanOrEqual(0.01);
    }
    // The discrepancy, documented: Table 4's OmniQuant perplexities give 43.97, the paper prints 48.51.
    const omni = find(2, 'OM_gen', 'OmniQuant')[0];
    expect(omni.published).toBe(48.51);
    expect(omni.value).toBeCloseTo(43.97, 2);
    expect(omni.pairs).toBe(18);
  });

  it('Track 4: every OM_inf within 1% (the table rounds its inputs)', () => {
    const t4 = rows.filter((r) => r.track === 4);
    expect(t4.length).toBe(11);
    for (const r of t4) {
      const rel = Math.abs((r.value as number) - (r.published as number)) / (r.published as number);
      expect(rel, `${r.method} ${r.setting}`).toBeLessThan(0.01);
    }
  });

  it('cites file and line for every paper number', () => {
    const v = readPaperValues(dataDir);
    expect(v[0].source).toMatch(/data\/paper\/track1_performance\.csv:2$/);
    expect(v.every((x) => /:\d+$/.test(x.source))).toBe(true);
  });
});

describe('the kit side', () => {
  it('computes OMs of kit rows against the dense rows, using acc_norm where present', () => {
    const rows: ResultRow[] = [
      row('dense', {}, 'mmlu', 'acc', 0.5, true),
      row('dense', {}, 'arc_challenge', 'acc', 0.3, true),
      row('dense', {}, 'arc_challenge', 'acc_norm', 0.4, true),
      row('dense', {}, 'wikitext2', 'ppl', 10, false),
      row('wanda', { sparsity: 0.5 }, 'mmlu', 'acc', 0.4, true), // r = 0.8
      row('wanda', { sparsity: 0.5 }, 'arc_challenge', 'acc', 0.1, true), // ignored: acc_norm preferred
      row('wanda', { sparsity: 0.5 }, 'arc_challenge', 'acc_norm', 0.24, true), // r = 0.6
      row('wanda', { sparsity: 0.5 }, 'wikitext2', 'ppl', 20, false), // r = 0.5
      row('wanda', { sparsity: 0.5 }, 'mnli', 'acc', null, true),
    ];
    const out = kitOverall(rows, 1);
    const get = (m: string, om: string) => out.find((r) => r.method === m && r.om === om)!;
    expect(get('Dense', 'OM_ka').value).toBe(100);
    const ka = 100 * Math.sqrt((0.64 + 0.36) / 2);
    expect(get('Wanda', 'OM_ka').value).toBeCloseTo(ka, 5);
    expect(get('Wanda', 'OM_ia').value).toBeCloseTo(50, 5);
    expect(get('Wanda', 'OM_perf').value).toBeCloseTo(combinePerf(ka, 50), 5);
    expect(get('Wanda', 'OM_ka')).toMatchObject({ setting: '50%', backends: 'wasm', git_shas: 'abcdef1', status: 'ok' });
  });

  it("Track 5: a method's speed is set against its own run's dense speed where that run measured one, else the latest", () => {
    const t5 = (method: string, value: number, run_id: string, started_at: string, model = 'tiny') =>
      row(method, method === 'dense' ? {} : { bits: 4 }, 'kit', 'decode_tok_per_s', value, true, { track: 5, run_id, started_at, model });
    const rows = [
      t5('dense', 100, 'A', '2026-01-01T00:00:00Z'),
      t5('dense', 1000, 'B', '2026-02-01T00:00:00Z'), // later, other code: the latest dense row
      t5('rtn', 200, 'A', '2026-01-01T00:00:00Z'), // run A measured dense too: r = 200 / 100
      t5('dense', 50, 'A', '2026-01-01T00:00:00Z', 'other'),
      t5('rtn', 25, 'C', '2026-03-01T00:00:00Z', 'other'), // run C has no dense row: the latest, r = 25 / 50
    ];
    const hard = kitOverall(rows, 5).find((r) => r.method === 'RTN' && r.om === 'OM_hard')!;
    expect(hard.pairs).toBe(2);
    expect(hard.value).toBeCloseTo(100 * Math.sqrt((2 * 2 + 0.5 * 0.5) / 2), 4);
  });

  it('says why when a method has nothing to compare with', () => {
    const out = kitOverall([row('gptq', { bits: 4 }, 'wikitext2', 'ppl', null, false, { track: 2 })], 2);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ method: 'GPTQ', setting: 'INT4', status: 'no_data', value: null });
    expect(out[0].note).toMatch(/no baseline/);
    expect(out[0].note).toMatch(/no_data \(dataset absent\)/);
  });
});

describe('data/overall.csv', () => {
  it('round-trips through the atomic writer and names file:line on a bad cell', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'overall-'));
    const file = path.join(dir, 'overall.csv');
    const rows = computeOverall(dataDir);
    writeOverallCsv(file, rows);
    expect(fs.readdirSync(dir)).toEqual(['overall.csv']); // no temp file left behind
    const back = readOverallCsv(file);
    expect(back).toEqual(rows);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[3] = lines[3].replace(/,ok,/, ',oops,');
    fs.writeFileSync(file, lines.join('\n'));
    expect(() => readOverallCsv(file)).toThrow(/overall\.csv:4: 'status'/);
    fs.rmSync(dir, { recursive: true });
  });

  it('the committed data/overall.csv is up to date with data/', () => {
    const committed = readOverallCsv(path.join(dataDir, 'overall.csv'));
    expect(committed, 'data/overall.csv is stale: run npx tsx scripts/site-overall.ts and commit it').toEqual(computeOverall(dataDir));
  });
});

describe('data/paper readers', () => {
  it('fail naming the file and line of a bad value, and a missing file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paper-'));
    fs.cpSync(path.join(dataDir, 'paper'), path.join(dir, 'paper'), { recursive: true });
    const f = path.join(dir, 'paper', 'track2_generalization.csv');
    const lines = fs.readFileSync(f, 'utf8').split('\n');
    lines[4] = 'LLaMA-7B,SparseGPT,WikiText2-PPL,abc';
    fs.writeFileSync(f, lines.join('\n'));
    expect(() => readPaperValues(dir)).toThrow(/track2_generalization\.csv:5: 'value' is "abc"/);
    fs.rmSync(path.join(dir, 'paper', 'track4_inference.csv'));
    fs.writeFileSync(f, lines.slice(0, 4).join('\n') + '\n');
    expect(() => readPaperValues(dir)).toThrow(/track4_inference\.csv: missing/);
    fs.rmSync(dir, { recursive: true });
  });
});
