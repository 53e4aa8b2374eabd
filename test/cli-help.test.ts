// Every script answers --help with its usage, the registry's methods and tasks, and exit status 0
// (and does no work).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { methodNames } from '../lib/methods/index';
import { TASKS } from '../lib/tasks/index';

const ROOT = path.resolve(__dirname, '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const scripts = fs.readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.ts')).sort();

function help(script: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', TSX, path.join('scripts', script), '--help'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LLMCB_DATA_OUT: path.join(ROOT, 'tmp/help-must-not-write') } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code, out }));
  });
}

it(`every script (${scripts.length}) prints its usage, methods and tasks for --help and exits 0`, { timeout: 300_000 }, async () => {
  const results: [string, { code: number | null; out: string }][] = [];
  for (let i = 0; i < scripts.length; i += 4) results.push(...(await Promise.all(scripts.slice(i, i + 4).map(async (s) => [s, await help(s)] as [string, { code: number | null; out: string }]))));
  const bad = results.filter(([, r]) => r.code !== 0 || r.out.trim().length < 40).map(([s, r]) => `${s}: exit ${r.code}: ${r.out.trim().split('\n')[0]}`);
  expect(bad).toEqual([]);
  const names = [...methodNames(), ...Object.keys(TASKS)];
  const missing = results.flatMap(([s, r]) => names.filter((n) => !new RegExp(`\\b${n}\\b`).test(r.out)).map((n) => `${s}: no '${n}'`));
  expect(missing).toEqual([]);
  expect(fs.existsSync(path.join(ROOT, 'tmp/help-must-not-write'))).toBe(false);
});
