// Round-to-nearest (RTN) weight quantization: the data-free baseline of the GPTQ and AWQ papers.
// Every linear of every block, min-max (asymmetric) or absmax-centred (symmetric), per output
// channel or per group of input columns; embeddings and the head stay FP32.
import * as tf from '@tensorflow/tfjs';
import { linearName } from '../models/arch';
import type { Model } from '../models/types';
import { checkWeightSpec, dequantizeMatrix, findParams, quantizeMatrix, type QuantizedMatrix } from '../quant/quantizer';
import { quantizeGroupsDevice } from '../quant/quantizer-device';
import { getWeight, hostValues, linearShape, readLinear, replaceWeight } from '../quant/weights';
import type { CalibSet } from './calib';
import { blockLinearNames } from './sequential';
import { solverKind } from './solver';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  bits: { type: 'int', min: 1, max: 8, default: 4, doc: "weight bits (GPTQ/AWQ papers' RTN baselines: 8/4/3/2; W4 their headline)" },
  groupSize: { type: 'int', min: -1, default: -1, doc: 'input columns per group, -1 per output channel (GPTQ paper Table 3 RTN rows; AWQ paper g128)' },
  sym: { type: 'boolean', default: false, doc: 'symmetric quantizer (GPTQ reference --sym); default asymmetric min-max' },
  groupRemainder: { type: 'enum', values: ['error', 'partial'], default: 'error', doc: 'allow a shorter last group when groupSize does not divide the input (never silently)' },
});
export type RtnOptions = OptionsOf<typeof options>;
export const defaults: RtnOptions = defaultsOf(options);

export function validate(o: RtnOptions, model?: Model): void {
  parseOptions('rtn', options, o);
  if (model) for (const l of blockLinearNames(model)) checkWeightSpec(o, linearShape(model, l)[1], `rtn ${l}`);
}

/** RTN on one host matrix: the codes and the fake-quantized weights. */
export function rtnMatrix(W: Float32Array, rows: number, cols: number, o: RtnOptions): { quantized: QuantizedMatrix; weight: Float32Array } {
  const quantized = quantizeMatrix(W, rows, cols, o);
  return { quantized, weight: dequantizeMatrix(quantized) };
}

/**
 * rtnMatrix on the tfjs backend for a weight w [rows, cols] of whole groups (big layers: a 7B
 * block's 200M weights take seconds in host loops): quantizeGroupsDevice with GPTQ's Quantizer
 * parameters (findParams, the host's values). The codes are read back, the fake-quantized weight
 * stays on the backend, with the squared error of the fake quantization; w is not disposed.
 */
export async function rtnDevice(w: tf.Tensor2D, o: RtnOptions): Promise<{ quantized: QuantizedMatrix; weight: tf.Tensor2D; sqErr: number }> {
  const { quantized, weight } = await quantizeGroupsDevice(w, o, (mn, mx) => findParams(mn, mx, o.bits, o.sym));
  try {
    const [sqErr] = await hostValues(() => tf.sum(tf.square(tf.sub(w, weight))));
    return { quantized, weight, sqErr };
  } catch (e) {
    weight.dispose();
    throw e;
  }
}

export async function compress(model: Model, _calib: CalibSet | null = null, opts: Partial<RtnOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o, model);
  const quantized = new Map<string, QuantizedMatrix>();
  let sqErr = 0;
  for (let b = 0; b < model.config.numLayers; b++) {
    const t0 = performance.now();
    for (const l of blockLinearNames(model)) {
      const [rows, cols] = linearShape(model, l, b);
      if (solverKind(rows, cols) === 'device' && (o.groupSize === -1 || cols % o.groupSize === 0)) {
        const name = linearName(model.config.arch, b, l);
        const r = await rtnDevice(getWeight(model, name) as tf.Tensor2D, o);
        sqErr += r.sqErr;
        replaceWeight(model, name, r.weight);
        quantized.set(name, r.quantized);
        continue;
      }
      const m = await readLinear(model, b, l);
      const r = rtnMatrix(m.data, m.rows, m.cols, o);
      for (let i = 0; i < m.data.length; i++) sqErr += (m.data[i] - r.weight[i]) ** 2;
      replaceWeight(model, m.name, r.weight);
      quantized.set(m.name, r.quantized);
    }
    hooks.sample?.();
    hooks.onBlockDone?.(b, performance.now() - t0);
  }
  return {
    method: 'rtn',
    config: { bits: o.bits, groupSize: o.groupSize, sym: o.sym },
    calib: 'none',
    quantized,
    actQuant: null,
    artifacts: {},
    stats: { weight_sq_error: sqErr },
  };
}

export const module = {
  display: 'RTN',
  kind: 'quantization',
  inPaper: false,
  options,
  describe: 'round-to-nearest weight quantization (min-max asymmetric or symmetric, per channel or group)',
  defaults,
  needsCalib: false,
  validate,
  compress,
} satisfies MethodModule<RtnOptions>;
