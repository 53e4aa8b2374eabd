// Language-model batches from one token stream: the stream is cut into non-overlapping windows of
// seqLen + 1 tokens (inputs = the first seqLen, targets = the last seqLen), visited in a fresh
// seeded permutation every epoch. The position (epoch, cursor) is the whole state, so a resumed run
// sees exactly the batches an uninterrupted one would.
import { Rng } from './rng';

/** A batch on the host: row-major [batch, seqLen] token ids. */
export interface LmBatch {
  inputs: Int32Array; // [batch, seqLen]
  targets: Int32Array; // [batch, seqLen]
  batch: number;
  seqLen: number;
}

/** Anything the trainer can draw batches from and checkpoint the position of. */
export interface BatchSource<B> {
  next(): B;
  getState(): unknown;
  setState(state: unknown): void;
}

export interface WindowState {
  epoch: number;
  cursor: number; // index into this epoch's permutation
}

export class WindowLoader implements BatchSource<LmBatch> {
  readonly numWindows: number;
  private epoch = 0;
  private cursor = 0;
  private order: Int32Array;

  constructor(
    readonly tokens: Int32Array,
    readonly seqLen: number,
    readonly batch: number,
    readonly seed: number,
  ) {
    this.numWindows = Math.floor((tokens.length - 1) / seqLen);
    if (this.numWindows < batch) {
      throw new Error(`WindowLoader: ${tokens.length} tokens give ${this.numWindows} windows of ${seqLen}+1, fewer than one batch of ${batch}`);
    }
    this.order = this.permutation(0);
  }

  /** Each epoch's order depends only on (seed, epoch). */
  private permutation(epoch: number): Int32Array {
    return new Rng(this.seed * 1000003 + epoch).permutation(this.numWindows);
  }

  next(): LmBatch {
    const { seqLen, batch } = this;
    const inputs = new Int32Array(batch * seqLen);
    const targets = new Int32Array(batch * seqLen);
    for (let b = 0; b < batch; b++) {
      if (this.cursor >= this.numWindows) {
        this.epoch += 1;
        this.cursor = 0;
        this.order = this.permutation(this.epoch);
      }
      const start = this.order[this.cursor++] * seqLen;
      inputs.set(this.tokens.subarray(start, start + seqLen), b * seqLen);
      targets.set(this.tokens.subarray(start + 1, start + seqLen + 1), b * seqLen);
    }
    return { inputs, targets, batch, seqLen };
  }

  /** Fractional epochs consumed so far. */
  get epochs(): number {
    return this.epoch + this.cursor / this.numWindows;
  }

  getState(): WindowState {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  setState(state: unknown): void {
    const s = state as Partial<WindowState>;
    if (!s || !Number.isInteger(s.epoch) || !Number.isInteger(s.cursor) || s.cursor! < 0 || s.cursor! > this.numWindows) {
      throw new Error(`WindowLoader.setState: bad state ${JSON.stringify(state)} (numWindows ${this.numWindows})`);
    }
    this.epoch = s.epoch!;
    this.cursor = s.cursor!;
    this.order = this.permutation(this.epoch);
  }
}

/** Non-overlapping evaluation windows [n, seqLen] over a token stream (the kit's perplexity protocol). */
export function evalWindows(tokens: Int32Array, seqLen: number, maxWindows = Infinity): Int32Array[] {
  const n = Math.min(Math.floor(tokens.length / seqLen), maxWindows);
  const out: Int32Array[] = [];
  for (let i = 0; i < n; i++) out.push(tokens.slice(i * seqLen, (i + 1) * seqLen));
  return out;
}
