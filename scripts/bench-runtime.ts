// Runtime benchmark: fp32 matmul (1024…8192) on the chosen backend, each result checked against a
// float64 CPU reference on sampled entries; prints a table and writes data/bench/runtime.csv.
//   npx tsx scripts/bench-runtime.ts [--backend webgpu] [--sizes 1024,2048] [--repeats 10] [--out FILE]
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { initRuntime, parseBackend, seededNormal, timeRepeated, writeBenchCsv } from '../lib/runtime';
import { gitSha } from '../lib/results';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    sizes: { type: 'string', default: '1024,2048,4096,8192' },
    repeats: { type: 'string', default: '10' },
    samples: { type: 'string', default: '512' }, // output entries checked against float64
    out: { type: 'string', default: 'data/bench/runtime.csv' },
  },
});

/** ‖out − ref‖ / ‖ref‖ over sampled entries of C = A·B, the reference in float64 on the host. */
function sampledRelError(a: Float32Array, b: Float32Array, c: Float32Array, n: number, samples: number): number {
  let num = 0;
  let den = 0;
  for (let s = 0; s < samples; s++) {
    const i = (s * 7919) % n;
    const j = (s * 104729 + 13) % n;
    let ref = 0;
    for (let k = 0; k < n; k++) ref += a[i * n + k] * b[k * n + j];
    num += (c[i * n + j] - ref) ** 2;
    den += ref ** 2;
  }
  return Math.sqrt(num / den);
}

const runtime = await initRuntime({ backend: parseBackend(args.backend!) });
console.error(`backend ${runtime.backend}: ${runtime.device}`);
const sha = gitSha();
const startedAt = new Date().toISOString();
const rows: Record<string, string | number>[] = [];
for (const n of args.sizes!.split(',').map(Number)) {
  const aHost = seededNormal(n * n, 1);
  const bHost = seededNormal(n * n, 2);
  const a = tf.tensor2d(aHost, [n, n]); // [n, n]
  const b = tf.tensor2d(bHost, [n, n]); // [n, n]
  const c = tf.matMul(a, b);
  const relErr = sampledRelError(aHost, bHost, (await c.data()) as Float32Array, n, Number(args.samples));
  c.dispose();
  const t = await timeRepeated(() => tf.matMul(a, b).dispose(), { warmup: 2, repeats: Number(args.repeats) });
  a.dispose();
  b.dispose();
  const tflops = (2 * n ** 3) / (t.medianMs / 1e3) / 1e12;
  rows.push({
    bench: 'matmul_fp32', backend: runtime.backend, device: runtime.device, m: n, n, k: n,
    repeats: t.repeats, median_ms: +t.medianMs.toFixed(3), min_ms: +t.minMs.toFixed(3),
    tflops: +tflops.toFixed(3), rel_err: relErr, reference: `float64 host, ${args.samples} sampled entries`,
    git_sha: sha, started_at: startedAt,
  });
  console.error(`matmul ${n}: ${t.medianMs.toFixed(2)} ms, ${tflops.toFixed(2)} TFLOP/s, rel err ${relErr.toExponential(2)}`);
}
writeBenchCsv(args.out!, rows);
console.table(rows.map(({ bench, m, median_ms, tflops, rel_err }) => ({ bench, size: m, median_ms, tflops, rel_err })));
console.log(`wrote ${args.out}`);
