// Uniform weight quantizer, bit-exact with GPTQ's `Quantizer` (min-max, asymmetric or
// symmetric, per output channel or per group of input columns) in fp32: every step is rounded
// to float32 with Math.fround (double rounding is exact for + - * /), and rounding is
// half-to-even like torch.round. Host-side Float32Array math: weight matrices are small
// enough, and results are reproducible on every backend.

export interface WeightQuantSpec {
  bits: number; // code width (GPTQ paper: 2, 3, 4, 8)
  groupSize: number; // input columns per scale/zero group; -1 = one group per output channel (GPTQ --groupsize)
  sym: boolean; // symmetric (zero at the mid code) or asymmetric min-max (GPTQ --sym; reference default asymmetric)
  /** What to do when groupSize does not divide the input dimension: refuse, or let the last group be shorter (GPTQ's code does). */
  groupRemainder: 'error' | 'partial';
}

export const weightQuantDefaults: WeightQuantSpec = {
  bits: 4, // GPTQ/AWQ papers' headline setting (W4)
  groupSize: -1, // per output channel (GPTQ paper's main tables)
  sym: false, // asymmetric min-max, GPTQ reference Quantizer default
  groupRemainder: 'error', // never silently change the grouping
};

export const SUPPORTED_BITS = [2, 3, 4, 8] as const;

export class QuantConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QuantConfigError';
  }
}

/** Validates a weight quantization spec against a matrix's input dimension (before any work). */
export function checkWeightSpec(spec: WeightQuantSpec, inDim?: number, what = 'weight'): void {
  if (!Number.isInteger(spec.bits) || spec.bits < 1 || spec.bits > 8) throw new QuantConfigError(`${what}: bits must be an integer in 1..8, got ${spec.bits}`);
  if (!(spec.groupSize === -1 || (Number.isInteger(spec.groupSize) && spec.groupSize > 0))) {
    throw new QuantConfigError(`${what}: group size must be -1 (per channel) or a positive integer, got ${spec.groupSize}`);
  }
  if (spec.groupRemainder !== 'error' && spec.groupRemainder !== 'partial') throw new QuantConfigError(`${what}: groupRemainder must be 'error' or 'partial', got '${spec.groupRemainder}'`);
  if (inDim !== undefined && spec.groupSize > 0) {
    if (spec.groupSize > inDim && spec.groupRemainder === 'error') {
      throw new QuantConfigError(`${what}: group size ${spec.groupSize} exceeds the input dimension ${inDim}`);
    }
    if (inDim % spec.groupSize !== 0 && spec.groupRemainder === 'error') {
      throw new QuantConfigError(`${what}: group size ${spec.groupSize} does not divide the input dimension ${inDim}; pass groupRemainder 'partial' (--group-remainder partial) to allow a shorter last group`);
    }
  }
}

export const maxq = (bits: number) => (bits < 31 ? (1 << bits) - 1 : 2 ** bits - 1); // a shift, not a power: it runs once per weight
const f = Math.fround;

/** torch.round: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Scale and zero of one group (GPTQ Quantizer.find_params on one row's values). */
export function findParams(xmin0: number, xmax0: number, bits: number, sym: boolean): { scale: number; zero: number } {
  const q = maxq(bits);
  let xmin = f(Math.min(xmin0, 0));
  let xmax = f(Math.max(xmax0, 0));
  if (sym) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = f(f(xmax - xmin) / q);
  const zero = sym ? (q + 1) / 2 : roundHalfEven(f(-xmin / scale)) + 0; // + 0 turns -0 into 0
  return { scale, zero };
}

/** Integer code of x (GPTQ quantize: clamp(round(x/scale) + zero, 0, maxq)). */
export function quantCode(x: number, scale: number, zero: number, bits: number): number {
  const c = roundHalfEven(f(f(x) / scale)) + zero;
  return Math.min(Math.max(c, 0), maxq(bits));
}

/** Dequantized value of a code: scale * (code - zero) in fp32. */
export function dequantCode(code: number, scale: number, zero: number): number {
  return f(scale * f(code - zero));
}

/** Fake-quantized x. */
export function quantizeValue(x: number, scale: number, zero: number, bits: number): number {
  return dequantCode(quantCode(x, scale, zero, bits), scale, zero);
}

/** A quantized matrix: codes plus per-group scales and zeros. */
export interface QuantizedMatrix {
  rows: number; // out
  cols: number; // in
  bits: number;
  groupSize: number; // -1: per channel
  sym: boolean;
  codes: Uint8Array; // [rows, cols], one code per byte (unpacked)
  scales: Float32Array; // [rows, ngroups]
  zeros: Float32Array; // [rows, ngroups] (integers stored as floats, as the reference)
}

export function numGroups(cols: number, groupSize: number): number {
  return groupSize === -1 ? 1 : Math.ceil(cols / groupSize);
}

/** Round-to-nearest quantization of W [rows, cols] (row-major). */
export function quantizeMatrix(W: ArrayLike<number>, rows: number, cols: number, spec: WeightQuantSpec): QuantizedMatrix {
  checkWeightSpec(spec, cols);
  return quantizeGroups(W, rows, cols, spec, (mn, mx) => findParams(mn, mx, spec.bits, spec.sym));
}

