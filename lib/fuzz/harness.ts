// The fuzz loop of one target, in the calling process: seeds from fuzz/corpus/<target>/, inputs
// from ./mutate (fast-check's random source, so a --seed replays a run), each input written to a
// folder of its own and read by the target. Per input it measures the time and the largest
// single buffer allocation (typed arrays, ArrayBuffers and Buffer.alloc* are watched while a
// target runs; one over the limit throws AllocationLimitError). The parent script
// (scripts/fuzz.ts) runs this in a child process and kills it when an input hangs it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { REPO_ROOT } from '../cli';
import { applyCase, fuzzCaseArb } from './mutate';
import { splitFiles, type FuzzTarget } from './targets';

/** Where the seed corpus lives: fuzz/corpus/<target>/ (one seed per file; multi-file seeds joined by FILE_SEPARATOR). */
export const CORPUS_DIR = path.join(REPO_ROOT, 'fuzz', 'corpus');

export interface FuzzOptions {
  /** Executions to run (the seeds first, unmutated); default 10000. */
  runs: number;
  /** Stop after this many seconds even if `runs` are not done; default null (no time limit). */
  seconds: number | null;
  /** fast-check seed of the first batch (batch k uses seed + k); default 1. */
  seed: number;
  /** Folder the inputs are written to (one subfolder per target); default: a temp folder under tmp/. */
  workDir: string;
  /** Largest single allocation allowed while a target runs; default 1 GiB. */
  allocLimitBytes: number;
  /** An input slower than this counts as a hang (a real hang is caught by the parent's watchdog); default 10 s. */
  hangMs: number;
  /** Folder crashing inputs are saved to (<target>-<hash>.bin, with the error in a .txt); default tmp/fuzz-crashes. */
  crashDir: string;
  /** Called with the executions done, about once a second. */
  progress?: (executions: number) => void;
}

export const FUZZ_DEFAULTS: FuzzOptions = {
  runs: 10000,
  seconds: null,
  seed: 1,
  workDir: path.join(REPO_ROOT, 'tmp', 'fuzz-work'),
  allocLimitBytes: 2 ** 30,
  hangMs: 10_000,
  crashDir: path.join(REPO_ROOT, 'tmp', 'fuzz-crashes'),
};

/** One crash: the error and where its input was saved. */
export interface FuzzCrash {
  error: string;
  input: string;
}

export interface FuzzStats {
  target: string;
  executions: number;
  /** Inputs that threw anything but the parser's own named error (an allocation over the limit included). */
  crashes: number;
  /** Inputs that took longer than hangMs. */
  hangs: number;
  /** Largest single allocation seen while the target ran, in bytes. */
  maxAllocBytes: number;
  slowestMs: number;
  seconds: number;
  seed: number;
  /** Seed files that no reader of the target accepted unmutated (a seed should be a valid file). */
  badSeeds: string[];
  /** The first few distinct crashes (by message). */
  firstCrashes: FuzzCrash[];
}

/** A single allocation over the limit while a target ran. */
export class AllocationLimitError extends Error {
  constructor(readonly bytes: number, readonly limit: number, what: string) {
    super(`allocation of ${bytes} bytes (${what}) is over the fuzz limit of ${limit} bytes`);
    this.name = 'AllocationLimitError';
  }
}

const ENGINE_ERRORS = [TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError];

/**
 * Whether a thrown value is the parser's own named error: an Error that is not one the engine
 * throws by itself (TypeError, RangeError, SyntaxError…: a parser that did not check its input),
 * and whose message names the input (the fuzzed file or its folder, `where`; or starts with `prefix`).
 */
export function isNamedError(e: unknown, where: string, prefix?: string): boolean {
  if (!(e instanceof Error) || e instanceof AllocationLimitError || ENGINE_ERRORS.some((C) => e instanceof C)) return false;
  return e.message.includes(where) || (prefix !== undefined && e.message.startsWith(prefix));
}

// ------------------------------------------------------------------------------- allocation watch

const TYPED_ARRAYS = [
  'ArrayBuffer', 'SharedArrayBuffer', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
  'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
] as const;

/** The allocation watch: while `on`, every typed array, ArrayBuffer and Buffer.alloc* records its bytes. */
const watch = { on: false, limit: 2 ** 30, max: 0, restore: null as (() => void) | null };

function note(bytes: number, what: string): void {
  if (!watch.on || !Number.isFinite(bytes)) return;
  if (bytes > watch.max) watch.max = bytes;
  if (bytes > watch.limit) throw new AllocationLimitError(bytes, watch.limit, what);
}

/** Bytes a typed-array constructor call allocates: a length, or an array-like's length; a view of an existing buffer allocates none. */
function constructedBytes(bytesPer: number, args: unknown[]): number {
  const a = args[0];
  if (typeof a === 'number') return a * bytesPer;
  if (a instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && a instanceof SharedArrayBuffer)) return 0;
  if (a && typeof a === 'object' && 'length' in a && typeof (a as { length: unknown }).length === 'number') return (a as { length: number }).length * bytesPer;
  return 0;
}

