// What every compression method returns, and the shape of a method module (DESIGN §5.1).
import type { Model } from '../models/types';
import type { QuantizedMatrix } from '../quant/quantizer';
import type { ActQuantSpec } from '../quant/act';
import type { CalibSet } from './calib';

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

/** A method module: typed defaults, validation before any work, and compress(). */
export interface MethodModule<O extends object> {
  /** Short description for --help. */
  describe: string;
  defaults: O;
  /** Whether compress needs a calibration set. */
  needsCalib: boolean;
  /** Throws a clear error for a bad configuration (call before any work). */
  validate(opts: O, model?: Model): void;
  compress(model: Model, calib: CalibSet | null, opts?: Partial<O>, hooks?: MethodHooks): Promise<CompressResult>;
}

/** Observability hooks a runner passes through (peak-memory sampling, progress). */
export interface MethodHooks {
  sample?(): void;
  onBlockDone?(block: number, ms: number): void;
}
