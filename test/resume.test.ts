// The runner resumes on every committed CSV: each row is keyed to the cell of a committed matrix
// (data/results/matrices/*.json) that computes what it measured, and the runner's own planning
// finds none of those cells pending (cells whose rows all say not_run excepted: the runner retries
// them by design). Rows no matrix expresses keep no key, and the migration must agree that none of
// them could have one.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveDataDir } from '../lib/data/common';
import { bestStatusByCell, expandCells, loadMatrix, rowCell, type MatrixConfig } from '../lib/matrix';
import { calibrationFromText, corpusText, loadCalibIds } from '../lib/methods/calib';
import { cellOfRow, keyRows, LEGACY_CALIB, matchingSpecs, rowOptions, type PlannedMatrix } from '../lib/metrics/migrate';
import { loadModel } from '../lib/models/load';
import { makeRow, readResults, TRACKS, trackFile, type Track } from '../lib/results';
import { initRuntime } from '../lib/runtime';
import { runMatrix, taskTrack } from '../lib/tracks';

const ROOT = path.resolve(import.meta.dirname, '..');
const DATA = path.join(ROOT, 'data');
const MATRICES = path.join(DATA, 'results', 'matrices');
const datasets = resolveDataDir(null, ROOT);
const ctx = { run_id: 'r', git_sha: 'abcdef1', started_at: '2025-01-01T00:00:00Z', backend: 'webgpu', device: 'gpu' };

describe('reading old rows as matrix cells', () => {
  it("translates an old method_config into today's options", () => {
    expect(rowOptions({ method: 'gptq', method_config: { bits: 4, group_size: 32, sym: false, act_order: false, static_groups: false } })).toEqual({
      method: 'gptq', config: { bits: 4, groupSize: 32, sym: false, actOrder: false, staticGroups: false },
    });
    expect(rowOptions({ method: 'w8a8-naive', method_config: { w_bits: 8, act: 'per_tensor' } })).toEqual({ method: 'smoothquant', config: { smooth: false, weightBits: 8, actGranularity: 'per_tensor' } });
    expect(rowOptions({ method: 'llm-pruner', method_config: { ratio: 0.5, layers: '1-3', importance: 'taylor-param-first', mlp: true } })).toEqual({ method: 'llm-pruner', config: { ratio: 0.5, pruneMlp: true } });
    expect(rowOptions({ method: 'rtn', method_config: { bits: 4, patern: '2:4' } })).toMatch(/unknown option 'patern'/);
  });

  it('matches a spec only when every recorded option agrees with its resolved options', () => {
    const specs = [
      { id: 'rtn-w8', method: 'rtn', config: { bits: 8 } },
      { id: 'rtn-w8-g32', method: 'rtn', config: { bits: 8, groupSize: 32 } },
      { id: 'naive', method: 'smoothquant', config: { smooth: false } },
      { id: 'sq', method: 'smoothquant', config: { alpha: 0.5 } },
    ];
    const ids = (m: string, c: Record<string, unknown>) => matchingSpecs(rowOptions({ method: m, method_config: c }) as never, specs).map((s) => s.id);
    expect(ids('rtn', { bits: 8, group_size: -1, sym: false })).toEqual(['rtn-w8']); // -1 and false are rtn's defaults
    expect(ids('rtn', { bits: 8, group_size: 32, sym: false })).toEqual(['rtn-w8-g32']);
    expect(ids('rtn', { bits: 8, group_size: 32, sym: true })).toEqual([]);
    expect(ids('w8a8-naive', { w_bits: 8 })).toEqual(['naive']);
    expect(ids('smoothquant', { alpha: 0.5, w_bits: 8 })).toEqual(['sq']);
  });

  it('keys a row only where the matrix expresses its calibration, engine and backend', () => {
    const mx = loadMatrix(path.join(MATRICES, 'webgpu.json'));
    const tiny: MatrixConfig = { ...mx, models: mx.models.filter((m) => m.id === 'stories260K'), methods: mx.methods.filter((m) => ['dense', 'wanda-50%'].includes(m.id)), tasks: ['wikitext2'], tracks: [1, 5] };
    const planned: PlannedMatrix[] = [{ matrix: tiny, cells: expandCells(tiny, {}, taskTrack, null) }];
    const row = (over: Record<string, unknown>) => makeRow(ctx, { track: 1, model: 'stories260K', model_family: 'llama', method: 'wanda', method_config: { pattern: '50%' }, task: 'wikitext2', metric: 'ppl', value: 120, higher_is_better: false, calib: 'calib_wikitext2_valid_128x512.json:128x512:seed0', ...over });
    const hit = cellOfRow(row({}), planned);
    expect(typeof hit === 'string' ? hit : [hit.track, hit.method.id, hit.item]).toEqual([1, 'wanda-50%', 'wikitext2']);
    expect(cellOfRow(row({ calib: 'kjv-valid:32x256:seed0' }), planned)).toMatch(/calibration 'kjv-valid:32x256:seed0'/);
    expect(cellOfRow(row({ backend: 'wasm' }), planned)).toMatch(/no matrix runs stories260K on track 1 with backend wasm/);
    expect(cellOfRow(row({ track: 5, task: 'vllm', metric: 'decode_tok_per_s', method: 'dense', method_config: {}, note: 'prompt 128, new 64, batch 1, warmup 1, repeats 5' }), planned)).toMatch(/engine 'vllm' is not a matrix engine/);
    const keyed = keyRows([row({ note: 'reference 120.1' })], planned);
    expect(keyed.keyed).toBe(1);
    expect(rowCell(keyed.rows[0])).toBe((hit as { hash: string }).hash);
    expect(keyed.rows[0].note).toMatch(/; reference 120\.1$/);
    expect(keyRows(keyed.rows, planned).rows[0]).toBe(keyed.rows[0]); // keyed rows stay as they are
  });
});