/** Replaces the global typed-array constructors and Buffer.alloc* by watching ones, until restoreAllocationWatch. */
function installAllocationWatch(): void {
  if (watch.restore) return;
  const g = globalThis as unknown as Record<string, unknown>;
  const saved: [Record<string, unknown>, string, unknown][] = [];
  for (const name of TYPED_ARRAYS) {
    const Orig = g[name] as (new (...a: unknown[]) => unknown) & { BYTES_PER_ELEMENT?: number };
    if (!Orig) continue;
    const bytesPer = Orig.BYTES_PER_ELEMENT ?? 1;
    const proxy: unknown = new Proxy(Orig, {
      construct(target, args, newTarget) {
        note(constructedBytes(bytesPer, args), `new ${name}`);
        return Reflect.construct(target, args, newTarget === proxy ? target : newTarget);
      },
    });
    saved.push([g, name, Orig]);
    g[name] = proxy;
  }
  const buf = Buffer as unknown as Record<string, unknown>;
  for (const fn of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
    const orig = Buffer[fn] as (size: number, ...rest: unknown[]) => Buffer;
    saved.push([buf, fn, orig]);
    buf[fn] = (size: number, ...rest: unknown[]) => {
      note(size, `Buffer.${fn}`);
      return orig.call(Buffer, size, ...rest);
    };
  }
  watch.restore = () => {
    for (const [obj, key, v] of saved) obj[key] = v;
    watch.restore = null;
  };
}

// ------------------------------------------------------------------------------------ the loop

/** A target's seeds: the files of fuzz/corpus/<target>/ (sorted by name); none is an error naming the folder. */
export function loadSeeds(target: FuzzTarget, corpusDir = CORPUS_DIR): { name: string; bytes: Uint8Array }[] {
  const dir = path.join(corpusDir, target.name);
  const names = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort() : [];
  if (names.length === 0) throw new Error(`fuzz target '${target.name}': no seed files in ${dir}`);
  return names.map((name) => ({ name, bytes: new Uint8Array(fs.readFileSync(path.join(dir, name))) }));
}

/** Writes an input's files into dir (removing those the input has none for); returns their paths. */
function writeInput(target: FuzzTarget, bytes: Uint8Array, dir: string): string[] {
  const parts = splitFiles(target, bytes);
  return target.files.map((name, k) => {
    const p = path.join(dir, name);
    const part = parts[k];
    if (part) fs.writeFileSync(p, part);
    else fs.rmSync(p, { force: true });
    return p;
  });
}

/** Runs every reader of the target on one input: whether any accepted it, and the first crash (null: none). */
async function execute(target: FuzzTarget, paths: string[], dir: string): Promise<{ accepted: boolean; crash: string | null }> {
  let accepted = false;
  let crash: string | null = null;
  watch.on = true;
  try {
    for (const read of target.readers) {
      try {
        const r = read(paths, dir);
        if (r instanceof Promise) await r;
        accepted = true;
      } catch (e) {
        if (isNamedError(e, dir, target.namedPrefix) || crash !== null) continue;
        crash = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack?.split('\n').slice(1, 6).join('\n') ?? ''}` : `non-Error thrown: ${String(e)}`;
      }
    }
  } finally {
    watch.on = false;
  }
  return { accepted, crash };
}

/** Fuzzes one target; crashes are counted, saved to crashDir and the run goes on. */
export async function runFuzz(target: FuzzTarget, options: Partial<FuzzOptions> = {}): Promise<FuzzStats> {
  const o: FuzzOptions = { ...FUZZ_DEFAULTS, ...options };
  await target.init?.();
  const seeds = loadSeeds(target);
  const dir = path.join(o.workDir, target.name);
  fs.mkdirSync(dir, { recursive: true });
  const stats: FuzzStats = {
    target: target.name, executions: 0, crashes: 0, hangs: 0, maxAllocBytes: 0, slowestMs: 0, seconds: 0, seed: o.seed, badSeeds: [], firstCrashes: [],
  };
  const seen = new Set<string>();
  const t0 = performance.now();
  let lastProgress = t0;
  const quiet = { warn: console.warn, log: console.log, info: console.info };
  const one = async (bytes: Uint8Array, seedName?: string) => {
    const paths = writeInput(target, bytes, dir);
    const start = performance.now();
    const { accepted, crash } = await execute(target, paths, dir);
    const ms = performance.now() - start;
    stats.executions++;
    stats.slowestMs = Math.max(stats.slowestMs, ms);
    if (ms > o.hangMs) stats.hangs++;
    if (seedName !== undefined && !accepted) stats.badSeeds.push(seedName);
    if (crash !== null) {
      stats.crashes++;
      const key = crash.split('\n')[0].replaceAll(dir, '<dir>');
      const hash = createHash('sha1').update(bytes).digest('hex').slice(0, 12);
      const input = path.join(o.crashDir, `${target.name}-${hash}.bin`);
      fs.mkdirSync(o.crashDir, { recursive: true });
      fs.writeFileSync(input, bytes);
      fs.writeFileSync(`${input}.txt`, `${crash}\n`);
      if (!seen.has(key) && stats.firstCrashes.length < 10) stats.firstCrashes.push({ error: crash, input });
      seen.add(key);
    }
    const now = performance.now();
    if (now - lastProgress > 1000) {
      lastProgress = now;
      o.progress?.(stats.executions);
    }
  };
  try {
    console.warn = console.log = console.info = () => {}; // readers' warnings (trailing bytes…) would flood the log
    installAllocationWatch();
    watch.limit = o.allocLimitBytes;
    watch.max = 0;
    for (const s of seeds) await one(s.bytes, s.name);
    const arb = fuzzCaseArb(seeds.length);
    const seedBytes = seeds.map((s) => s.bytes);
    const deadline = o.seconds === null ? Infinity : t0 + o.seconds * 1000;
    for (let batch = 0; stats.executions < o.runs && performance.now() < deadline; batch++) {
      const n = Math.min(1000, o.runs - stats.executions);
      for (const c of fc.sample(arb, { seed: o.seed + batch, numRuns: n })) {
        await one(applyCase(c, seedBytes));
        if (performance.now() >= deadline) break;
      }
    }
  } finally {
    Object.assign(console, quiet);
    watch.restore?.();
  }
  stats.maxAllocBytes = watch.max;
  stats.seconds = (performance.now() - t0) / 1000;
  return stats;
}
