// The kit's trainer: AdamW + cosine schedule with warmup + global-norm clipping over any set of
// tf.Variables and any differentiable loss. Pre-training the zoo, LLM-Pruner's LoRA recovery and
// OmniQuant's per-block parameters all run through it. Checkpoints hold the parameters, the
// optimizer moments, the step and the data position, so a resumed run continues with exactly the
// losses of an uninterrupted one.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { readSafetensorsHeader, readTensor, writeSafetensors, type WriteTensor } from '../models/safetensors';
import { writeFileAtomic } from '../results';
import { assertFinite } from '../eval/finite';
import { syncDevice } from '../runtime';
import type { BatchSource } from './data';
import { AdamW, ADAMW_DEFAULTS, clipFactor, cosineLr, type AdamWOptions } from './optim';

export interface TrainOptions extends AdamWOptions {
  steps: number; // optimizer steps in total (the cosine ends here)
  lr: number; // peak learning rate
  warmupSteps: number; // linear warmup steps
  minLrRatio: number; // the cosine's floor as a fraction of lr
  gradClip: number; // max global gradient norm; 0 turns clipping off
  logEvery: number; // read the loss back and write a curve point every this many steps
  evalEvery: number; // call hooks.evaluate every this many steps (0 = only at the end)
  checkpointEvery: number; // save a checkpoint every this many steps (0 = never); a multiple of logEvery
  checkpointDir: string | null; // where checkpoints go (required for checkpointEvery > 0 or resume)
  resume: boolean; // continue from checkpointDir/state.json when it exists
  stopAfter: number | null; // stop (after checkpointing) at this step although `steps` defines the schedule: for interrupted-run tests and time-sliced jobs
  label: string; // names the trained model and method in errors (a non-finite loss or gradient norm)
}
export const TRAIN_DEFAULTS: TrainOptions = {
  ...ADAMW_DEFAULTS,
  steps: 1000,
  lr: 1e-3,
  warmupSteps: 50,
  minLrRatio: 0.1, // LLaMA's schedule ends at 10% of the peak
  gradClip: 1.0, // LLaMA / GPT-3
  logEvery: 10,
  evalEvery: 0,
  checkpointEvery: 0,
  checkpointDir: null,
  resume: false,
  stopAfter: null,
  label: 'model', // callers pass e.g. "llama-700k pretraining"
};

/** One point of the loss curve (the tidy table is written from these by curveRows). */
export interface CurvePoint {
  step: number; // optimizer steps done
  tokens: number; // training tokens consumed
  lr: number; // learning rate of the last step
  trainLoss: number; // mean training loss over the steps since the previous point
  gradNorm: number; // pre-clipping global gradient norm of the last step
  tokensPerS: number; // training throughput over the interval (evaluation excluded)
  elapsedS: number; // training wall time so far (across resumes)
  eval: Record<string, number>; // e.g. { valid_loss } when evaluated at this step
}

export interface TrainTask<B> {
  /** The trainable parameters by name. */
  params: Map<string, tf.Variable>;
  /** The scalar loss of one batch; called inside tf.variableGrads. */
  loss: (batch: B) => tf.Scalar;
  data: BatchSource<B>;
  /** Tokens (or samples) per batch, for throughput. */
  tokensPerBatch: number;
  /** Which parameters get weight decay (default: all). */
  decay?: (name: string) => boolean;
}

export interface TrainHooks {
  evaluate?: () => Promise<Record<string, number>> | Record<string, number>;
  onPoint?: (p: CurvePoint) => void;
}

export interface TrainResult {
  curve: CurvePoint[];
  step: number;
  resumedFrom: number | null;
  elapsedS: number;
  tokens: number;
}

interface CheckpointState {
  step: number;
  tokens: number;
  elapsedS: number;
  adamT: number;
  data: unknown;
  curve: CurvePoint[];
  options: TrainOptions;
}

/** Options that must not change between a run and its resumption (they shape the trajectory). */
const TRAJECTORY_KEYS: (keyof TrainOptions)[] = ['steps', 'lr', 'warmupSteps', 'minLrRatio', 'gradClip', 'beta1', 'beta2', 'eps', 'weightDecay', 'logEvery'];

