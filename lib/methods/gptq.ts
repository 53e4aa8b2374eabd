// GPTQ (Frantar et al., 2023): per-layer optimal-brain-quantization with a Cholesky-based
// inverse Hessian, lazy block updates, optional groups / act-order / static groups, run block
// by block with the quantized block's outputs feeding the next block (reference llama_sequential
// with true_sequential off: all linears of a block calibrated on the same block inputs).
import * as tf from '@tensorflow/tfjs';
import type { Model } from '../models/types';
import { checkWeightSpec, findParams, maxq, numGroups, quantCode, dequantCode, type QuantizedMatrix, type WeightQuantSpec } from '../quant/quantizer';
import { linearShape, readFloat32 } from '../quant/weights';
import { describeCalib, type CalibSet } from './calib';
import { HessianAccumulator, prepareHessian } from './hessian';
import { codesToBytes, dequantDevice, findParamsDevice } from '../quant/quantizer-device';
import { diagonal, gptqBlockSweep, lazyUpdate, prepareHessianDevice, PreparedHessians, solveBlockLinears, solverKind, type DeviceHessian } from './solver';
import { runSequential, blockLinearNames, subPhase } from './sequential';
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

export interface GptqLayerResult<W = Float32Array> {
  /** The quantized matrix (codes in the original column order; gIdx maps columns to groups under act-order). */
  quantized: QuantizedMatrix & { gIdx?: Int32Array };
  /** Fake-quantized weight [rows, cols], row-major: host values, or a tensor the caller owns (the device solver's stays on the device). */
  weight: W;
  /** Σ (w - q)² / Hinv_ii² / 2 (the reference's reported error). */
  loss: number;
}

/**
 * GPTQ of w [rows, cols] (not disposed) against the Hessian in `hessian`: the float64 host solver or
 * the device one (solverKind by its size). The weight comes back as a new tensor.
 */
