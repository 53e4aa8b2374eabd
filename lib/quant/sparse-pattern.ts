// Sparsity patterns and mask selection shared by magnitude, Wanda and SparseGPT.
//
// N:M follows the reference code (wanda's and sparsegpt's prune_n/prune_m): in every group of M
// consecutive input weights of an output row, N are pruned. For the paper's 2:4 and 4:8 this is
// the same as NVIDIA's "at most N non-zeros per M" (N = M/2).
//
// Masks are Uint8Array in row-major [out, in] order, 1 = pruned. Selection runs on the host:
// ties are broken by position (lower index pruned first), so results are deterministic.

export type SparsityPattern =
  | { kind: 'unstructured'; ratio: number } // fraction of weights set to zero, in (0, 1)
  | { kind: 'nm'; n: number; m: number }; // N pruned in every group of M input columns

export class SparsityOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SparsityOptionError';
  }
}

/** Checks a ratio is in the open interval (0, 1); `what` names the option for the message. */
export function checkRatio(ratio: number, what = 'sparsity'): number {
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio <= 0 || ratio >= 1) {
    throw new SparsityOptionError(`${what} must be a ratio in (0, 1), got ${ratio}`);
  }
  return ratio;
}

/** Parses '0.5', '50%', 0.5 or '2:4' into a pattern, validating it. */
export function parsePattern(spec: string | number): SparsityPattern {
  if (typeof spec === 'number') return { kind: 'unstructured', ratio: checkRatio(spec) };
  const s = spec.trim();
  const nm = /^(\d+):(\d+)$/.exec(s);
  if (nm) return validatePattern({ kind: 'nm', n: Number(nm[1]), m: Number(nm[2]) });
  const pct = /^([0-9.]+)%$/.exec(s);
  if (pct) return { kind: 'unstructured', ratio: checkRatio(Number(pct[1]) / 100, `sparsity '${s}'`) };
  if (/^[0-9.]+$/.test(s)) return { kind: 'unstructured', ratio: checkRatio(Number(s), `sparsity '${s}'`) };
  throw new SparsityOptionError(`sparsity pattern '${spec}' is neither a ratio (0.5, 50%) nor N:M (2:4)`);
}

export function validatePattern(p: SparsityPattern): SparsityPattern {
  if (p.kind === 'unstructured') {
    checkRatio(p.ratio);
    return p;
  }
  const { n, m } = p;
  if (!Number.isInteger(n) || !Number.isInteger(m) || n < 1 || m < 1) {
    throw new SparsityOptionError(`N:M pattern ${n}:${m} needs positive integers`);
  }
  if (n >= m) {
    throw new SparsityOptionError(`N:M pattern ${n}:${m}: N must be smaller than M (N = weights pruned per group of M)`);
  }
  if (m > 256) throw new SparsityOptionError(`N:M pattern ${n}:${m}: M above 256 is not supported`);
  return p;
}

/** The fraction of weights a pattern removes. */
export function patternRatio(p: SparsityPattern): number {
  return p.kind === 'unstructured' ? p.ratio : p.n / p.m;
}

/** '50%' / '2:4': the label result rows and the reference CSV use. */
export function patternLabel(p: SparsityPattern): string {
  if (p.kind === 'nm') return `${p.n}:${p.m}`;
  const pct = Math.round(p.ratio * 1e6) / 1e4;
  return `${pct}%`;
}

/** Throws before any work when an N:M pattern's M does not divide a layer's input dimension. */
export function checkPatternFits(p: SparsityPattern, inDim: number, tensor: string): void {
  if (p.kind === 'nm' && inDim % p.m !== 0) {
    throw new SparsityOptionError(
      `N:M pattern ${p.n}:${p.m} does not fit '${tensor}': its input dimension ${inDim} is not a multiple of ${p.m}`,
    );
  }
}

/** Number of weights to prune out of numel: floor(numel * ratio), exact per layer. */
export function pruneCount(numel: number, ratio: number): number {
  return Math.floor(numel * ratio + 1e-9);
}

/**
 * Marks exactly k entries of score[start .. start+len) with the lowest scores as pruned: the
 * threshold is the k-th smallest score (quickselect on a copy: linear time, a 7B model's matrices
 * are selected in seconds rather than the minutes a sort takes); entries equal to it are taken in
 * index order.
 */
