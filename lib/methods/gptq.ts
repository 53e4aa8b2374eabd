// GPTQ (Frantar et al., 2023): per-layer optimal-brain-quantization with a Cholesky-based
// inverse Hessian, lazy block updates, optional groups / act-order / static groups, run block
// by block with the quantized block's outputs feeding the next block (reference llama_sequential
// with true_sequential off: all linears of a block calibrated on the same block inputs).
import * as tf from '@tensorflow/tfjs';
import type { Model } from '../models/types';
import { checkWeightSpec, findParams, maxq, numGroups, quantCode, dequantCode, type QuantizedMatrix, type WeightQuantSpec } from '../quant/quantizer';
import { linearShape, readLinear, replaceWeight, type HostMatrix } from '../quant/weights';
import { describeCalib, type CalibSet } from './calib';
import { HessianAccumulator, prepareHessian } from './hessian';
import { runSequential, blockLinearNames } from './sequential';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  bits: { type: 'int', min: 1, max: 8, default: 4, doc: "weight bits (GPTQ paper: 2/3/4/8; 4 its main setting)" },
  groupSize: { type: 'int', min: -1, default: -1, doc: 'input columns per group, -1 per channel (paper §4 "grouping", reference --groupsize; Table 3 per channel)' },
  sym: { type: 'boolean', default: false, doc: 'symmetric quantizer (reference --sym; its Quantizer default is asymmetric)' },
  groupRemainder: { type: 'enum', values: ['error', 'partial'], default: 'error', doc: 'allow a shorter last group (the reference code allows it silently; refused unless asked)' },
  percdamp: { type: 'number', min: 0, max: 1, maxOpen: true, default: 0.01, doc: 'dampening: fraction of mean diag(H) added to the diagonal (reference --percdamp)' },
  blocksize: { type: 'int', min: 1, default: 128, doc: 'columns per lazy batch update (paper §3 "lazy batch-updates", B = 128)' },
  actOrder: { type: 'boolean', default: false, doc: 'quantize columns by decreasing diag(H) (reference --act-order)' },
  staticGroups: { type: 'boolean', default: false, doc: 'group parameters from the unquantized W before the sweep (reference --static-groups)' },
  batchSize: { type: 'int', min: 1, default: 8, doc: 'calibration windows per forward (memory only, not an algorithm parameter)' },
});
export type GptqOptions = OptionsOf<typeof options>;
export const defaults: GptqOptions = defaultsOf(options);

export function validate(o: GptqOptions, model?: Model): void {
  parseOptions('gptq', options, o);
  if (model) for (const l of blockLinearNames(model)) checkWeightSpec(o, linearShape(model, l)[1], `gptq ${l}`);
  if (o.staticGroups && o.groupSize === -1) throw new Error('gptq: staticGroups needs a group size');
}

export interface GptqLayerResult {
  /** The quantized matrix (codes in the original column order; gIdx maps columns to groups under act-order). */
  quantized: QuantizedMatrix & { gIdx?: Int32Array };
  /** Fake-quantized weight [rows, cols], row-major. */
  weight: Float32Array;
  /** Σ (w - q)² / Hinv_ii² / 2 (the reference's reported error). */
  loss: number;
}

/** Per-layer GPTQ state: addBatch(x) accumulates H; solve(W) quantizes; dispose() frees H. */
export class GptqLayer {
  private hessian: HessianAccumulator;

  constructor(readonly rows: number, readonly cols: number) {
    this.hessian = new HessianAccumulator(cols);
  }

  /** x [tokens, cols]; samples = sequences those tokens come from. */
  addBatch(x: tf.Tensor2D, samples = 1): void {
    this.hessian.addBatch(x, samples);
  }

  get nsamples(): number {
    return this.hessian.nsamples;
  }

  async solve(W: Float32Array, opts: Partial<GptqOptions> = {}): Promise<GptqLayerResult> {
    const o = { ...defaults, ...opts };
    return gptqQuantize(W, this.rows, this.cols, await this.hessian.toFloat64(), o);
  }

  dispose(): void {
    this.hessian.dispose();
  }
}

