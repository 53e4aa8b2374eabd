// The runner's reliability: the cell time limit kills work that holds the thread, one run at a
// time writes into an output folder, and a stale lock is taken over.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EngineNotRun } from '../lib/efficiency/engines/types';
import { rowCell, smokeMatrix, STORIES260K, type MatrixConfig } from '../lib/matrix';
import { readResults, trackFile } from '../lib/results';
import { runLockFile, runMatrix, runsFile, wallByPartLine } from '../lib/tracks/runner';
import { parseCsvRecords } from '../lib/csv';
import './fixtures/plugins/spin'; // the test-only task and method 'spin', in this process too

// llama.cpp as on a host without node-llama-cpp (the cells below run in this process)
vi.mock('../lib/efficiency/engines/llamacpp', () => ({
  LlamaCppEngine: { create: async () => Promise.reject(new EngineNotRun('llama.cpp-cpu', 'no llama.cpp here (test)')) },
}));

const ROOT = path.resolve(__dirname, '..');
const SPIN = path.join(ROOT, 'test/fixtures/plugins/spin.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** stories260K with the given methods and tasks (Tracks 1 and 4), on wasm. */
function matrix(methods: string[], tasks: string[], cellTimeoutS: number | null): MatrixConfig {
  const mx = smokeMatrix();
  return {
    ...mx,
    name: 'reliability',
    models: [STORIES260K],
    tracks: [1, 4],
    methods: methods.map((m) => ({ id: m, method: m, config: {} })),
    tasks,
    inference: { ...mx.inference, promptTokens: 8, newTokens: 4, macSeqlen: 32 },
    cellTimeoutS,
  };
}

const allRows = (out: string) => [1, 4].flatMap((t) => readResults(trackFile(t as 1 | 4, out)));

describe('runner reliability', () => {
  let out: string;
  beforeEach(() => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-runner-'));
  });
  afterEach(() => fs.rmSync(out, { recursive: true, force: true }));

  it('kills a cell or a compression that spins at the cell time limit, records it not_run, and goes on', async () => {
    const logs: string[] = [];
    const t0 = Date.now();
    const s = await runMatrix(matrix(['dense', 'spin'], ['spin'], 2), { out, log: (m) => logs.push(m), preload: [SPIN], heartbeatS: 0.5 });
    const wallS = (Date.now() - t0) / 1000;
    expect(wallS).toBeLessThan(25); // unkilled, the two spins alone would take 60 s
    const rows = allRows(out);
    const of = (method: string, track: number) => rows.filter((r) => r.method === method && r.track === track);
    // dense: the spinning cell is killed; the cell after it runs in a fresh cell process
    expect(of('dense', 1).map((r) => [r.status, r.note.replace(/^cell=\w+; /, '')])).toEqual([['not_run', 'timeout after 2 s']]);
    expect(of('dense', 4).map((r) => r.status)).toEqual(['ok', 'ok', 'ok']);
    // spin: its compression is killed, so neither of its cells runs
    expect([...of('spin', 1), ...of('spin', 4)].map((r) => [r.status, r.note.replace(/^cell=\w+; /, '')])).toEqual([
      ['not_run', 'spin on stories260K: timeout after 2 s'],
      ['not_run', 'spin on stories260K: timeout after 2 s'],
      ['not_run', 'spin on stories260K: timeout after 2 s'],
      ['not_run', 'spin on stories260K: timeout after 2 s'],
    ]);
    expect(s.timedOut.map((t) => t.cell)).toEqual([expect.stringMatching(/^track 1 stories260K dense spin /), 'stories260K × spin (loading and compressing)']);
    expect(s.failed).toEqual([]);
    expect(s.ran).toBe(4);
    expect(new Set(rows.map((r) => r.run_id)).size).toBe(1); // the children's rows carry the parent's run
    expect(logs.some((l) => /^ {3}… \d+ s in track 1 stories260K dense spin/.test(l))).toBe(true); // heartbeat
    expect(fs.existsSync(runLockFile(out))).toBe(false);
  }, 60_000);

  it('runs pair after pair in one cell process, and goes on in a fresh one after a kill', async () => {
    const methods = ['pid', 'pid', 'spin', 'pid'].map((method, k) => ({ id: `${method}-${k}`, method, config: {} }));
    const mx = { ...matrix(['dense'], ['arc_easy'], 2), methods: [{ id: 'dense', method: 'dense', config: {} }, ...methods] };
    const s = await runMatrix(mx, { out, log: () => undefined, preload: [SPIN], slice: { methods: methods.map((m) => m.id) } });
    expect(s.ran).toBe(8);
    const pid = (id: string) => new Set(allRows(out).filter((r) => r.method === 'pid' && r.note.includes(`${id} on`)).map((r) => /in process (\d+)/.exec(r.note)?.[1]));
    const [a, b, c] = [pid('pid-0'), pid('pid-1'), pid('pid-3')].map((p) => [...p]);
    expect([a.length, b.length, c.length]).toEqual([1, 1, 1]);
    expect(b[0]).toBe(a[0]); // the second pair reused the first one's process
    expect(c[0]).not.toBe(a[0]); // the spin was killed: a fresh process took the last pair
  }, 60_000);

  it('refuses a second run into the same folder; the first loses and duplicates no row and exits 3 on its timeout', async () => {
    const file = path.join(out, 'matrix.json');
    fs.writeFileSync(file, JSON.stringify(matrix(['dense'], ['spin'], null)));
    const run = () => {
      const p = spawn(process.execPath, ['--import', TSX, 'scripts/run.ts', '--matrix', file, '--out', out, '--preload', SPIN, '--cell-timeout-s', '3', '--no-derived', '--no-hub'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      p.stderr.on('data', (d) => (stderr += d));
      return { pid: p.pid!, end: new Promise<{ code: number | null; stderr: string }>((resolve) => p.on('close', (code) => resolve({ code, stderr }))) };
    };
    const first = run();
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(runLockFile(out)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(JSON.parse(fs.readFileSync(runLockFile(out), 'utf8')).pid).toBe(first.pid);
    const second = await run().end;
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`output folder '.*' is in use by pid ${first.pid} on host ${os.hostname()}`));
    const a = await first.end;
    expect(a.code).toBe(3);
    expect(a.stderr).toMatch(/TIMEOUT track 1 stories260K dense spin .*: timeout after 3 s/);
    const rows = allRows(out);
    expect(rows.map((r) => `${r.track} ${r.metric} ${r.status}`).sort()).toEqual(['1 acc not_run', '4 macs_per_token ok', '4 model_size_bytes ok', '4 peak_memory_bytes ok']);
    expect(new Set(rows.map((r) => `${rowCell(r)} ${r.metric}`)).size).toBe(rows.length);
    expect(fs.existsSync(runLockFile(out))).toBe(false);
  }, 60_000);

  it("records an engine that cannot open as not_run before loading or compressing a pair for it", async () => {
    const logs: string[] = [];
    const mx: MatrixConfig = { ...matrix(['dense', 'spin'], [], null), tracks: [5], engines: ['llama.cpp-cpu'] }; // in process; spin's compression would hold it 30 s
    const t0 = Date.now();
    const s = await runMatrix(mx, { out, log: (m) => logs.push(m), slice: { methods: ['spin'] } });
    expect((Date.now() - t0) / 1000).toBeLessThan(15);
    expect(logs.some((l) => l.startsWith('== stories260K × spin'))).toBe(false);
    expect(logs).toContain('engine llama.cpp-cpu cannot run here (no llama.cpp here (test)): its Track 5 cells are not_run');
    const rows = readResults(trackFile(5, out));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.status === 'not_run' && r.method === 'spin' && r.note.endsWith('no llama.cpp here (test)'))).toBe(true);
    expect(s.ran).toBe(1);
  }, 60_000);

  it('a Track 5 cell: one row per engine metric, the cell\'s wall time in each, the prepared model\'s notes once', async () => {
    const mx: MatrixConfig = { ...matrix(['dense'], [], null), tracks: [5], engines: ['kit'] };
    await runMatrix(mx, { out, log: () => undefined });
    const rows = readResults(trackFile(5, out));
    expect(rows.map((r) => r.metric).sort()).toEqual(['decode_tok_per_s', 'itl_ms', 'peak_memory_bytes', 'prefill_tok_per_s', 'throughput_tok_per_s', 'ttft_ms']);
    for (const r of rows) {
      expect(r.status).toBe('ok');
      expect(r.duration_s).toBeGreaterThan(0);
      expect(r.duration_s).toBe(rows[0].duration_s);
      const parts = r.note.split('; ');
      expect(parts.length).toBe(new Set(parts).size);
    }
  }, 60_000);

  it('--redo runs finished cells of the slice again, adding rows; without it they stay done', async () => {
    const mx = matrix(['dense'], ['arc_easy'], null);
    const slice = { tracks: [4] as (1 | 4)[] };
    const first = await runMatrix(mx, { out, log: () => undefined, slice });
    const rows = () => readResults(trackFile(4, out)).filter((r) => r.status === 'ok');
    const n = rows().length;
    expect(first.ran).toBeGreaterThan(0);
    expect((await runMatrix(mx, { out, log: () => undefined, slice })).pending).toBe(0);
    const again = await runMatrix(mx, { out, log: () => undefined, slice, redo: true });
    expect(again.pending).toBe(first.pending);
    expect(rows().length).toBe(2 * n);
    expect(readResults(trackFile(1, out))).toEqual([]); // outside the slice
  }, 60_000);

  it('takes over the lock of a run that died, with a warning', async () => {
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    fs.writeFileSync(runLockFile(out), JSON.stringify({ pid: dead, host: os.hostname(), since: '2026-01-01T00:00:00Z', command: 'scripts/run.ts (killed)' }));
    const logs: string[] = [];
    const s = await runMatrix(matrix(['dense'], [], null), { out, log: (m) => logs.push(m) }); // in process: no cell time limit
    expect(logs.join('\n')).toMatch(new RegExp(`taking over the stale lock .*\\.run\\.lock of pid ${dead} \\(no longer running`));
    expect(s.rows.map((r) => r.status)).toEqual(['ok', 'ok', 'ok']);
    expect(fs.existsSync(runLockFile(out))).toBe(false);
    // the run's wall time by part: the tracks of its cells and the subjects' own time, adding up to at most the whole
    const tracks = [...new Set(s.rows.map((r) => `track ${r.track}`))];
    expect(Object.keys(s.wallByPart).sort()).toEqual([...tracks, 'subjects'].sort());
    const parts = Object.values(s.wallByPart);
    expect(parts.every((v) => v >= 0)).toBe(true);
    expect(parts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(s.wallS + 1e-6);
    expect(wallByPartLine(s.wallByPart)).toMatch(/^wall time by part: track \d .* s, loading\/compressing\/cell processes \d+\.\d s$/);
    // ... and recorded in <out>/runs.csv, a line per run
    await runMatrix(matrix(['dense'], ['arc_easy'], null), { out, log: () => undefined, slice: { tasks: ['arc_easy'] } });
    const runs = parseCsvRecords(fs.readFileSync(runsFile(out), 'utf8'));
    expect(runs.map((r) => [r.matrix, r.slice, r.pending, r.ran])).toEqual([['reliability', '{}', '1', '1'], ['reliability', '{"tasks":["arc_easy"]}', '1', '1']]);
    expect(Number(runs[0].wall_s)).toBeCloseTo(s.wallS, 1);
    expect(Number(runs[0].track4_s)).toBeCloseTo(s.wallByPart['track 4'], 1);
    expect(Number(runs[0].subjects_s)).toBeCloseTo(s.wallByPart.subjects, 1);
    expect(runs[0].git_sha).toBe(s.rows[0].git_sha);
  }, 60_000);
});