function markLowest(score: ArrayLike<number>, start: number, len: number, k: number, mask: Uint8Array): void {
  if (k <= 0) return;
  if (k >= len) {
    mask.fill(1, start, start + len);
    return;
  }
  const vals = new Float64Array(len);
  let nan = false;
  for (let j = 0; j < len; j++) {
    const v = score[start + j];
    vals[j] = v;
    if (v !== v) nan = true;
  }
  const t = nan ? Float64Array.from(vals).sort()[k - 1] : kthSmallest(Float64Array.from(vals), k - 1);
  let below = 0;
  for (let j = 0; j < len; j++) if (vals[j] < t) below++;
  let ties = k - below;
  for (let j = 0; j < len; j++) {
    if (vals[j] < t) mask[start + j] = 1;
    else if (vals[j] === t && ties > 0) {
      mask[start + j] = 1;
      ties--;
    }
  }
}

/** The value of rank k (0-based) of a (NaN-free) array, reordering it in place (Hoare quickselect, median-of-three pivot). */
export function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const x = a[lo];
    const y = a[(lo + hi) >>> 1];
    const z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/** Prune the k lowest scores of the whole matrix (magnitude's comparison group). */
export function maskLowestGlobal(score: ArrayLike<number>, k: number): Uint8Array {
  const mask = new Uint8Array(score.length);
  markLowest(score, 0, score.length, k, mask);
  return mask;
}

/** Prune the k lowest scores of each output row (Wanda's comparison group). */
export function maskLowestPerRow(score: ArrayLike<number>, rows: number, cols: number, k: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) markLowest(score, r * cols, cols, k, mask);
  return mask;
}

/** Prune the n lowest scores in every group of m consecutive columns of every row. */
export function maskNM(score: ArrayLike<number>, rows: number, cols: number, n: number, m: number): Uint8Array {
  if (cols % m !== 0) throw new SparsityOptionError(`N:M mask: ${cols} columns are not a multiple of M = ${m}`);
  const mask = new Uint8Array(rows * cols);
  const g = new Float64Array(m);
  const order = new Int32Array(m);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += m) {
      const base = r * cols + c0;
      for (let j = 0; j < m; j++) {
        g[j] = score[base + j];
        order[j] = j;
      }
      // insertion sort of m (≤ 256) entries by (score, index)
      for (let a = 1; a < m; a++) {
        const o = order[a];
        let b = a - 1;
        while (b >= 0 && (g[order[b]] > g[o] || (g[order[b]] === g[o] && order[b] > o))) {
          order[b + 1] = order[b];
          b--;
        }
        order[b + 1] = o;
      }
      for (let j = 0; j < n; j++) mask[base + order[j]] = 1;
    }
  }
  return mask;
}

/** Mask for a pattern with a given comparison group for unstructured ratios. */
export function selectMask(
  score: ArrayLike<number>,
  rows: number,
  cols: number,
  p: SparsityPattern,
  group: 'matrix' | 'row',
): Uint8Array {
  if (p.kind === 'nm') return maskNM(score, rows, cols, p.n, p.m);
  if (group === 'row') return maskLowestPerRow(score, rows, cols, pruneCount(cols, p.ratio));
  return maskLowestGlobal(score, pruneCount(rows * cols, p.ratio));
}

/** Zeros of a weight matrix given as host data. */
export function countZeros(w: ArrayLike<number>): number {
  let z = 0;
  for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
  return z;
}

/** True when every group of m consecutive columns of every row has at least n zeros. */
export function isValidNM(w: ArrayLike<number>, rows: number, cols: number, n: number, m: number): boolean {
  if (cols % m !== 0) return false;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += m) {
      let z = 0;
      for (let j = 0; j < m; j++) if (w[r * cols + c0 + j] === 0) z++;
      if (z < n) return false;
    }
  }
  return true;
}

/** A pattern given as an object, '50%' / '0.5' / '2:4' text or a ratio: validated. */
export function toPattern(x: SparsityPattern | string | number): SparsityPattern {
  if (typeof x === 'string' || typeof x === 'number') return parsePattern(x);
  return validatePattern(x);
}