/**
 * GPTQ's fasterquant on host arrays: W [rows, cols] row-major (fp32 values), H [cols, cols].
 * Follows the reference step by step, including that group parameters are found on the
 * outer W (which carries the lazy updates of earlier blocks but not the current block's).
 */
export function gptqQuantize(W0: Float32Array, rows: number, cols: number, H: Float64Array, o: GptqOptions): GptqLayerResult {
  validate(o);
  checkWeightSpec(o, cols, 'gptq');
  const bits = o.bits;
  // Column-major working copy: Wt[c * rows + r] = W[r, c].
  const Wt = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) Wt[c * rows + r] = W0[r * cols + c];
  // Dead inputs: zero their weights (the reference sets W[:, dead] = 0).
  for (let c = 0; c < cols; c++) if (H[c * cols + c] === 0) Wt.fill(0, c * rows, (c + 1) * rows);

  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const ng = numGroups(cols, o.groupSize);
  const rowParams = (c0: number, c1: number, src: Float64Array, colIndex: (c: number) => number) => {
    const scale = new Float32Array(rows);
    const zero = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let c = c0; c < c1; c++) {
        const v = Math.fround(src[colIndex(c) * rows + r]);
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      const p = findParams(mn, mx, bits, o.sym);
      scale[r] = p.scale;
      zero[r] = p.zero;
    }
    return { scale, zero };
  };
  const staticParams = o.staticGroups ? Array.from({ length: ng }, (_, g) => rowParams(g * gs, Math.min((g + 1) * gs, cols), Wt, (c) => c)) : null;

  let perm: number[] | undefined;
  if (o.actOrder) {
    perm = Array.from({ length: cols }, (_, i) => i).sort((a, b) => H[b * cols + b] - H[a * cols + a] || a - b);
    const P = new Float64Array(rows * cols);
    perm.forEach((src, dst) => P.set(Wt.subarray(src * rows, (src + 1) * rows), dst * rows));
    Wt.set(P);
  }
  const { hinv } = prepareHessian(H, cols, o.percdamp, perm);

  const Qt = new Float32Array(rows * cols); // dequantized, permuted order
  const codesT = new Uint8Array(rows * cols); // codes, permuted order
  // The (scale, zero) each column was quantized with, in permuted order.
  const colGroup = new Int32Array(cols);
  const groupParams: { scale: Float32Array; zero: Float32Array }[] = [];
  let params = o.groupSize === -1 ? rowParams(0, cols, Wt, (c) => c) : null;
  if (params) groupParams.push(params);
  let loss = 0;
  const err = new Float64Array(rows);
  const W1 = new Float64Array(rows * o.blocksize);
  const Err1 = new Float64Array(rows * o.blocksize);
  for (let i1 = 0; i1 < cols; i1 += o.blocksize) {
    const i2 = Math.min(i1 + o.blocksize, cols);
    const count = i2 - i1;
    W1.set(Wt.subarray(i1 * rows, i2 * rows));
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (o.groupSize !== -1) {
        if (!o.staticGroups) {
          if (col % gs === 0) {
            params = rowParams(col, Math.min(col + gs, cols), Wt, (c) => c);
            groupParams.push(params);
          }
          colGroup[col] = groupParams.length - 1;
        } else {
          const g = Math.floor((perm ? perm[col] : col) / gs);
          params = staticParams![g];
          colGroup[col] = g;
        }
      }
      const p = params!;
      const d = hinv[col * cols + col];
      for (let r = 0; r < rows; r++) {
        const w = W1[i * rows + r];
        const code = quantCode(w, p.scale[r], p.zero[r], bits);
        const q = dequantCode(code, p.scale[r], p.zero[r]);
        codesT[col * rows + r] = code;
        Qt[col * rows + r] = q;
        const e = (w - q) / d;
        loss += (w - q) * (w - q) / (d * d) / 2;
        err[r] = e;
        Err1[i * rows + r] = e;
      }
      // W1[:, j] -= err * Hinv[col, j] for j > i within the block.
      for (let j = i + 1; j < count; j++) {
        const h = hinv[col * cols + i1 + j];
        if (h === 0) continue;
        const base = j * rows;
        for (let r = 0; r < rows; r++) W1[base + r] -= err[r] * h;
      }
    }
    // Lazy batch update: W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:].
    for (let j = i2; j < cols; j++) {
      const base = j * rows;
      for (let i = 0; i < count; i++) {
        const h = hinv[(i1 + i) * cols + j];
        if (h === 0) continue;
        const eb = i * rows;
        for (let r = 0; r < rows; r++) Wt[base + r] -= Err1[eb + r] * h;
      }
    }
  }

  // Back to the original column order and row-major layout.
  const weight = new Float32Array(rows * cols);
  const codes = new Uint8Array(rows * cols);
  const inv = new Int32Array(cols);
  for (let c = 0; c < cols; c++) inv[perm ? perm[c] : c] = c;
  for (let c = 0; c < cols; c++) {
    const pc = inv[c];
    for (let r = 0; r < rows; r++) {
      weight[r * cols + c] = Qt[pc * rows + r];
      codes[r * cols + c] = codesT[pc * rows + r];
    }
  }
  // Group table: groupParams in order of creation; gIdx[c] = group of original column c.
  const groups = o.staticGroups ? staticParams! : groupParams;
  const G = groups.length;
  const scales = new Float32Array(rows * G);
  const zeros = new Float32Array(rows * G);
  groups.forEach((g, k) => {
    for (let r = 0; r < rows; r++) {
      scales[r * G + k] = g.scale[r];
      zeros[r * G + k] = g.zero[r];
    }
  });
  const quantized: GptqLayerResult['quantized'] = { rows, cols, bits, groupSize: o.groupSize, sym: o.sym, codes, scales, zeros };
  if (o.actOrder && o.groupSize !== -1) {
    const gIdx = new Int32Array(cols);
    for (let c = 0; c < cols; c++) gIdx[c] = colGroup[inv[c]];
    quantized.gIdx = gIdx;
  }
  if (maxq(bits) > 255) throw new Error('unreachable: bits > 8');
  return { quantized, weight, loss };
}

