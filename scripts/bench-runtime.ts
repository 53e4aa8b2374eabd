// Runtime benchmark on the chosen backend; prints a table and writes data/bench/runtime.csv.
// - fp32 matmul (1024…8192), checked against a float64 host reference on sampled entries;
// - one LLaMA-style block (RMSNorm, attention, SwiGLU MLP) at hidden 2048 and 4096 through the
//   kit's own runBlock, checked against the same block on the CPU (wasm) backend. The block is
//   causal, so the first --check-tokens outputs of the long run must equal a run on that prefix:
//   the CPU reference runs only the prefix, which keeps it fast.
//   npx tsx scripts/bench-runtime.ts [--backend webgpu] [--sizes 1024,2048] [--hidden 2048,4096]
//                                    [--tokens 1024] [--repeats 10] [--out FILE]
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { runBlock } from '../lib/models/transformer';
import { initRuntime, parseBackend, seededNormal, timeRepeated, writeBenchCsv } from '../lib/runtime';
import { gitSha } from '../lib/results';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    sizes: { type: 'string', default: '1024,2048,4096,8192' },
    repeats: { type: 'string', default: '10' },
    samples: { type: 'string', default: '512' }, // output entries checked against float64
    hidden: { type: 'string', default: '2048,4096' }, // LLaMA block widths ('' to skip)
    tokens: { type: 'string', default: '1024' }, // block input length (batch 1)
    'check-tokens': { type: 'string', default: '128' }, // prefix re-run on wasm as the reference (causal: same outputs)
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

/** A one-block LLaMA-style model of width d (LLaMA-1/2 proportions: head 128, MLP 11008/4096·d). */
function llamaBlockConfig(d: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: d,
    intermediate_size: Math.round((d * 11008) / 4096), num_hidden_layers: 1, num_attention_heads: d / 128,
    num_key_value_heads: d / 128, vocab_size: 256, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false,
  };
}

/** Output of block 0 on input x for the model of width d, on the current backend. */
async function blockOutput(d: number, x: Float32Array, t: number): Promise<Float32Array> {
  const model = randomModel(llamaBlockConfig(d), { seed: 7 });
  const xt = tf.tensor3d(x, [1, t, d]); // [batch, tokens, hidden]
  const y = runBlock(model, 0, xt);
  const out = (await y.data()) as Float32Array;
  tf.dispose([xt, y]);
  disposeModel(model);
  return out;
}

const t = Number(args.tokens);
const widths = args.hidden ? args.hidden.split(',').map(Number) : [];
const gpuOut = new Map<number, Float32Array>();
for (const d of widths) {
  const cfg = llamaBlockConfig(d);
  const model = randomModel(cfg, { seed: 7 });
  const xHost = seededNormal(t * d, 3);
  const x = tf.tensor3d(xHost, [1, t, d]); // [batch, tokens, hidden]
  const y = runBlock(model, 0, x);
  gpuOut.set(d, (await y.data()) as Float32Array);
  y.dispose();
  const timing = await timeRepeated(() => runBlock(model, 0, x).dispose(), { warmup: 2, repeats: Number(args.repeats) });
  x.dispose();
  disposeModel(model);
  const f = cfg.intermediate_size as number;
  // matmul FLOPs: q,k,v,o (4·d²) + gate, up, down (3·d·f) per token; attention QKᵀ and PV (causal: half of 2·t²·d each).
  const flops = 2 * t * (4 * d * d + 3 * d * f) + 2 * t * t * d;
  rows.push({
    bench: 'llama_block_fp32', backend: runtime.backend, device: runtime.device, m: t, n: d, k: f,
    repeats: timing.repeats, median_ms: +timing.medianMs.toFixed(3), min_ms: +timing.minMs.toFixed(3),
    tflops: +(flops / (timing.medianMs / 1e3) / 1e12).toFixed(3), rel_err: NaN, reference: '',
    git_sha: sha, started_at: startedAt,
  });
  console.error(`llama block d=${d}, ${t} tokens: ${timing.medianMs.toFixed(2)} ms`);
}
if (widths.length > 0) {
  // The same blocks on the CPU backend (wasm SIMD) as the reference.
  const cpu = await initRuntime({ backend: 'wasm' });
  const tc = Math.min(t, Number(args['check-tokens']));
  for (const d of widths) {
    const ref = await blockOutput(d, seededNormal(t * d, 3).subarray(0, tc * d), tc);
    const out = gpuOut.get(d)!.subarray(0, tc * d);
    let num = 0;
    let den = 0;
    for (let i = 0; i < ref.length; i++) {
      num += (out[i] - ref[i]) ** 2;
      den += ref[i] ** 2;
    }
    const row = rows.find((r) => r.bench === 'llama_block_fp32' && r.n === d)!;
    row.rel_err = Math.sqrt(num / den);
    row.reference = `same block on ${cpu.backend} (${cpu.device}), first ${tc} tokens`;
  }
}
for (const r of rows) if (!Number.isFinite(r.rel_err as number)) throw new Error(`${r.bench} ${r.n}: no finite relative error`);
writeBenchCsv(args.out!, rows);
console.table(rows.map(({ bench, m, n, median_ms, tflops, rel_err }) => ({ bench, m, n, median_ms, tflops, rel_err })));
console.log(`wrote ${args.out}`);