function validate(o: TrainOptions): void {
  const posInt = (k: keyof TrainOptions) => {
    const v = o[k] as number;
    if (!Number.isInteger(v) || v < 0) throw new Error(`train option '${k}' must be a non-negative integer, got ${v}`);
  };
  (['steps', 'warmupSteps', 'logEvery', 'evalEvery', 'checkpointEvery'] as const).forEach(posInt);
  if (o.steps < 1) throw new Error(`train option 'steps' must be at least 1`);
  if (o.logEvery < 1) throw new Error(`train option 'logEvery' must be at least 1`);
  if (!(o.lr > 0)) throw new Error(`train option 'lr' must be positive, got ${o.lr}`);
  if (o.checkpointEvery > 0 && o.checkpointEvery % o.logEvery !== 0) {
    throw new Error(`train option 'checkpointEvery' (${o.checkpointEvery}) must be a multiple of 'logEvery' (${o.logEvery})`);
  }
  if ((o.checkpointEvery > 0 || o.resume || o.stopAfter !== null) && !o.checkpointDir) {
    throw new Error(`train options 'checkpointEvery', 'resume' and 'stopAfter' need 'checkpointDir'`);
  }
  if (o.stopAfter !== null && (o.stopAfter % o.logEvery !== 0 || o.stopAfter < 1)) {
    throw new Error(`train option 'stopAfter' (${o.stopAfter}) must be a positive multiple of 'logEvery' (${o.logEvery})`);
  }
}

const PARAMS_FILE = 'params.safetensors';
const OPTIM_FILE = 'optimizer.safetensors';
const STATE_FILE = 'state.json';

/** Reads tensors to the host asynchronously (WebGPU in Node has no synchronous read) for writing. */
async function toWrite(tensors: Map<string, tf.Tensor>): Promise<WriteTensor[]> {
  const out: WriteTensor[] = [];
  for (const [name, t] of tensors) {
    const data = (await t.data()) as Float32Array;
    out.push({ name, shape: t.shape, chunks: () => [data] });
  }
  return out;
}

function readAll(file: string): Map<string, tf.Tensor> {
  const header = readSafetensorsHeader(file);
  const out = new Map<string, tf.Tensor>();
  for (const e of header.entries) out.set(e.name, tf.tensor(readTensor(file, e), e.shape, 'float32'));
  return out;
}

async function saveCheckpoint(dir: string, params: Map<string, tf.Variable>, opt: AdamW, state: CheckpointState): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, PARAMS_FILE), await toWrite(params));
  const os = opt.exportState();
  try {
    writeSafetensors(path.join(dir, OPTIM_FILE), await toWrite(os.tensors));
  } finally {
    os.tensors.forEach((t) => t.dispose());
  }
  // state.json last: a checkpoint without it (a crash mid-save) is never resumed from.
  writeFileAtomic(path.join(dir, STATE_FILE), JSON.stringify(state) + '\n');
}

function loadCheckpoint(dir: string, params: Map<string, tf.Variable>, opt: AdamW, o: TrainOptions): CheckpointState {
  const stateFile = path.join(dir, STATE_FILE);
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as CheckpointState;
  for (const k of TRAJECTORY_KEYS) {
    if (state.options[k] !== o[k]) throw new Error(`${stateFile}: option '${k}' was ${state.options[k]}, now ${o[k]}: resuming would not continue the same run`);
  }
  const pfile = path.join(dir, PARAMS_FILE);
  const saved = readAll(pfile);
  try {
    for (const [name, p] of params) {
      const t = saved.get(name);
      if (!t) throw new Error(`${pfile}: no tensor '${name}'`);
      if (t.shape.join(',') !== p.shape.join(',')) throw new Error(`${pfile}: '${name}' has shape [${t.shape}], the parameter has [${p.shape}]`);
      p.assign(t);
    }
    if (saved.size !== params.size) throw new Error(`${pfile}: holds ${saved.size} tensors, the run has ${params.size} parameters`);
  } finally {
    saved.forEach((t) => t.dispose());
  }
  const ofile = path.join(dir, OPTIM_FILE);
  const moments = readAll(ofile);
  try {
    opt.importState({ t: state.adamT, tensors: moments }, ofile);
  } finally {
    moments.forEach((t) => t.dispose());
  }
  return state;
}