/** Quantizes every linear of every block with GPTQ; weights are replaced by their fake-quantized values. */
export async function compress(model: Model, calib: CalibSet | null, opts: Partial<GptqOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o, model); // every shape is checked before any work starts
  if (!calib) throw new Error('gptq needs a calibration set');
  const linears = blockLinearNames(model);
  const quantized = new Map<string, QuantizedMatrix>();
  let totalLoss = 0;
  await runSequential(model, calib, {
    propagate: 'compressed',
    batchSize: o.batchSize,
    ...hooks,
    async perBlock(ctx) {
      const layers = new Map<string, GptqLayer>();
      const mats = new Map<string, HostMatrix>();
      for (const l of linears) mats.set(l, await readLinear(model, ctx.block, l));
      for (const l of linears) layers.set(l, new GptqLayer(mats.get(l)!.rows, mats.get(l)!.cols));
      try {
        ctx.observe((l, x, info) => layers.get(l)!.addBatch(x, info.samples));
        for (const l of linears) {
          const m = mats.get(l)!;
          const res = await layers.get(l)!.solve(m.data, o);
          totalLoss += res.loss;
          replaceWeight(model, m.name, res.weight);
          quantized.set(m.name, res.quantized);
        }
      } finally {
        layers.forEach((g) => g.dispose());
      }
    },
  });
  return {
    method: 'gptq',
    config: { bits: o.bits, groupSize: o.groupSize, sym: o.sym, percdamp: o.percdamp, blocksize: o.blocksize, actOrder: o.actOrder, staticGroups: o.staticGroups },
    calib: describeCalib(calib),
    quantized,
    actQuant: null,
    artifacts: {},
    stats: { loss: totalLoss },
  };
}


export const module = {
  display: 'GPTQ',
  kind: 'quantization',
  inPaper: true,
  options,
  describe: 'GPTQ: Hessian-aware column-by-column quantization with lazy block updates',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<GptqOptions>;
