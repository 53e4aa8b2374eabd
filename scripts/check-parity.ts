// Parity with transformers on any backend (the GPU host has no vitest): logits of every fixture in
// test/fixtures/models within 1e-4, and stories260K's greedy continuation token for token.
//   node --import tsx scripts/check-parity.ts [--backend webgpu] [--fixtures DIR] [--hf DIR] [--out FILE]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sharedDir } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { greedyParity, logitParity, PARITY_TOLERANCE, parityFixtures } from '../lib/models/parity';
import { writeFileAtomic } from '../lib/results';
import { initRuntime, parseBackend } from '../lib/runtime';
helpFromHeader(import.meta.url);

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    fixtures: { type: 'string', default: 'test/fixtures/models' },
    hf: { type: 'string', default: path.join(sharedDir(), 'reference/stories260K/hf') },
    out: { type: 'string' },
  },
});
const rt = await initRuntime({ backend: parseBackend(args.backend!) });
const tok = 'models/stories260K/tok512.bin';
const report: Record<string, unknown>[] = [];
let failed = 0;
for (const d of parityFixtures(args.fixtures!)) {
  const r = await logitParity(path.join(args.fixtures!, d), tok);
  const greedyOk = !r.greedy || JSON.stringify(r.greedy.got) === JSON.stringify(r.greedy.expected);
  const ok = r.worst < PARITY_TOLERANCE && r.leaked === 0 && greedyOk;
  failed += ok ? 0 : 1;
  report.push({ check: `logits ${d}`, ok, worst_abs_diff: r.worst, compared: r.compared, leaked: r.leaked, greedy: r.greedy ? greedyOk : null });
}
const greedyFile = path.join(args.fixtures!, 'stories260K_greedy.json');
for (const [label, src, t] of [['llama2.c', 'models/stories260K/stories260K.bin', undefined], ['hf dir', args.hf!, tok]] as const) {
  if (!existsSync(greedyFile) || !existsSync(src)) {
    report.push({ check: `greedy ${label}`, ok: null, note: `skipped: ${existsSync(src) ? greedyFile : src} absent` });
    continue;
  }
  const r = await greedyParity(src, greedyFile, t);
  const ok = JSON.stringify(r.got) === JSON.stringify(r.expected) && JSON.stringify(r.promptIds) === JSON.stringify(r.refPromptIds);
  failed += ok ? 0 : 1;
  report.push({ check: `greedy ${label}`, ok, tokens: r.got.length });
}
console.table(report);
const summary = { backend: rt.backend, device: rt.device, failed, report };
if (args.out) writeFileAtomic(args.out, JSON.stringify(summary, null, 2) + '\n');
if (report.length === 0) throw new Error(`no parity fixtures in ${args.fixtures}`);
process.exit(failed ? 1 : 0);