/** Trains task.params on task.loss; returns the loss curve. */
export async function train<B>(task: TrainTask<B>, options: Partial<TrainOptions> = {}, hooks: TrainHooks = {}): Promise<TrainResult> {
  const o: TrainOptions = { ...TRAIN_DEFAULTS, ...options };
  validate(o);
  const params = task.params;
  const varList = [...params.values()];
  const nameOf = new Map(varList.map((v, i) => [v.name, [...params.keys()][i]]));
  const opt = new AdamW(params, o, task.decay);
  let step = 0;
  let tokens = 0;
  let elapsedS = 0;
  let curve: CurvePoint[] = [];
  let resumedFrom: number | null = null;
  let lossSum: tf.Scalar = tf.scalar(0); // summed on the device since the last curve point
  let lastNorm: tf.Scalar = tf.scalar(0);
  try {
    if (o.resume && o.checkpointDir && fs.existsSync(path.join(o.checkpointDir, STATE_FILE))) {
      const s = loadCheckpoint(o.checkpointDir, params, opt, o);
      step = s.step;
      tokens = s.tokens;
      elapsedS = s.elapsedS;
      curve = s.curve;
      task.data.setState(s.data);
      resumedFrom = step;
    }
    const stopAt = Math.min(o.steps, o.stopAfter ?? o.steps);
    let intervalSteps = 0;
    let t0 = performance.now();
    while (step < stopAt) {
      const lr = cosineLr(step, { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: o.steps, minLrRatio: o.minLrRatio });
      const batch = task.data.next();
      const { value, grads } = tf.variableGrads(() => task.loss(batch), varList);
      const byName = new Map<string, tf.Tensor>();
      for (const [vname, g] of Object.entries(grads)) byName.set(nameOf.get(vname)!, g);
      if (byName.size !== params.size) {
        const missing = [...params.keys()].filter((k) => !byName.has(k));
        tf.dispose(grads);
        value.dispose();
        throw new Error(`train: the loss does not depend on parameter(s) ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
      }
      const [norm, factor] = clipFactor(byName.values(), o.gradClip);
      opt.step(byName, lr, factor);
      tf.dispose(grads);
      factor.dispose();
      const newSum = lossSum.add(value) as tf.Scalar;
      lossSum.dispose();
      value.dispose();
      lossSum = newSum;
      lastNorm.dispose();
      lastNorm = norm;
      step += 1;
      intervalSteps += 1;
      tokens += task.tokensPerBatch;
      if (step % o.logEvery === 0 || step === stopAt) {
        const [sum, gn] = await Promise.all([lossSum.data(), lastNorm.data()]);
        // A NaN or Infinity loss (or gradient) has already poisoned the parameters: stop here.
        assertFinite([sum[0]], `${o.label}: training loss over steps ${step - intervalSteps + 1}-${step}`);
        assertFinite([gn[0]], `${o.label}: gradient norm at step ${step}`);
        await syncDevice();
        const dt = (performance.now() - t0) / 1000;
        elapsedS += dt;
        const point: CurvePoint = {
          step, tokens, lr, trainLoss: sum[0] / intervalSteps, gradNorm: gn[0],
          tokensPerS: (intervalSteps * task.tokensPerBatch) / dt, elapsedS, eval: {},
        };
        lossSum.dispose();
        lossSum = tf.scalar(0);
        intervalSteps = 0;
        if (hooks.evaluate && ((o.evalEvery > 0 && step % o.evalEvery === 0) || step === o.steps)) point.eval = await hooks.evaluate();
        curve.push(point);
        hooks.onPoint?.(point);
        if (o.checkpointDir && ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || step === stopAt)) {
          await saveCheckpoint(o.checkpointDir, params, opt, {
            step, tokens, elapsedS, adamT: opt.t, data: task.data.getState(), curve, options: o,
          });
        }
        t0 = performance.now();
      }
    }
    return { curve, step, resumedFrom, elapsedS, tokens };
  } finally {
    tf.dispose([lossSum, lastNorm]);
    opt.dispose();
  }
}
