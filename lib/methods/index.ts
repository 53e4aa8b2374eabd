// The registry of compression methods (DESIGN §5.5): name → module. Each module declares its
// display name, kind, option schema (lib/methods/options.ts), validation and compress(); every
// list of methods, their flags, --help text, matrix validation and the paper-name mapping derive
// from this one table. Adding a method = its file plus one line here. The order is the paper's
// row order (sparsity, then quantization).
import type { MethodKind, MethodModule } from './types';
import { describeOptions, flagOf, MethodOptionError, parseOptions, valueFromFlag, type OptionSpec } from './options';
import * as magnitude from './magnitude';
import * as llmPruner from './llm-pruner';
import * as wanda from './wanda';
import * as sparsegpt from './sparsegpt';
import * as rtn from './rtn';
import * as gptq from './gptq';
import * as smoothquant from './smoothquant';
import * as awq from './awq';
import * as omniquant from './omniquant';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const METHODS = {
  magnitude: magnitude.module,
  'llm-pruner': llmPruner.module,
  wanda: wanda.module,
  sparsegpt: sparsegpt.module,
  rtn: rtn.module,
  gptq: gptq.module,
  smoothquant: smoothquant.module,
  awq: awq.module,
  omniquant: omniquant.module,
} satisfies Record<string, MethodModule<any>>;

export type MethodName = keyof typeof METHODS;

/** The registered methods' names, in the registry's (the paper's) order. */
export function methodNames(): string[] {
  return Object.keys(METHODS);
}

export function getMethod(name: string): MethodModule<object> {
  if (!(name in METHODS)) throw new Error(`unknown method '${name}' (known: ${methodNames().join(', ')})`);
  return METHODS[name as MethodName] as unknown as MethodModule<object>;
}

/** A method's kind, null for 'dense' (the uncompressed model). */
export function methodKind(name: string): MethodKind | null {
  return name === 'dense' ? null : getMethod(name).kind;
}

/**
 * Checks a method configuration before any work and returns the method's full options: `name` is
 * a registry method (or 'dense', the uncompressed model, which takes no options); every key is one
 * of the method's options and every value of its type and range (the method's schema). The error
 * names the bad name, key or value and lists the valid ones; `where` says where the configuration
 * came from (a matrix entry, a flag).
 */
export function checkMethodConfig(name: string, config: Record<string, unknown>, where = 'method'): Record<string, unknown> {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error(`${where}: the config of method '${name}' must be a JSON object, got ${JSON.stringify(config)}`);
  const keys = Object.keys(config);
  if (name === 'dense') {
    if (keys.length) throw new Error(`${where}: 'dense' takes no options, got ${keys.map((k) => `'${k}'`).join(', ')}`);
    return {};
  }
  if (!(name in METHODS)) throw new Error(`${where}: unknown method '${name}' (known: dense, ${methodNames().join(', ')})`);
  return parseOptions(name, getMethod(name).options, config, where);
}

/** Every registered method's options by flag: 'group-size' → [key, spec] (a key has one type in every method). */
function optionFlags(reserved: readonly string[]): Map<string, { key: string; spec: OptionSpec }> {
  const flags = new Map<string, { key: string; spec: OptionSpec }>();
  for (const name of methodNames()) {
    for (const [key, spec] of Object.entries(getMethod(name).options)) {
      const flag = flagOf(key);
      if (!reserved.includes(flag) && !flags.has(flag)) flags.set(flag, { key, spec });
    }
  }
  return flags;
}

/**
 * parseArgs options for every registered method's options (--group-size X, --sym / --no-sym, …).
 * Flags in `reserved` (the script's own, e.g. --seqlen) are left out: such options are set through
 * --method-config.
 */
export function methodFlagOptions(reserved: readonly string[]): Record<string, { type: 'string' | 'boolean' }> {
  const out: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const [flag, { spec }] of optionFlags(reserved)) {
    if (spec.type === 'boolean') {
      out[flag] = { type: 'boolean' };
      out[`no-${flag}`] = { type: 'boolean' };
    } else out[flag] = { type: 'string' };
  }
  return out;
}

/**
 * The options of method `name` set by the flags given (parsed values of methodFlagOptions); a flag
 * that sets no option of this method is an error naming it and the method's flags.
 */
function configFromFlags(name: string, values: Record<string, unknown>, reserved: readonly string[]): Record<string, unknown> {
  const mine = name === 'dense' ? {} : getMethod(name).options;
  const config: Record<string, unknown> = {};
  for (const [flag, { key, spec }] of optionFlags(reserved)) {
    // A switch is given as --x (true) or --no-x (false); a value flag as its text.
    const given: unknown[] = spec.type === 'boolean' ? [...(values[flag] ? [true] : []), ...(values[`no-${flag}`] ? [false] : [])] : values[flag] === undefined ? [] : [values[flag]];
    if (!given.length) continue;
    if (given.length > 1) throw new MethodOptionError(`--${flag} and --no-${flag} are exclusive`);
    if (!(key in mine)) {
      const valid = Object.keys(mine).map((k) => `--${flagOf(k)}`).join(', ');
      throw new MethodOptionError(`--${given[0] === false ? 'no-' : ''}${flag}: not an option of method '${name}' (its options: ${valid || 'none'})`);
    }
    config[key] = spec.type === 'boolean' ? given[0] : valueFromFlag(name, key, spec, String(given[0]));
  }
  return config;
}

/**
 * A script's method configuration: the --method-config JSON object (if given), then the method
 * option flags over it (methodFlagOptions' parsed values). An unknown method, bad JSON or a flag
 * the method does not have is an error naming it.
 */
export function methodConfigFromArgs(name: string, json: string | undefined, values: Record<string, unknown>, reserved: readonly string[]): Record<string, unknown> {
  if (name !== 'dense') getMethod(name); // an unknown method is named before its flags are read
  let config: Record<string, unknown> = {};
  if (json !== undefined) {
    try {
      config = JSON.parse(json) as Record<string, unknown>;
    } catch (e) {
      throw new MethodOptionError(`--method-config: not JSON: ${(e as Error).message}`);
    }
    if (!config || typeof config !== 'object' || Array.isArray(config)) throw new MethodOptionError('--method-config: a JSON object of method options');
  }
  return { ...config, ...configFromFlags(name, values, reserved) };
}

/** --help text: every registered method with its kind, description and options. */
export function describeMethods(): string {
  return methodNames()
    .map((n) => {
      const m = getMethod(n);
      return [`${n} (${m.display}, ${m.kind}${m.needsCalib ? ', needs calibration' : ''}): ${m.describe}`, ...describeOptions(m.options)].join('\n');
    })
    .join('\n');
}

export type { CompressResult, MethodHooks, MethodKind, MethodModule } from './types';