/** The fp32 min and max of W[from, to): a quantization group's range. */
function fp32Range(W: ArrayLike<number>, from: number, to: number): { mn: number; mx: number } {
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = from; i < to; i++) {
    const v = f(W[i]);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  return { mn, mx };
}

/**
 * The shared min-max loop: for each row and group of columns, the group's min and max (fp32),
 * scale and zero from `params`, then the codes.
 */
export function quantizeGroups(
  W: ArrayLike<number>,
  rows: number,
  cols: number,
  spec: WeightQuantSpec,
  params: (mn: number, mx: number, row: number, group: number) => { scale: number; zero: number },
): QuantizedMatrix {
  if (W.length !== rows * cols) throw new QuantConfigError(`quantizeMatrix: ${W.length} values for a [${rows}, ${cols}] matrix`);
  const gs = spec.groupSize === -1 ? cols : spec.groupSize;
  const ng = numGroups(cols, spec.groupSize);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * ng);
  const zeros = new Float32Array(rows * ng);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < ng; g++) {
      const c0 = g * gs;
      const c1 = Math.min(c0 + gs, cols);
      const { mn, mx } = fp32Range(W, r * cols + c0, r * cols + c1);
      const { scale, zero } = params(mn, mx, r, g);
      scales[r * ng + g] = scale;
      zeros[r * ng + g] = zero;
      for (let c = c0; c < c1; c++) codes[r * cols + c] = quantCode(W[r * cols + c], scale, zero, spec.bits);
    }
  }
  return { rows, cols, bits: spec.bits, groupSize: spec.groupSize, sym: spec.sym, codes, scales, zeros };
}

/** W' [rows, cols] = dequantized codes (fp32). */
export function dequantizeMatrix(q: QuantizedMatrix): Float32Array {
  const { rows, cols } = q;
  const gs = q.groupSize === -1 ? cols : q.groupSize;
  const ng = numGroups(cols, q.groupSize);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = Math.floor(c / gs);
      out[r * cols + c] = dequantCode(q.codes[r * cols + c], q.scales[r * ng + g], q.zeros[r * ng + g]);
    }
  }
  return out;
}

/** Round-to-nearest fake quantization of W [rows, cols]. */
export function fakeQuantize(W: ArrayLike<number>, rows: number, cols: number, spec: WeightQuantSpec): Float32Array {
  return dequantizeMatrix(quantizeMatrix(W, rows, cols, spec));
}

/**
 * AWQ's pseudo_quantize_tensor (zero_point=True), which differs from GPTQ's Quantizer: the range
 * is the group's own [min, max] (0 not forced in), scale = max(max - min, 1e-5) / maxq and
 * zero = clamp(-round(min / scale), 0, maxq). Returns codes/scales/zeros like quantizeMatrix.
 */
export function awqQuantizeMatrix(W: ArrayLike<number>, rows: number, cols: number, spec: WeightQuantSpec): QuantizedMatrix {
  checkAwqSpec(spec, cols);
  return quantizeGroups(W, rows, cols, spec, (mn, mx) => awqGroupParams(mn, mx, spec.bits));
}

export function checkAwqSpec(spec: WeightQuantSpec, cols: number): void {
  checkWeightSpec(spec, cols, 'awq');
  if (spec.sym) throw new QuantConfigError('awq: the reference quantizer is asymmetric (zero_point=True); sym is not supported');
}

/**
 * dequantizeMatrix(awqQuantizeMatrix(W, …)) in one pass per group, without keeping the codes: the
 * same fp32 operations (AWQ's searches fake-quantize every candidate this way).
 */
export function awqFakeQuantize(W: ArrayLike<number>, rows: number, cols: number, spec: WeightQuantSpec): Float32Array {
  checkAwqSpec(spec, cols);
  if (W.length !== rows * cols) throw new QuantConfigError(`awqFakeQuantize: ${W.length} values for a [${rows}, ${cols}] matrix`);
  const gs = spec.groupSize === -1 ? cols : spec.groupSize;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += gs) awqFakeQuantizeGroup(W, r * cols + c0, r * cols + Math.min(c0 + gs, cols), spec.bits, out);
  }
  return out;
}

/** One group of awqFakeQuantize: out[i] for i in [from, to) from W's values there (their fp32 min and max, awqGroupParams). */
export function awqFakeQuantizeGroup(W: ArrayLike<number>, from: number, to: number, bits: number, out: Float32Array): void {
  const { mn, mx } = fp32Range(W, from, to);
  const { scale, zero } = awqGroupParams(mn, mx, bits);
  for (let i = from; i < to; i++) out[i] = quantizeValue(W[i], scale, zero, bits);
}

/** Scale and zero of one group of AWQ's quantizer (see awqQuantizeMatrix) from its fp32 min and max. */
export function awqGroupParams(mn: number, mx: number, bits: number): { scale: number; zero: number } {
  const q = maxq(bits);
  const scale = f(Math.max(f(mx - mn), f(1e-5)) / q);
  const zero = Math.min(Math.max(-roundHalfEven(f(mn / scale)), 0), q) + 0;
  return { scale, zero };
}