describe.skipIf(datasets === null)('the committed rows (needs the datasets: cell keys hold their identity)', () => {
  const files = fs.readdirSync(MATRICES).filter((f) => f.endsWith('.json')).sort();
  const planned: PlannedMatrix[] = files.map((f) => {
    const matrix = loadMatrix(path.join(MATRICES, f));
    return { matrix, cells: expandCells(matrix, {}, taskTrack, datasets) };
  });
  const cells = new Map(planned.flatMap((p) => p.cells.map((c) => [c.hash, c] as const)));

  it('the runner resumes on every committed CSV: 0 pending among the cells its rows cover', { timeout: 120_000 }, async () => {
    const pending = new Set<string>();
    for (const p of planned) {
      const s = await runMatrix(p.matrix, { dryRun: true, out: DATA, dataDir: datasets, log: () => undefined });
      expect(s.cells).toBe(p.cells.length);
      for (const c of s.pendingCells) pending.add(c.hash);
    }
    for (const t of Object.keys(TRACKS).map(Number) as Track[]) {
      const rows = readResults(trackFile(t, DATA));
      if (rows.length === 0) continue;
      const status = bestStatusByCell(rows);
      const covered = [...status.keys()];
      expect(covered.length, `track${t}.csv: no row covers a matrix cell`).toBeGreaterThan(0);
      expect(covered.filter((h) => !cells.has(h)), `track${t}.csv: rows keyed to cells no committed matrix plans`).toEqual([]);
      const done = covered.filter((h) => status.get(h) !== 'not_run');
      expect(done.filter((h) => pending.has(h)).map((h) => cells.get(h)), `track${t}.csv: cells with rows that the runner would run again`).toEqual([]);
      for (const h of covered.filter((x) => status.get(x) === 'not_run')) expect(pending.has(h)).toBe(true); // retried by design
      // Rows without a key: the migration could key none of them (each has a reason).
      expect(keyRows(rows, planned).keyed, `track${t}.csv: rows a matrix expresses but without a cell key (run scripts/migrate-rows.ts)`).toBe(0);
    }
  });

  it("the reference calibration ids are the kit's own draw (LEGACY_CALIB)", { timeout: 120_000 }, async () => {
    const ids = path.join(ROOT, '../shared/reference/stories260K/calib_wikitext2_valid_128x512.json');
    if (!fs.existsSync(ids)) return; // the reference files are absent here: nothing to compare
    await initRuntime({ backend: 'cpu' });
    const model = await loadModel(path.join(ROOT, 'models/stories260K/stories260K.bin'));
    const c = LEGACY_CALIB['calib_wikitext2_valid_128x512.json:128x512:seed0'];
    const kit = calibrationFromText(corpusText(c.corpus, datasets!), model.tokenizer, c.corpus, { nsamples: c.nsamples, seqlen: c.seqlen, seed: c.seed });
    expect(kit.windows).toEqual(loadCalibIds(ids).windows);
  });
});
