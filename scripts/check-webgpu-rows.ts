// Checks the row-wise kernels on the GPU against wasm, plain and through lib/runtime/rows.ts,
// at row counts below and above one dispatch dimension's limit (65,535 workgroups).
//   node --import tsx scripts/check-webgpu-rows.ts [--out FILE]
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { initRuntime, logSoftmaxRows, maxRows, meanRows, seededNormal, softmaxRows, writeBenchCsv } from '../lib/runtime';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const { values: args } = parseArgs({ options: { out: { type: 'string' } } });
const ops: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  softmax: (x) => tf.softmax(x, -1),
  softmaxRows,
  logSoftmax: (x) => tf.logSoftmax(x, -1),
  logSoftmaxRows,
  mean: (x) => tf.mean(x, -1, true),
  meanRows,
  max: (x) => tf.max(x, -1, true),
  maxRows,
};
const shapes: [number, number][] = [[1000, 512], [70000, 64], [600000, 16]];
const results = new Map<string, Float32Array>();
for (const backend of ['webgpu', 'wasm'] as const) {
  await initRuntime({ backend });
  for (const [rows, cols] of shapes) {
    const x = tf.tensor2d(seededNormal(rows * cols, rows), [rows, cols]);
    for (const [name, f] of Object.entries(ops)) {
      const y = f(x);
      results.set(`${backend}/${name}/${rows}`, (await y.data()) as Float32Array);
      y.dispose();
    }
    x.dispose();
  }
}
const table: Record<string, string | number>[] = [];
for (const [rows, cols] of shapes) {
  for (const name of Object.keys(ops)) {
    const a = results.get(`webgpu/${name}/${rows}`)!;
    const b = results.get(`wasm/${name}/${rows}`)!;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Number.isNaN(a[i] - b[i]) ? Infinity : Math.abs(a[i] - b[i]));
    table.push({ op: name, rows, cols, max_abs_diff_vs_wasm: worst });
  }
}
console.table(table);
if (args.out) writeBenchCsv(args.out, table);
