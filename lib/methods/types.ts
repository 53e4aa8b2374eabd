// What every compression method returns, and the shape of a method module (DESIGN §5.1).
import type { Model } from '../models/types';
import type { QuantizedMatrix } from '../quant/quantizer';
import type { ActQuantSpec } from '../quant/act';
import type { CalibSet } from './calib';
import type { OptionSchema } from './options';

export interface CompressResult {
  /** Method name as in result rows ('gptq', 'smoothquant', …). */
  method: string;
  /** Options that define the result (goes into method_config). */
  config: Record<string, unknown>;
  /** The calibration set (describeCalib) or 'none'. */
  calib: string;
  /** Integer codes of every quantized weight, keyed by weight name (quantization methods). */
  quantized: Map<string, QuantizedMatrix>;
  /** Activation quantization the compressed model needs at inference (W8A8), or null. */
  actQuant: ActQuantSpec | null;
  /** Serializable searched/learned parameters (AWQ scales, SmoothQuant scales, OmniQuant params). */
  artifacts: Record<string, unknown>;
  /** Scalar diagnostics (layer losses…). */
  stats: Record<string, number>;
}

/**
 * What a method compresses: weights to integers (quantization), single weights to zero (sparsity),
 * or whole heads and channels out of the shapes (structured). The paper's tables group structured
 * pruning with sparsity.
 */
export type MethodKind = 'quantization' | 'sparsity' | 'structured';

/** A method module: its identity, option schema and defaults, validation before any work, and compress(). */
export interface MethodModule<O extends object> {
  /** The method's name in the paper's spelling ('LLM-Pruner', 'GPTQ'). */
  display: string;
  kind: MethodKind;
  /** Compared in LLMCBench's tables (the kit's extra baselines, magnitude and RTN, are not). */
  inPaper: boolean;
  /** Short description for --help. */
  describe: string;
  /** Every option: type, range, default, doc (lib/methods/options.ts). Keys are the option names everywhere. */
  options: OptionSchema;
  /** The schema's defaults (defaultsOf(options)). */
  defaults: O;
  /** Whether compress needs a calibration set. */
  needsCalib: boolean;
  /** Checks that involve several options or the model (the schema checks each option alone); throws naming the problem. */
  validate(opts: O, model?: Model): void;
  compress(model: Model, calib: CalibSet | null, opts?: Partial<O>, hooks?: MethodHooks): Promise<CompressResult>;
}

/** Observability hooks a runner passes through (peak-memory sampling, progress). */
export interface MethodHooks {
  sample?(): void;
  /** After each block: its wall time and, from the sequential driver, its phases (BlockPhases, ms each). */
  onBlockDone?(block: number, ms: number, phases?: Record<string, number>): void;
}
