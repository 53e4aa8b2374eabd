// The matrix as a Slurm job array (lib/slurm.ts, scripts/slurm.ts): the plan and script, the merge
// by cell hash (twice adds nothing; a cell finished after a not_run gets its rows), and, when a
// cluster answers (CI starts a single-node one: .ci/slurm-up.sh), the smoke matrix submitted as an
// array with one task cancelled and resubmitted alone: the merged rows equal a single-process run.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { rowCell, smokeMatrix, type Cell } from '../lib/matrix';
import { appendResults, readResults, trackFile, type ResultRow } from '../lib/results';
import { arrayScript, mergeShards, shardsOf } from '../lib/slurm';
import { runMatrix } from '../lib/tracks/runner';
import { expectSameRows } from './shard-helpers';

const ROOT = path.resolve(__dirname, '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const row = (cell: string, status: ResultRow['status'], run: string, metric = 'acc', value = 0.5): ResultRow => ({
  run_id: run, track: 1, model: 'm', model_family: 'llama', model_params: 1, method: 'dense', method_config: {}, task: 'piqa', metric,
  value: status === 'ok' ? value : null, higher_is_better: true, n: 1, stderr: null, backend: 'wasm', device: 'x', seqlen: null, bos: false,
  calib: 'none', seed: 0, git_sha: 'e129e28', started_at: '2026-12-04T00:00:00Z', duration_s: 1, status, note: `cell=${cell}`,
});
const [H0, H1, H2] = ['0', '1', '2'].map((d) => d.repeat(16)); // cell hashes

describe('slurm plan and merge', () => {
  it('one task per model × method pair, each with its slice; the script runs task i into shards/i', () => {
    const cell = (model: string, method: string) => ({ model: { id: model }, method: { id: method } }) as Cell;
    const shards = shardsOf([cell('a', 'dense'), cell('a', 'gptq-w4'), cell('a', 'dense'), cell('b', 'dense')]);
    expect(shards.map((s) => [s.slice, s.cells])).toEqual([['models=a;methods=dense', 2], ['models=a;methods=gptq-w4', 1], ['models=b;methods=dense', 1]]);
    const script = arrayScript({ matrix: 'smoke', out: '/o', shards, runFlags: ['--backend', 'wasm'], gpus: 1, cpus: 2, memGb: 8, timeMin: 30, partition: null, only: [1], node: '/usr/bin/node' });
    expect(script).toMatch(/#SBATCH --array=1\n/);
    expect(script).toMatch(/#SBATCH --gpus=1\n/);
    expect(script).toContain(`--slice "\${SLICES[$SLURM_ARRAY_TASK_ID]}" --out '/o'/shards/$SLURM_ARRAY_TASK_ID`);
    expect(() => arrayScript({ matrix: 'smoke', out: '/o', shards, runFlags: [], gpus: 0, cpus: 1, memGb: 1, timeMin: 1, partition: null, only: [3], node: 'node' })).toThrow(/task 3 is not in 0\.\.2/);
    expect(() => shardsOf([cell('a;b', 'dense')])).toThrow(/'a;b' cannot go into a --slice/);
  });

  it('merges by cell hash: twice adds nothing, a done cell is kept, a cell done after a not_run gets that run’s rows', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-merge-'));
    const shard = (i: number) => path.join(out, 'shards', String(i));
    appendResults(trackFile(1, out), [row(H0, 'ok', 'r0')]); // already merged
    appendResults(trackFile(1, shard(0)), [row(H0, 'ok', 'r0'), row(H1, 'not_run', 'r1'), row(H1, 'ok', 'r2', 'acc', 0.7), row(H1, 'not_run', 'r2', 'acc_norm')]);
    appendResults(trackFile(1, shard(1)), [row(H2, 'not_run', 'r3')]);
    expect(mergeShards(out)[1]).toBe(3); // c1's run r2 (both rows), c2's not_run
    expect(mergeShards(out)[1]).toBe(0);
    const rows = readResults(trackFile(1, out));
    expect(rows.map((r) => `${rowCell(r)?.[0]} ${r.run_id} ${r.metric} ${r.status}`)).toEqual(['0 r0 acc ok', '1 r2 acc ok', '1 r2 acc_norm not_run', '2 r3 acc not_run']);
    appendResults(trackFile(1, shard(1)), [row(H2, 'ok', 'r4')]); // the task resubmitted
    expect(mergeShards(out)[1]).toBe(1);
    fs.rmSync(out, { recursive: true, force: true });
  });
});

const slurm = spawnSync('sinfo', ['-h', '-o', '%t'], { encoding: 'utf8' });
const cluster = slurm.status === 0 && /idle|mix|alloc/.test(slurm.stdout) ? null : `no Slurm cluster answers (sinfo: ${slurm.error?.message ?? (slurm.stderr || slurm.stdout).trim().split('\n')[0]}); CI starts one with .ci/slurm-up.sh`;
if (cluster) console.warn(`slurm.test: skipping the cluster test: ${cluster}`);

describe.skipIf(cluster !== null)('the smoke matrix on a real Slurm cluster', () => {
  it('an array of one task per pair, one task cancelled and resubmitted alone: the merged rows equal a single-process run', { timeout: 900_000 }, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-slurm-'));
    const ref = path.join(tmp, 'ref');
    const out = path.join(tmp, 'out');
    const mx = { ...smokeMatrix(), backend: 'wasm' as const };
    await runMatrix(mx, { out: ref, log: () => undefined });
    const cli = (...args: string[]) => execFileSync(process.execPath, ['--import', TSX, 'scripts/slurm.ts', '--matrix', 'smoke', '--out', out, '--backend', 'wasm', '--cpus', '1', '--mem-gb', '1', ...args], { cwd: ROOT, encoding: 'utf8' });
    const job = cli('--submit').trim().split('\n').at(-1)!.split(';')[0];
    expect(job).toMatch(/^\d+$/);
    const tasks = (fs.readFileSync(path.join(out, 'shards', 'array.sh'), 'utf8').match(/^ {2}'models=/gm) ?? []).length;
    expect(tasks).toBeGreaterThanOrEqual(4);
    // Cancel task 0 once it has started (or before: then it has no rows yet), and wait for the rest.
    const until = async (ok: () => boolean, s: number) => {
      for (let t = 0; t < s * 10 && !ok(); t++) await new Promise((r) => setTimeout(r, 100));
    };
    await until(() => fs.existsSync(path.join(out, 'shards', '0.log')), 60);
    execFileSync('scancel', [`${job}_0`]);
    await until(() => execFileSync('squeue', ['-h', '-j', job], { encoding: 'utf8' }).trim() === '', 600);
    cli('--merge');
    cli('--only', '0', '--submit', '--wait');
    expectSameRows(out, ref);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});
