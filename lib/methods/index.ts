// The registry of compression methods (DESIGN §5.5): name → module with defaults, validate, compress.
import type { MethodModule } from './types';
import * as rtn from './rtn';
import * as gptq from './gptq';
import * as awq from './awq';
import * as smoothquant from './smoothquant';
import * as omniquant from './omniquant';
import * as magnitude from './magnitude';
import * as wanda from './wanda';
import * as sparsegpt from './sparsegpt';
import * as llmPruner from './llm-pruner';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const METHODS = {
  rtn: rtn.module,
  gptq: gptq.module,
  awq: awq.module,
  smoothquant: smoothquant.module,
  omniquant: omniquant.module,
  magnitude: magnitude.module,
  wanda: wanda.module,
  sparsegpt: sparsegpt.module,
  'llm-pruner': llmPruner.module,
} satisfies Record<string, MethodModule<any>>;

export type MethodName = keyof typeof METHODS;

export function getMethod(name: string): MethodModule<object> {
  if (!(name in METHODS)) throw new Error(`unknown method '${name}' (known: ${Object.keys(METHODS).join(', ')})`);
  return METHODS[name as MethodName] as unknown as MethodModule<object>;
}

/**
 * Checks a method configuration before any work: `name` is a registry method (or 'dense', the
 * uncompressed model, which takes no options) and every option key is one of the method's
 * (the keys of its `defaults`). The error names the bad name or key and lists the valid ones;
 * `where` says where the configuration came from (a matrix entry, a flag).
 */
export function checkMethodConfig(name: string, config: Record<string, unknown>, where = 'method'): void {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error(`${where}: the config of method '${name}' must be a JSON object, got ${JSON.stringify(config)}`);
  const keys = Object.keys(config);
  if (name === 'dense') {
    if (keys.length) throw new Error(`${where}: 'dense' takes no options, got ${keys.map((k) => `'${k}'`).join(', ')}`);
    return;
  }
  if (!(name in METHODS)) throw new Error(`${where}: unknown method '${name}' (known: dense, ${Object.keys(METHODS).join(', ')})`);
  const valid = Object.keys(METHODS[name as MethodName].defaults);
  const bad = keys.filter((k) => !valid.includes(k));
  if (bad.length) throw new Error(`${where}: unknown option ${bad.map((k) => `'${k}'`).join(', ')} for method '${name}' (valid: ${valid.join(', ')})`);
}

export type { CompressResult, MethodHooks, MethodModule } from './types';
