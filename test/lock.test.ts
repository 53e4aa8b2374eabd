import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock, LockHeldError, pidAlive } from '../lib/lock';
import { readResults } from '../lib/results';

const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const RESULTS = path.resolve(__dirname, '../lib/results.ts');

/** The pid of a process that has ended. */
function deadPid(): number {
  const pid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  expect(pidAlive(Number(pid))).toBe(false);
  return Number(pid);
}

describe('file locks', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-lock-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses a second holder, naming the owner, and frees the lock on release', () => {
    const file = path.join(dir, '.run.lock');
    const a = acquireLock(file, { what: "output folder 'x'" });
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname() });
    expect(() => acquireLock(file, { what: "output folder 'x'" })).toThrow(new RegExp(`output folder 'x' is in use by pid ${process.pid} on host `));
    a.release();
    expect(fs.existsSync(file)).toBe(false);
    acquireLock(file).release();
  });

  it('takes over a stale lock of a dead process on this host, with a warning', () => {
    const file = path.join(dir, '.run.lock');
    const pid = deadPid();
    fs.writeFileSync(file, JSON.stringify({ pid, host: os.hostname(), since: '2026-01-01T00:00:00Z', command: 'old run' }));
    const warnings: string[] = [];
    const lock = acquireLock(file, { what: 'folder', warn: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toMatch(new RegExp(`stale lock .* of pid ${pid} \\(no longer running`));
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('never takes over a lock held from another host', () => {
    const file = path.join(dir, '.run.lock');
    fs.writeFileSync(file, JSON.stringify({ pid: deadPid(), host: 'some-other-host', since: 'then', command: 'elsewhere' }));
    let err: unknown;
    try {
      acquireLock(file, { what: 'folder' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as Error).message).toMatch(/host some-other-host \(another host/);
  });

  it('loses no row when two processes append to one results file at once', async () => {
    const N = 150;
    const file = path.join(dir, 'results', 'track1.csv');
    const script = path.join(dir, 'append.ts');
    fs.writeFileSync(
      script,
      `import { appendResults, makeRow } from ${JSON.stringify(RESULTS)};
const N = ${N};
const ctx = { run_id: process.argv[2], git_sha: '0123456', started_at: '2026-01-01T00:00:00Z', backend: 'cpu', device: 'cpu' };
while (Date.now() < Number(process.argv[3])); // both start together
for (let k = 0; k < N; k++) appendResults(${JSON.stringify(file)}, [makeRow(ctx, { track: 1, model: 'm', model_family: 'f', method: 'dense', method_config: {}, task: 't', metric: 'k' + k, value: k, higher_is_better: true })]);
`,
    );
    const start = String(Date.now() + 1500);
    const run = (id: string) =>
      new Promise<number>((resolve) => spawn(process.execPath, ['--import', TSX, script, id, start], { stdio: 'inherit' }).on('exit', (code) => resolve(code ?? -1)));
    expect(await Promise.all([run('a'), run('b')])).toEqual([0, 0]);
    const rows = readResults(file);
    expect(rows.filter((r) => r.run_id === 'a').length).toBe(N);
    expect(rows.filter((r) => r.run_id === 'b').length).toBe(N);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['track1.csv']); // no lock or temp file left
  }, 60_000);
});
