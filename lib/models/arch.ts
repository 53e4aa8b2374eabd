// Architecture differences as data (DESIGN §5.4): weight names, which linears share an input,
// which norm or linear feeds them. The forward pass and every method read these tables.
import type { Arch } from './types';

/** A set of linears that read the same input, and what produces that input. */
export interface LinearGroup {
  /** Short names of the linears (keys of BlockSpec.linears). */
  linears: string[];
  /** What produces their shared input: a norm (scales fold into it: AWQ/SmoothQuant) or a linear. */
  prev: { kind: 'norm'; name: string } | { kind: 'linear'; name: string };
}

export interface ArchSpec {
  /** Prefix of block i's weights, e.g. 'model.layers.3.' */
  blockPrefix(i: number): string;
  /** Short linear name → weight name suffix inside a block (without '.weight'/'.bias'). */
  linears: Record<string, string>;
  /** Short norm name → weight name suffix inside a block. */
  norms: Record<string, string>;
  /** Linear groups in execution order. */
  groups: LinearGroup[];
  /** Attention projections: which short names are q, k, v, o. */
  attention: { q: string; k: string; v: string; o: string };
  /** MLP: up-type linears (width = intermediate) and the down linear. */
  mlp: { inputs: string[]; down: string };
  embedTokens: string;
  embedPositions: string | null;
  finalNorm: string;
  lmHead: string;
  /** OPT's optional projections between word embeddings and hidden size. */
  projectIn: string | null;
  projectOut: string | null;
  norm: 'rms' | 'layer';
}

export const ARCHS: Record<Arch, ArchSpec> = {
  llama: {
    blockPrefix: (i) => `model.layers.${i}.`,
    linears: {
      q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj',
      gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj',
    },
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    groups: [
      { linears: ['q', 'k', 'v'], prev: { kind: 'norm', name: 'attn' } },
      { linears: ['o'], prev: { kind: 'linear', name: 'v' } },
      { linears: ['gate', 'up'], prev: { kind: 'norm', name: 'mlp' } },
      { linears: ['down'], prev: { kind: 'linear', name: 'up' } },
    ],
    attention: { q: 'q', k: 'k', v: 'v', o: 'o' },
    mlp: { inputs: ['gate', 'up'], down: 'down' },
    embedTokens: 'model.embed_tokens.weight',
    embedPositions: null,
    finalNorm: 'model.norm',
    lmHead: 'lm_head.weight',
    projectIn: null,
    projectOut: null,
    norm: 'rms',
  },
  opt: {
    blockPrefix: (i) => `model.decoder.layers.${i}.`,
    linears: {
      q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.out_proj',
      fc1: 'fc1', fc2: 'fc2',
    },
    norms: { attn: 'self_attn_layer_norm', mlp: 'final_layer_norm' },
    groups: [
      { linears: ['q', 'k', 'v'], prev: { kind: 'norm', name: 'attn' } },
      { linears: ['o'], prev: { kind: 'linear', name: 'v' } },
      { linears: ['fc1'], prev: { kind: 'norm', name: 'mlp' } },
      { linears: ['fc2'], prev: { kind: 'linear', name: 'fc1' } },
    ],
    attention: { q: 'q', k: 'k', v: 'v', o: 'o' },
    mlp: { inputs: ['fc1'], down: 'fc2' },
    embedTokens: 'model.decoder.embed_tokens.weight',
    embedPositions: 'model.decoder.embed_positions.weight',
    finalNorm: 'model.decoder.final_layer_norm',
    lmHead: 'lm_head.weight',
    projectIn: 'model.decoder.project_in.weight',
    projectOut: 'model.decoder.project_out.weight',
    norm: 'layer',
  },
};

/** Full weight name of a block's linear, e.g. linearName('llama', 0, 'q') = 'model.layers.0.self_attn.q_proj.weight'. */
export function linearName(arch: Arch, block: number, linear: string, part: 'weight' | 'bias' = 'weight'): string {
  const spec = ARCHS[arch];
  const suffix = spec.linears[linear];
  if (!suffix) throw new Error(`architecture '${arch}' has no linear '${linear}' (has ${Object.keys(spec.linears).join(', ')})`);
  return `${spec.blockPrefix(block)}${suffix}.${part}`;
}

/** Short names of a block's linears in execution order. */
export function blockLinears(arch: Arch): string[] {
  return ARCHS[arch].groups.flatMap((g) => g.linears);
}
