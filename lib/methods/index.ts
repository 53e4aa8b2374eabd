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

export type { CompressResult, MethodHooks, MethodModule } from './types';
