// Executes tslab notebooks without Jupyter (the GPU host has none, DESIGN §2): tslab's own
// converter and executor run every code cell in order in this process, stdout/stderr and
// tslab.display output are written back into the .ipynb, and the first failing cell (type error
// or runtime error) stops the run with exit code 1, as `jupyter nbconvert --execute` does.
//
// Usage: node --import tsx scripts/nb-exec.ts [--out DIR] [--inplace] notebooks/01-performance.ipynb ...
//   --out DIR   write executed notebooks under DIR (default: beside the input, *.out.ipynb)
//   --inplace   overwrite the input notebooks
// The working directory of each notebook is its own folder (as a Jupyter kernel's is).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { isMainModule } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

interface Output {
  output_type: string;
  [k: string]: unknown;
}
interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Output[];
  execution_count?: number | null;
  metadata?: Record<string, unknown>;
}
interface Notebook {
  cells: Cell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

export interface ExecOptions {
  outDir: string | null; // where executed notebooks go; null: beside the input as *.out.ipynb
  inplace: boolean; // overwrite the input notebook
}

export const execDefaults: ExecOptions = {
  outDir: null, // keep the committed notebook untouched by default
  inplace: false, // explicit opt-in to rewrite the source notebook
};

const require_ = createRequire(import.meta.url);

function tslabModules() {
  let root: string;
  try {
    root = path.dirname(require_.resolve('tslab/package.json'));
  } catch {
    throw new Error('nb-exec: the tslab package is not installed (it is a devDependency: npm ci)');
  }
  const converter = require_(path.join(root, 'dist/converter.js')) as typeof import('tslab/dist/converter');
  const executor = require_(path.join(root, 'dist/executor.js')) as typeof import('tslab/dist/executor');
  const jupyter = require_(path.join(root, 'dist/jupyter.js')) as { lastWriteDisplayData: unknown };
  return { converter, executor, jupyter };
}

const text = (s: string | string[]) => (Array.isArray(s) ? s.join('') : s);
/** Jupyter stores multi-line strings as arrays of lines, each keeping its newline. */
const lines = (s: string) => s.split(/(?<=\n)/);

/** Runs every code cell of one notebook; returns the executed notebook and whether all cells passed. */
export async function executeNotebook(file: string): Promise<{ nb: Notebook; ok: boolean; failed: number | null; error: string }> {
  const nb = JSON.parse(fs.readFileSync(file, 'utf8')) as Notebook;
  if (!Array.isArray(nb.cells)) throw new Error(`${file}: not a notebook (no cells array)`);
  const { converter, executor, jupyter } = tslabModules();
  const cwd = process.cwd();
  process.chdir(path.dirname(path.resolve(file)));
  let current: Output[] = [];
  let errors = '';
  const stream = (name: 'stdout' | 'stderr', s: string) => {
    const last = current[current.length - 1];
    if (last && last.output_type === 'stream' && last.name === name) last.text = (last.text as string) + s;
    else current.push({ output_type: 'stream', name, text: s });
    if (name === 'stderr') errors += s;
  };
  const convs = {
    node: converter.createConverter({ isJS: false, isBrowser: false }),
    browser: converter.createConverter({ isJS: false, isBrowser: true }),
    close() {
      this.node.close();
      this.browser.close();
    },
  };
  const fmt = (args: unknown[]) => args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? a.stack ?? String(a) : JSON.stringify(a))).join(' ') + '\n';
  const ex = executor.createExecutor(process.cwd(), convs, {
    log: (...a: unknown[]) => stream('stdout', fmt(a)),
    error: (...a: unknown[]) => stream('stderr', fmt(a)),
  });
  jupyter.lastWriteDisplayData = (msg: { data: Record<string, unknown>; metadata: Record<string, unknown> }) => {
    current.push({ output_type: 'display_data', data: msg.data, metadata: msg.metadata ?? {} });
  };
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  let count = 0;
  let failed: number | null = null;
  try {
    for (let i = 0; i < nb.cells.length; i++) {
      const cell = nb.cells[i];
      if (cell.cell_type !== 'code') continue;
      current = [];
      errors = '';
      process.stdout.write = ((s: string | Uint8Array) => (stream('stdout', String(s)), true)) as typeof process.stdout.write;
      process.stderr.write = ((s: string | Uint8Array) => (stream('stderr', String(s)), true)) as typeof process.stderr.write;
      let ok: boolean;
      try {
        ok = await ex.execute(text(cell.source));
      } catch (e) {
        stream('stderr', `${(e as Error).stack ?? e}\n`);
        ok = false;
      } finally {
        process.stdout.write = out;
        process.stderr.write = err;
      }
      cell.execution_count = ++count;
      cell.outputs = current.map((o) => (o.output_type === 'stream' ? { ...o, text: lines(o.text as string) } : o));
      if (!ok) {
        cell.outputs.push({ output_type: 'error', ename: 'CellError', evalue: errors.trim().split('\n')[0] ?? '', traceback: lines(errors) });
        failed = i;
        break;
      }
    }
  } finally {
    ex.close();
    process.chdir(cwd);
  }
  return { nb, ok: failed === null, failed, error: errors };
}

function parseArgs(argv: string[]): { files: string[]; opts: ExecOptions } {
  const opts = { ...execDefaults };
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') {
      const v = argv[++i];
      if (!v) throw new Error('nb-exec: --out needs a directory');
      opts.outDir = v;
    } else if (a === '--inplace') opts.inplace = true;
    else if (a.startsWith('--')) throw new Error(`nb-exec: unknown option ${a} (known: --out DIR, --inplace)`);
    else files.push(a);
  }
  if (files.length === 0) throw new Error('nb-exec: give at least one .ipynb file');
  for (const f of files) if (!fs.existsSync(f)) throw new Error(`nb-exec: ${f} does not exist`);
  return { files, opts };
}

async function main(): Promise<void> {
  const { files, opts } = parseArgs(process.argv.slice(2));
  let bad = 0;
  for (const file of files) {
    const t0 = performance.now();
    const { nb, ok, failed, error } = await executeNotebook(file);
    const dest = opts.inplace
      ? file
      : opts.outDir
        ? path.join(opts.outDir, path.basename(file))
        : file.replace(/\.ipynb$/, '.out.ipynb');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, JSON.stringify(nb, null, 1) + '\n');
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    if (ok) console.log(`${file}: ok in ${s}s -> ${dest}`);
    else {
      bad++;
      console.error(`${file}: cell ${failed! + 1} failed after ${s}s -> ${dest}\n${error}`);
    }
  }
  process.exit(bad ? 1 : 0);
}

if (isMainModule(import.meta.url)) {
  main().catch((e) => {
    console.error((e as Error).message);
    process.exit(1);
  });
}
