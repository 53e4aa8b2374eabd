// Pre-trains zoo models (LLaMA-style, OPT-style and GLM-style) with tfjs: AdamW, cosine schedule with warmup,
// gradient clipping, checkpoints, resume; writes HF directories, model cards and tidy loss curves.
//
//   npx tsx scripts/train.ts --model llama-1m --steps 600            # fixed number of steps
//   npx tsx scripts/train.ts --model opt-2m --budget-s 150           # steps from a timed probe
//   npx tsx scripts/train.ts --model llama-tiny --steps 20 --seq-len 64 --backend wasm   # tiny try on CPU
//   npx tsx scripts/train.ts --model glm-700k --budget-s 150         # the GLM family (ZOO_GLM in lib/train/zoo.ts), to join the zoo
//   npx tsx scripts/train.ts --model llama-1m --steps 200 --resume-check   # resume == uninterrupted?
//
// On the GPU host: bash .gpu/enter.sh npx tsx scripts/train.ts ... --backend webgpu --out-root $OUT
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatCsv } from '../lib/csv';
import { writeFileAtomic } from '../lib/results';
import { initRuntime, parseBackend } from '../lib/runtime';
import { PRETRAIN_DEFAULTS, pretrain, type PretrainOptions } from '../lib/train/pretrain';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const FLAGS: Record<string, [keyof PretrainOptions, 'string' | 'number' | 'bool']> = {
  '--model': ['model', 'string'],
  '--corpus': ['corpusDir', 'string'],
  '--tokenizer': ['tokenizerDir', 'string'],
  '--out-root': ['outRoot', 'string'],
  '--vocab': ['vocab', 'number'],
  '--seq-len': ['seqLen', 'number'],
  '--steps': ['steps', 'number'],
  '--budget-s': ['budgetS', 'number'],
  '--probe-steps': ['probeSteps', 'number'],
  '--batch': ['batch', 'number'],
  '--lr': ['lr', 'number'],
  '--warmup-frac': ['warmupFrac', 'number'],
  '--log-every': ['logEvery', 'number'],
  '--eval-points': ['evalPoints', 'number'],
  '--eval-windows': ['evalWindows', 'number'],
  '--final-eval-windows': ['finalEvalWindows', 'number'],
  '--ckpt': ['checkpointDir', 'string'],
  '--checkpoint-every': ['checkpointEvery', 'number'],
  '--resume': ['resume', 'bool'],
  '--stop-after': ['stopAfter', 'number'],
  '--seed': ['seed', 'number'],
  '--no-save': ['save', 'bool'],
  '--fp32': ['fp16', 'bool'],
};

function parseArgs(argv: string[]): { o: Partial<PretrainOptions>; backend: string; resumeCheck: boolean } {
  const o: Partial<PretrainOptions> = {};
  let backend = process.env.LLMCB_BACKEND ?? 'auto';
  let resumeCheck = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--backend') {
      backend = argv[++i];
      continue;
    }
    if (a === '--resume-check') {
      resumeCheck = true;
      continue;
    }
    const f = FLAGS[a];
    if (!f) throw new Error(`unknown option ${a} (options: --backend, --resume-check, ${Object.keys(FLAGS).join(', ')})`);
    const [key, kind] = f;
    if (kind === 'bool') {
      (o as Record<string, unknown>)[key] = a === '--no-save' || a === '--fp32' ? false : true;
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`option ${a} needs a value`);
    if (kind === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error(`option ${a} needs a number, got '${v}'`);
      (o as Record<string, unknown>)[key] = n;
    } else (o as Record<string, unknown>)[key] = v;
  }
  return { o, backend, resumeCheck };
}

/**
 * Trains the model twice from the same init: straight through, and interrupted at half-way (a
 * checkpoint) then resumed in fresh variables from disk; writes both loss curves' differences.
 */
async function resumeCheck(rt: Awaited<ReturnType<typeof initRuntime>>, o: Partial<PretrainOptions>): Promise<void> {
  const steps = o.steps;
  if (!steps) throw new Error('--resume-check needs --steps');
  const logEvery = o.logEvery ?? PRETRAIN_DEFAULTS.logEvery;
  const half = Math.max(logEvery, Math.round(steps / 2 / logEvery) * logEvery);
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-resume-'));
  const common = { ...o, save: false, checkpointEvery: 0 };
  const a = await pretrain(rt, { ...common, checkpointDir: path.join(base, 'a') });
  await pretrain(rt, { ...common, checkpointDir: path.join(base, 'b'), stopAfter: half });
  const b = await pretrain(rt, { ...common, checkpointDir: path.join(base, 'b'), resume: true });
  if (b.train.resumedFrom !== half) throw new Error(`resume check: expected to resume from step ${half}, resumed from ${b.train.resumedFrom}`);
  const rows: string[][] = [];
  let maxDiff = 0;
  a.train.curve.forEach((p, i) => {
    const q = b.train.curve[i];
    const d = Math.abs(p.trainLoss - q.trainLoss);
    maxDiff = Math.max(maxDiff, d);
    rows.push([a.name, rt.backend, rt.device, String(p.step), String(p.step > half), String(p.trainLoss), String(q.trainLoss), String(d)]);
  });
  const outRoot = o.outRoot ?? PRETRAIN_DEFAULTS.outRoot;
  const file = path.join(outRoot, 'data/zoo', `resume_check_${a.name}.csv`);
  writeFileAtomic(file, formatCsv(['model', 'backend', 'device', 'step', 'after_resume', 'loss_uninterrupted', 'loss_resumed', 'abs_diff'], rows));
  console.log(`resume check ${a.name}: interrupted at ${half} of ${steps} steps; max |loss difference| over ${rows.length} points = ${maxDiff} -> ${file}`);
}

async function main(): Promise<void> {
  const { o, backend, resumeCheck: check } = parseArgs(process.argv.slice(2));
  const rt = await initRuntime({ backend: parseBackend(backend) });
  console.log(`backend ${rt.backend} on ${rt.device}`);
  if (check) return resumeCheck(rt, o);
  const r = await pretrain(rt, o);
  if (r.dir) console.log(`saved ${r.dir}`);
  else console.log(`stopped at step ${r.train.step} (checkpointed; model not saved)`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