export async function gptqSolve(w: tf.Tensor2D, hessian: HessianAccumulator, opts: Partial<GptqOptions> = {}, prepared?: PreparedHessians): Promise<GptqLayerResult<tf.Tensor2D>> {
  const o = { ...defaults, ...opts };
  const [rows, cols] = w.shape;
  if (solverKind(rows, cols) === 'host') {
    const r = gptqQuantize(await readFloat32(w), rows, cols, await hessian.toFloat64(), o);
    return { ...r, weight: tf.tensor2d(r.weight, [rows, cols]) };
  }
  const H = hessian.value();
  try {
    return await gptqQuantizeDevice(w, H, o, prepared && ((perm) => prepared.get(hessian, H, o.percdamp, perm)));
  } finally {
    H.dispose();
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

  const groups = o.staticGroups ? staticParams! : groupParams;
  return assembleResult(codesT, rows, cols, o, groups, colGroup, perm, loss);
}

/**
 * The result of a sweep: codesT [cols, rows] column-major in the permuted (act-order) order,
 * groups[colGroup[col]] the (scale, zero) column col was quantized with. Back to the original
 * column order and row-major layout; the weight is each code dequantized.
 */
function assembleResult(
  codesT: ArrayLike<number>, rows: number, cols: number, o: GptqOptions,
  groups: { scale: Float32Array; zero: Float32Array }[], colGroup: Int32Array, perm: number[] | undefined, loss: number,
): GptqLayerResult {
  const bits = o.bits;
  if (maxq(bits) > 255) throw new Error('unreachable: bits > 8');
  const weight = new Float32Array(rows * cols);
  const codes = new Uint8Array(rows * cols);
  const inv = new Int32Array(cols);
  for (let c = 0; c < cols; c++) inv[perm ? perm[c] : c] = c;
  // Column-major in, row-major out: in tiles of T × T, so that neither side strides over memory for long.
  const T = 64;
  for (let c0 = 0; c0 < cols; c0 += T) {
    for (let r0 = 0; r0 < rows; r0 += T) {
      for (let c = c0; c < Math.min(c0 + T, cols); c++) {
        const pc = inv[c];
        const g = groups[colGroup[pc]];
        for (let r = r0; r < Math.min(r0 + T, rows); r++) {
          const code = codesT[pc * rows + r];
          codes[r * cols + c] = code;
          weight[r * cols + c] = dequantCode(code, g.scale[r], g.zero[r]);
        }
      }
    }
  }
  // Group table: groups in order of creation; gIdx[c] = group of original column c.
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
  return { quantized, weight, loss };
}

/** Per-row (scale, zero) [rows] each of the columns in x [len, rows] (column-major block), as the reference Quantizer.find_params, on the backend. */
function groupParamsOf(x: tf.Tensor2D, bits: number, sym: boolean): { scale: tf.Tensor1D; zero: tf.Tensor1D } {
  const [scale, zero] = tf.tidy(() => {
    const p = findParamsDevice(tf.min(x, 0), tf.max(x, 0), bits, sym);
    return [p.scale, p.zero];
  });
  return { scale: scale as tf.Tensor1D, zero: zero as tf.Tensor1D };
}

/**
 * gptqQuantize on the active tfjs backend (lib/methods/solver.ts): Hinv from the blocked
 * Cholesky, each block of columns swept by one kernel (webgpu) or host loop (wasm, cpu), the lazy
 * batch update of the columns right of it by one matmul, the group parameters and the result's
 * layout on the backend too, all in fp32; codes and parameters are read back once at the end, the
 * weight stays a tensor (the caller's). Neither W0 [rows, cols] nor H [cols, cols] is disposed. Same
 * algorithm and result layout as gptqQuantize (the host oracle, float64).
 */
export async function gptqQuantizeDevice(
  W0: tf.Tensor2D, H: tf.Tensor2D, o: GptqOptions,
  prepare?: (perm: number[] | undefined) => Promise<DeviceHessian>, // a shared preparation (PreparedHessians; not disposed here), else H's own
): Promise<GptqLayerResult<tf.Tensor2D>> {
  validate(o);
  const [rows, cols] = W0.shape;
  checkWeightSpec(o, cols, 'gptq');
  if (H.shape[0] !== cols || H.shape[1] !== cols) throw new Error(`gptq: Hessian is [${H.shape}], expected [${cols}, ${cols}]`);
  const bits = o.bits;
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const ng = numGroups(cols, o.groupSize);
  const diag = await diagonal(H); // original column order
  // Wt [cols, rows]: column-major working copy, every column throughout (lazyUpdate); dead inputs (diag H = 0) zeroed as the reference does.
  let rest: tf.Tensor2D = tf.tidy(() => {
    const live = tf.tensor2d(Float32Array.from(diag, (d) => (d === 0 ? 0 : 1)), [cols, 1]);
    return tf.mul(tf.transpose(W0), live) as tf.Tensor2D;
  });
  const tensors: tf.Tensor[] = []; // disposed at the end
  // The groups' (scale, zero) [rows] each, in order of creation; colGroup[col] = group of (permuted) column col.
  const groups: { scale: tf.Tensor1D; zero: tf.Tensor1D }[] = [];
  const addGroup = (x: tf.Tensor2D) => {
    const g = groupParamsOf(x, bits, o.sym);
    groups.push(g);
    tensors.push(g.scale, g.zero);
  };
  try {
    if (o.staticGroups) {
      for (let g = 0; g < ng; g++) {
        const x = tf.slice(rest, [g * gs, 0], [Math.min(gs, cols - g * gs), rows]);
        addGroup(x);
        x.dispose();
      }
    }
    let perm: number[] | undefined;
    if (o.actOrder) {
      const order = Array.from({ length: cols }, (_, i) => i).sort((a, b) => diag[b] - diag[a] || a - b);
      perm = order;
      const p = tf.tidy(() => tf.gather(rest, tf.tensor1d(order, 'int32'), 0) as tf.Tensor2D);
      rest.dispose();
      rest = p;
    }
    const { hinv } = await subPhase('hinv', () => (prepare ? prepare(perm) : prepareHessianDevice(H, o.percdamp, perm)));
    if (!prepare) tensors.push(hinv);
    if (o.groupSize === -1) addGroup(rest);
    const colGroup = new Int32Array(cols);
    const codeBlocks: tf.Tensor2D[] = [];
    let lossT: tf.Tensor1D = tf.zeros([rows]);
    await subPhase('sweep', async () => {
      for (let i1 = 0; i1 < cols; i1 += o.blocksize) {
        const i2 = Math.min(i1 + o.blocksize, cols);
        const count = i2 - i1;
        for (let col = i1; col < i2; col++) {
          if (o.groupSize === -1) colGroup[col] = 0;
          else if (o.staticGroups) colGroup[col] = Math.floor((perm ? perm[col] : col) / gs);
          else {
            if (col % gs === 0) {
              // group parameters from the outer W: earlier blocks' lazy updates in, this block's not
              const x = tf.slice(rest, [col, 0], [Math.min(gs, cols - col), rows]);
              addGroup(x);
              x.dispose();
            }
            colGroup[col] = groups.length - 1;
          }
        }
        // The block's groups as a table [2·G, rows] (scales, then zeros) and each column's row in it.
        const used = [...new Set(colGroup.subarray(i1, i2))];
        const local = Int32Array.from(colGroup.subarray(i1, i2), (g) => used.indexOf(g));
        const block = tf.slice(rest, [i1, 0], [count, rows]); // [count, rows]
        const hb = tf.slice(hinv, [i1, i1], [count, count]);
        const tableT = tf.stack([...used.map((g) => groups[g].scale), ...used.map((g) => groups[g].zero)]) as tf.Tensor2D;
        let sweep;
        try {
          sweep = await gptqBlockSweep({ w: block, hinv: hb, table: tableT, group: local, maxq: maxq(bits) });
        } finally {
          tf.dispose([block, hb, tableT]);
        }
        codeBlocks.push(sweep.codes);
        tensors.push(sweep.codes);
        const l = tf.add(lossT, sweep.loss) as tf.Tensor1D;
        tf.dispose([lossT, sweep.loss]);
        lossT = l;
        if (i2 < cols) {
          // Lazy batch update: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:].
          const next = lazyUpdate(rest, hinv, sweep.err, i1);
          rest.dispose();
          rest = next;
        }
        sweep.err.dispose();
      }
    });
    tensors.push(lossT);
    return await subPhase('assemble', () => assembleDevice(codeBlocks, groups, colGroup, perm, lossT, rows, cols, o));
  } finally {
    rest.dispose();
    tf.dispose(tensors);
  }
}

/**
 * assembleResult on the backend: the swept codes (column blocks [count, rows], permuted order)
 * back in the original column order and row-major, each dequantized with its group's (scale,
 * zero) by the same fp32 steps as dequantCode; then one read-back each of the codes (as bytes), the
 * group table and the loss. The weight stays on the device. Nothing passed in is disposed.
 */
async function assembleDevice(
  codeBlocks: tf.Tensor2D[], groups: { scale: tf.Tensor1D; zero: tf.Tensor1D }[], colGroup: Int32Array, perm: number[] | undefined,
  lossT: tf.Tensor1D, rows: number, cols: number, o: GptqOptions,
): Promise<GptqLayerResult<tf.Tensor2D>> {
  const inv = new Int32Array(cols); // original column → its position in the sweep's order
  for (let c = 0; c < cols; c++) inv[perm ? perm[c] : c] = c;
  const gIdx = Int32Array.from(inv, (pc) => colGroup[pc]); // group of each original column
  const out = tf.tidy(() => {
    const swept = tf.concat(codeBlocks, 0); // [cols, rows]
    const byCol = perm ? tf.gather(swept, tf.tensor1d(inv, 'int32'), 0) : swept; // [cols, rows], original order
    const S = tf.stack(groups.map((g) => g.scale)); // [G, rows]
    const Z = tf.stack(groups.map((g) => g.zero));
    const g = tf.tensor1d(gIdx, 'int32');
    const w = dequantDevice(byCol, tf.gather(S, g, 0), tf.gather(Z, g, 0)); // [cols, rows]
    return [tf.transpose(byCol), tf.transpose(w), tf.transpose(S), tf.transpose(Z)]; // [rows, cols] ×2, [rows, G] ×2
  });
  const [codesT, weightT, scalesT, zerosT] = out;
  try {
    const quantized: GptqLayerResult['quantized'] = {
      rows, cols, bits: o.bits, groupSize: o.groupSize, sym: o.sym,
      codes: await codesToBytes(codesT),
      scales: Float32Array.from((await scalesT.data()) as Float32Array),
      zeros: Float32Array.from((await zerosT.data()) as Float32Array, (z) => z + 0), // + 0: no -0, as the host
    };
    if (o.actOrder && o.groupSize !== -1) quantized.gIdx = gIdx;
    let loss = 0;
    for (const v of (await lossT.data()) as Float32Array) loss += v;
    return { quantized, weight: weightT as tf.Tensor2D, loss };
  } catch (e) {
    weightT.dispose();
    throw e;
  } finally {
    tf.dispose([codesT, scalesT, zerosT]);
  }
}

/** Quantizes every linear of every block with GPTQ; weights are replaced by their fake-quantized values. */
export async function compress(model: Model, calib: CalibSet | null, opts: Partial<GptqOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o, model); // every shape is checked before any work starts
  if (!calib) throw new Error('gptq needs a calibration set');
  const quantized = new Map<string, QuantizedMatrix>();
  let totalLoss = 0;
  await runSequential(model, calib, {
    propagate: 'compressed',
    batchSize: o.batchSize,
    ...hooks,
    perBlock: (ctx) =>
      solveBlockLinears(ctx, async (name, w, hessian, prepared) => {
        const res = await gptqSolve(w, hessian, o, prepared);
        totalLoss += res.loss;
        quantized.set(name, res.quantized);
        return res.weight;
      }, hooks.sample),
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
