// Runs one fuzz target in a child process (./child.ts) under a watchdog: the child reports its
// executions about once a second, and one that reports nothing for the hang limit (an input
// that loops, or a read that blocks) is killed; its last input, still in its work folder, is
// saved as the hang's reproducer. A child that dies (out of memory, a native abort) is a crash.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FUZZ_DEFAULTS, type FuzzOptions, type FuzzStats } from './harness';
import { fuzzTarget } from './targets';

export interface FuzzChildInit {
  target: string;
  options: Omit<FuzzOptions, 'progress'>;
}

export type FuzzChildMessage =
  | { kind: 'progress'; executions: number }
  | { kind: 'done'; stats: FuzzStats }
  | { kind: 'error'; error: string };

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Fuzzes a target in a child process; a hang or a dead child is counted in the statistics returned. */
export function fuzzInChild(target: string, options: Partial<FuzzOptions> = {}, onProgress?: (executions: number) => void): Promise<FuzzStats> {
  const { progress: _p, ...o } = { ...FUZZ_DEFAULTS, ...options };
  fuzzTarget(target); // an unknown name fails here, naming the known ones
  const started = Date.now();
  const stats = (executions: number, extra: Partial<FuzzStats>): FuzzStats => ({
    target, executions, crashes: 0, hangs: 0, maxAllocBytes: 0, slowestMs: 0, seconds: (Date.now() - started) / 1000, seed: o.seed, badSeeds: [], firstCrashes: [], ...extra,
  });
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let executions = 0;
    let last = Date.now();
    let settled = false;
    const finish = (s: FuzzStats | Error) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      if (s instanceof Error) reject(s);
      else resolve(s);
    };
    const timer = setInterval(() => {
      if (Date.now() - last <= o.hangMs + 2000) return; // the child reports about once a second
      child.kill('SIGKILL');
      const dir = path.join(o.workDir, target);
      const saved = path.join(o.crashDir, `${target}-hang-${Date.now()}`);
      fs.mkdirSync(o.crashDir, { recursive: true });
      if (fs.existsSync(dir)) fs.cpSync(dir, saved, { recursive: true });
      finish(stats(executions + 1, { hangs: 1, firstCrashes: [{ error: `no progress for ${o.hangMs / 1000} s after ${executions} executions: killed`, input: saved }] }));
    }, 500);
    child.on('message', (m: FuzzChildMessage) => {
      last = Date.now();
      if (m.kind === 'progress') {
        executions = m.executions;
        onProgress?.(executions);
      } else if (m.kind === 'done') finish(m.stats);
      else finish(new Error(`fuzz target '${target}' could not run: ${m.error}`));
    });
    child.on('exit', (code, signal) => {
      finish(stats(executions + 1, { crashes: 1, firstCrashes: [{ error: `the fuzz process died (exit ${code}, signal ${signal}) after ${executions} executions`, input: path.join(o.workDir, target) }] }));
    });
    child.send({ target, options: o } satisfies FuzzChildInit);
  });
}
