// The metric catalogue of Tracks 3-5: one name per metric, the rename of old rows (scripts/migrate-rows.ts),
// and the committed data in the catalogue's names.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { engineMetricFields, METRIC_CATALOGUE, metricDef, metricFields, metricNames } from '../lib/metrics/catalogue';
import { migrateRow, migrateSpeedupRecord } from '../lib/metrics/migrate';
import { appendResults, makeRow, readResults, trackFile, type ResultRow, type RunContext, type Track } from '../lib/results';
import { engineMetrics, TRACK3_METRICS, TRACK4_METRICS } from '../lib/tracks';

const ROOT = path.resolve(import.meta.dirname, '..');
const ctx: RunContext = { run_id: 'r1', git_sha: 'abcdef1', started_at: '2025-01-02T03:04:05.000Z', backend: 'webgpu', device: 'gpu test' };
const row = (track: 3 | 4 | 5, task: string, metric: string, value: number, note = ''): ResultRow =>
  makeRow(ctx, { track, model: 'tiny', model_family: 'llama', method: 'rtn', method_config: { bits: 8 }, task, metric, value, higher_is_better: track === 5, note });

describe('metric catalogue', () => {
  it('gives each metric one task, unit and direction', () => {
    expect(metricFields(3, 'wall_time_s')).toEqual({ task: 'compress', metric: 'wall_time_s', higher_is_better: false });
    expect(metricFields(4, 'model_size_bytes')).toEqual({ task: 'storage', metric: 'model_size_bytes', higher_is_better: false });
    expect(engineMetricFields('llama.cpp-cpu', 'decode_tok_per_s')).toEqual({ task: 'llama.cpp-cpu', metric: 'decode_tok_per_s', higher_is_better: true });
    expect(metricDef(3, 'gpu_pool_high_water_bytes')).toMatchObject({ unit: 'bytes', inOverall: false });
    expect(metricDef(5, 'ttft_ms')).toMatchObject({ unit: 'ms', higherIsBetter: false, inOverall: false });
    expect(metricDef(5, 'decode_tok_s')).toBeUndefined();
    expect(metricDef(1, 'acc')).toBeUndefined(); // tasks declare Track 1, 2 and 6 metrics
    // @ts-expect-error a name the catalogue does not have does not compile
    expect(() => metricFields(3, 'time_s')).toThrow(/Track 3 has no metric 'time_s'/);
  });

  it('is checked on every write: a Track 3-5 row under another name is refused, naming it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-names-'));
    expect(() => appendResults(trackFile(3, dir), [row(3, 'compression', 'time_s', 1)])).toThrow(/'time_s' is not a Track 3 metric of lib\/metrics\/catalogue.ts \(wall_time_s, peak_memory_bytes, gpu_pool_high_water_bytes, peak_gpu_tensor_bytes\)/);
    expect(() => appendResults(trackFile(4, dir), [row(4, 'compress', 'model_size_bytes', 1)])).toThrow(/field 'task' is 'compress', but Track 4's model_size_bytes is filed under 'storage'/);
    expect(() => appendResults(trackFile(5, dir), [row(5, 'kit', 'decode_tok_s', 1)])).toThrow(/'decode_tok_s' is not a Track 5 metric/);
    appendResults(trackFile(5, dir), [row(5, 'any-engine', 'decode_tok_per_s', 1)]);
    expect(readResults(trackFile(5, dir)).map((r) => r.metric)).toEqual(['decode_tok_per_s']);
    expect(fs.existsSync(trackFile(3, dir))).toBe(false); // nothing written for the refused rows
  });

  it('is what the runner writes for Tracks 3-5', () => {
    expect(TRACK3_METRICS.map((m) => m.metric)).toEqual(metricNames(3).filter((m) => m !== 'gpu_pool_high_water_bytes' && m !== 'peak_gpu_tensor_bytes')); // extras on WebGPU
    expect(TRACK4_METRICS.map((m) => m.metric)).toEqual(metricNames(4));
    expect(engineMetrics('kit').map((m) => m.metric)).toEqual(['prefill_tok_per_s', 'decode_tok_per_s', 'throughput_tok_per_s', 'ttft_ms', 'itl_ms', 'peak_memory_bytes']);
    for (const t of [3, 4] as const) for (const m of metricNames(t)) expect(METRIC_CATALOGUE[t][m].task).not.toBeNull();
  });
});

