// Fuzzes the kit's parsers of outside data (lib/fuzz/targets.ts: safetensors, GGUF, llama2.c
// checkpoints and tokenizers, config.json, tokenizer.json, packed and sparse model files, CSV,
// JSONL, TSV, matrix files): mutations of the seed corpus fuzz/corpus/<target>/ fed to each
// reader, one target at a time, each in a child process under a hang watchdog. A crash is any
// error other than the reader's own (an Error naming the input file), or a single allocation
// over --alloc-limit-gib; a hang is an input that runs longer than --hang-s. Crashing inputs are
// saved under tmp/fuzz-crashes/. One row per target goes to the results file. Exit 1 when
// anything crashed or hung.
//
//   npx tsx scripts/fuzz.ts --runs 1000000                  # every target, 1M executions each
//   npx tsx scripts/fuzz.ts --target gguf,csv --seconds 60  # two targets, a minute each
//
// --target A,B        targets to run (default: all; --list prints them)
// --runs N            executions per target, the seeds included (default 10000)
// --seconds S         stop a target after S seconds even if --runs are not done (default: none)
// --seed N            fast-check seed (default 1); another seed gives other inputs
// --hang-s S          an input running longer is a hang (default 10)
// --alloc-limit-gib G largest single allocation allowed (default 1)
// --results FILE      where the rows go (default <data root>/bench/fuzz.csv; 'none': not written)
// --list              print the targets and the readers they drive, then exit
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import type { FuzzStats } from '../lib/fuzz/harness';
import { fuzzInChild } from '../lib/fuzz/process';
import { TARGETS, fuzzTarget } from '../lib/fuzz/targets';
import { dataOutDir, gitSha, writeFileAtomic } from '../lib/results';

helpFromHeader(import.meta.url);
const { values: a } = parseArgs({
  options: {
    target: { type: 'string' },
    runs: { type: 'string', default: '10000' },
    seconds: { type: 'string' },
    seed: { type: 'string', default: '1' },
    'hang-s': { type: 'string', default: '10' },
    'alloc-limit-gib': { type: 'string', default: '1' },
    results: { type: 'string', default: path.join(dataOutDir(), 'bench', 'fuzz.csv') },
    list: { type: 'boolean', default: false },
  },
});
if (a.list) {
  for (const t of TARGETS) console.log(`${t.name.padEnd(18)} ${t.parsers}`);
  process.exit(0);
}
const targets = a.target ? a.target.split(',').map((n) => fuzzTarget(n.trim()).name) : TARGETS.map((t) => t.name);
const runs = numberFlag('runs', a.runs!, { integer: true, min: 1 });
const seconds = numberFlag('seconds', a.seconds, { min: 0 }) ?? null;
const seed = numberFlag('seed', a.seed!, { integer: true, min: 0 });
const hangMs = numberFlag('hang-s', a['hang-s']!, { min: 0.1 }) * 1000;
const allocLimitBytes = Math.round(numberFlag('alloc-limit-gib', a['alloc-limit-gib']!, { min: 0 }) * 2 ** 30);

const HEADER = ['parser', 'executions', 'crashes', 'hangs', 'max_alloc_bytes', 'slowest_ms', 'seconds', 'seed', 'tool', 'git_sha', 'started_at'];
const TOOL = 'fast-check 4.11.0 mutations of fuzz/corpus (no coverage feedback); scripts/fuzz.ts';
const sha = gitSha();
const workDir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'llmcb-fuzz-'));
let failed = false;
try {
  for (const target of targets) {
    const startedAt = new Date().toISOString();
    const t0 = Date.now();
    const s: FuzzStats = await fuzzInChild(target, { runs, seconds, seed, hangMs, allocLimitBytes, workDir }, (n) => {
      process.stderr.write(`\r${target}: ${n} executions, ${((Date.now() - t0) / 1000).toFixed(0)} s   `);
    });
    process.stderr.write('\n');
    console.log(
      `${target}: ${s.executions} executions in ${s.seconds.toFixed(1)} s, ${s.crashes} crashes, ${s.hangs} hangs, ` +
        `largest allocation ${s.maxAllocBytes} bytes, slowest input ${s.slowestMs.toFixed(1)} ms`,
    );
    if (s.badSeeds.length) console.log(`  seeds no reader accepts (fix or remove them): ${s.badSeeds.join(', ')}`);
    for (const c of s.firstCrashes) console.log(`  ${c.error.split('\n').join('\n    ')}\n    input: ${c.input}`);
    failed ||= s.crashes > 0 || s.hangs > 0;
    if (a.results !== 'none') {
      const row = [target, s.executions, s.crashes, s.hangs, s.maxAllocBytes, s.slowestMs.toFixed(1), s.seconds.toFixed(1), s.seed, TOOL, sha, startedAt].map(String);
      const old = fs.existsSync(a.results!) ? parseCsvRecords(fs.readFileSync(a.results!, 'utf8'), a.results!).map((r) => HEADER.map((h) => r[h] ?? '')) : [];
      writeFileAtomic(a.results!, formatCsv(HEADER, [...old, row]));
    }
  }
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
