// Advisory locks as files: an output folder held by one run (lib/tracks/runner.ts), a results file
// by one appender at a time (lib/results.ts). The lock file names its owner (pid, host, start,
// command). A lock whose owner is a dead process on this host is stale and is taken over with a
// warning; one held from another host is never taken over (its owner's liveness cannot be checked
// here): the error names the file to delete. Held locks are released on exit, SIGINT and SIGTERM;
// a lock left by a killed process (SIGKILL, power loss) is the stale case.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface LockOwner {
  pid: number;
  host: string;
  since: string; // ISO time the lock was taken
  command: string; // the owner's command line (shortened)
}

export interface LockOptions {
  what: string; // what the lock guards, for messages, e.g. "output folder 'data'"
  waitS: number; // keep retrying this long while a live owner holds it; 0: refuse at once
  warn: (msg: string) => void; // where the stale take-over warning goes
}

export const lockDefaults: LockOptions = {
  what: 'lock', // name the guarded thing in real uses
  waitS: 0, // refuse at once
  warn: (m) => console.warn(m),
};

export class LockHeldError extends Error {
  constructor(
    readonly file: string,
    readonly owner: LockOwner,
    what: string,
  ) {
    const here = owner.host === os.hostname();
    super(
      `${what} is in use by pid ${owner.pid} on host ${owner.host}${here ? '' : ' (another host: its liveness cannot be checked from here)'} ` +
        `since ${owner.since} (${owner.command}); lock file ${file}. Wait for that process to end, or delete the file if it is gone.`,
    );
    this.name = 'LockHeldError';
  }
}

export interface Lock {
  file: string;
  owner: LockOwner;
  release(): void;
}

/**
 * Whether a process with this pid runs on this host (EPERM: it runs, as another user). A zombie
 * (ended, not yet reaped by its parent) does not run: Linux's /proc says so where it can.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state after the last ')'
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: kill(pid, 0) is all there is
  }
}

/** Takes the lock file, or throws LockHeldError naming its live owner (after waitS of retries). */
export function acquireLock(file: string, options: Partial<LockOptions> = {}): Lock {
  const o = { ...lockDefaults, ...options };
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command: process.argv.slice(1).join(' ').slice(0, 200) };
  const text = JSON.stringify(owner) + '\n';
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const deadline = Date.now() + o.waitS * 1000;
  for (;;) {
    if (createExclusive(file, text)) break;
    const held = readText(file);
    if (held === null) continue; // released meanwhile: try again
    const holder = parseOwner(held);
    if (!holder) throw new Error(`${o.what}: lock file ${file} does not name an owner (${JSON.stringify(held.slice(0, 80))}); delete it if no run is using the folder`);
    if (holder.host === os.hostname() && !pidAlive(holder.pid)) {
      o.warn(`warning: ${o.what}: taking over the stale lock ${file} of pid ${holder.pid} (no longer running; taken ${holder.since})`);
      // Remove it only if it is still the stale one (another process may have taken it over first).
      if (readText(file) === held) fs.rmSync(file, { force: true });
      continue;
    }
    if (Date.now() >= deadline) throw new LockHeldError(file, holder, o.what);
    sleepMs(10 + Math.random() * 20);
  }
  const lock: Lock = {
    file,
    owner,
    release: () => {
      if (!HELD.delete(lock)) return;
      if (readText(file) === text) fs.rmSync(file, { force: true });
      if (HELD.size === 0) setExitHandlers(false);
    },
  };
  HELD.add(lock);
  setExitHandlers(true);
  return lock;
}

/** Creates file with text, complete or not at all: a temp file hard-linked into place (fails if file exists). */
function createExclusive(file: string, text: string): boolean {
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
  try {
    fs.writeFileSync(tmp, text);
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function parseOwner(text: string): LockOwner | null {
  try {
    const j = JSON.parse(text) as Partial<LockOwner>;
    if (typeof j.pid === 'number' && typeof j.host === 'string') return { since: '?', command: '?', ...j } as LockOwner;
  } catch {
    // not JSON
  }
  return null;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// Locks held by this process, released on exit and on SIGINT/SIGTERM (the handlers are installed
// only while a lock is held, so they never change how a process without locks ends).
const HELD = new Set<Lock>();
const releaseAll = () => {
  for (const l of [...HELD]) l.release();
};
const onSignal = (signal: NodeJS.Signals) => {
  releaseAll();
  process.exit(128 + (os.constants.signals[signal] ?? 1));
};

function setExitHandlers(on: boolean): void {
  if (on === process.listeners('exit').includes(releaseAll)) return;
  if (on) {
    process.on('exit', releaseAll);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  } else {
    process.off('exit', releaseAll);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