describe('migrating old rows to the catalogue', () => {
  it('renames task, metric and engine and keeps every value', () => {
    const t = migrateRow(row(3, 'compression', 'time_s', 12.5));
    expect([t.task, t.metric, t.value, t.higher_is_better]).toEqual(['compress', 'wall_time_s', 12.5, false]);
    // peak_gpu_bytes was the WebGPU pool's high-water mark, peak_tensor_bytes the live-tensor peak
    const g = migrateRow(row(3, 'compression', 'peak_gpu_bytes', 3225873328, 'x'));
    expect([g.task, g.metric, g.value, g.note]).toEqual(['compress', 'gpu_pool_high_water_bytes', 3225873328, 'x']);
    expect(migrateRow(row(3, 'compression', 'peak_tensor_bytes', 7)).metric).toBe('peak_memory_bytes');
    expect(migrateRow(row(4, 'storage', 'stored_size_bytes', 99)).metric).toBe('model_size_bytes');
    const d = migrateRow(row(5, 'webgpu', 'decode_tok_s', 19.5));
    expect([d.task, d.metric, d.value, d.backend]).toEqual(['kit', 'decode_tok_per_s', 19.5, 'webgpu']);
    expect(migrateRow(row(5, 'llama.cpp-vulkan', 'ttft_ms', 3)).task).toBe('llama.cpp-vulkan');
    expect(migrateSpeedupRecord({ engine: 'webgpu', metric: 'prefill_tok_s', value: '1.17' })).toEqual({ engine: 'kit', metric: 'prefill_tok_per_s', value: '1.17' });
  });

  it('leaves rows already in the catalogue untouched (idempotent)', () => {
    for (const r of [row(3, 'compress', 'wall_time_s', 1), row(5, 'kit', 'decode_tok_per_s', 2), row(3, 'compression', 'peak_gpu_bytes', 3)].map(migrateRow)) {
      expect(migrateRow(r)).toBe(r);
    }
  });

  it('scripts/migrate-rows.ts rewrites a data folder once, then finds nothing to do', { timeout: 120_000 }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-migrate-'));
    fs.mkdirSync(path.join(dir, 'results'));
    // rows under the old names (the writer refuses them now: written under today's, then renamed back in the text)
    appendResults(trackFile(3, dir), [row(3, 'compress', 'wall_time_s', 15.256947265999996), row(3, 'compress', 'gpu_pool_high_water_bytes', 3225873328)]);
    const old = fs.readFileSync(trackFile(3, dir), 'utf8').replace('compress,wall_time_s', 'compression,time_s').replace('compress,gpu_pool_high_water_bytes', 'compression,peak_gpu_bytes');
    fs.writeFileSync(trackFile(3, dir), old);
    expect(readResults(trackFile(3, dir)).map((r) => r.metric)).toEqual(['time_s', 'peak_gpu_bytes']);
    const run = () => spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/migrate-rows.ts'), '--data', dir], { cwd: ROOT, encoding: 'utf8' });
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/2 of 2 rows renamed/);
    const after = readResults(trackFile(3, dir));
    expect(after.map((r) => [r.task, r.metric, r.value])).toEqual([['compress', 'wall_time_s', 15.256947265999996], ['compress', 'gpu_pool_high_water_bytes', 3225873328]]);
    const text = fs.readFileSync(trackFile(3, dir), 'utf8');
    const second = run();
    expect(second.status, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/0 of 2 rows renamed[\s\S]*0 file\(s\) rewritten/);
    expect(fs.readFileSync(trackFile(3, dir), 'utf8')).toBe(text);
    expect(fs.readdirSync(path.join(dir, 'results')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('the committed data', () => {
  it('names every Track 3-5 metric as the catalogue does', () => {
    for (const t of [3, 4, 5] as Track[]) {
      for (const r of readResults(trackFile(t, path.join(ROOT, 'data')))) {
        const d = metricDef(t, r.metric);
        expect(d, `track${t}.csv: ${r.task}/${r.metric}`).toBeDefined();
        if (d!.task !== null) expect(r.task, `track${t}.csv: ${r.task}/${r.metric}`).toBe(d!.task);
        expect(migrateRow(r)).toBe(r);
      }
    }
  });
});
