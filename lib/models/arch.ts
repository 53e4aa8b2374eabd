// Architecture differences as data (DESIGN §5.4): weight names, which linears share an input,
// which norm or linear feeds them. The forward pass and every method read these tables.
import type { Arch } from './types';

/** A projection that a fused linear's output rows stack (GLM's query_key_value: q | k | v). */
export type LinearPart = 'q' | 'k' | 'v' | 'gate' | 'up';

/** Rotary position embedding: which dimensions of a head rotate, and how they pair. */
export interface RopeSpec {
  /** Rotated share of each head's dimensions, from the front (GLM: the first half; the rest pass through). */
  fraction: number;
  /** 'halves': dimension j pairs with j + r/2 (HF LLaMA's rotate_half); 'pairs': 2j with 2j + 1 (GLM, Meta). */
  layout: 'halves' | 'pairs';
}

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
  /** Attention projections: which short names are q, k, v, o (one name for q, k and v when fused). */
  attention: { q: string; k: string; v: string; o: string };
  /** MLP: up-type linears (width = intermediate, or 2 × intermediate when gate and up are fused),
   * the down linear, and whether it is gated (act(gate) · up). */
  mlp: { inputs: string[]; down: string; gated: boolean };
  /** Linears whose output rows stack several projections, in row order (short name → parts). */
  fused: Record<string, LinearPart[]>;
  /** Rotary embedding of q and k; null: learned positions (OPT). */
  rope: RopeSpec | null;
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
    mlp: { inputs: ['gate', 'up'], down: 'down', gated: true },
    fused: {},
    rope: { fraction: 1, layout: 'halves' },
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
    mlp: { inputs: ['fc1'], down: 'fc2', gated: false },
    fused: {},
    rope: null,
    embedTokens: 'model.decoder.embed_tokens.weight',
    embedPositions: 'model.decoder.embed_positions.weight',
    finalNorm: 'model.decoder.final_layer_norm',
    lmHead: 'lm_head.weight',
    projectIn: 'model.decoder.project_in.weight',
    projectOut: 'model.decoder.project_out.weight',
    norm: 'layer',
  },
  // ChatGLM2/3 and GLM-4 under ChatGLM's weight names (transformers' native 'glm' layout is mapped
  // onto them on load: lib/models/glm.ts). Fused q|k|v with bias, fused gate|up, RMSNorm, rotary on
  // the first half of each head in interleaved pairs, untied output layer.
  glm: {
    blockPrefix: (i) => `transformer.encoder.layers.${i}.`,
    linears: { qkv: 'self_attention.query_key_value', o: 'self_attention.dense', gate_up: 'mlp.dense_h_to_4h', down: 'mlp.dense_4h_to_h' },
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    groups: [
      { linears: ['qkv'], prev: { kind: 'norm', name: 'attn' } },
      { linears: ['o'], prev: { kind: 'linear', name: 'qkv' } },
      { linears: ['gate_up'], prev: { kind: 'norm', name: 'mlp' } },
      { linears: ['down'], prev: { kind: 'linear', name: 'gate_up' } },
    ],
    attention: { q: 'qkv', k: 'qkv', v: 'qkv', o: 'o' },
    mlp: { inputs: ['gate_up'], down: 'down', gated: true },
    fused: { qkv: ['q', 'k', 'v'], gate_up: ['gate', 'up'] },
    rope: { fraction: 0.5, layout: 'pairs' },
    embedTokens: 'transformer.embedding.word_embeddings.weight',
    embedPositions: null,
    finalNorm: 'transformer.encoder.final_layernorm',
    lmHead: 'transformer.output_layer.weight',
    projectIn: null,
    projectOut: null,
    norm: 'rms',
  },
};

/** Output rows of each projection of a block: q = heads·hd, k and v = KV heads·hd, gate and up = intermediate. */
export interface PartWidths {
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  headDim: number;
}

/**
 * Row ranges of a linear's output: one range per stacked projection of a fused linear (row order),
 * or one range named after the linear itself. `rows` of a plain linear is null (its weight's rows).
 */
export function linearParts(arch: Arch, short: string, w: PartWidths): { part: string; offset: number; rows: number | null }[] {
  const parts = ARCHS[arch].fused[short];
  if (!parts) return [{ part: short, offset: 0, rows: null }];
  const rowsOf = { q: w.numHeads * w.headDim, k: w.numKvHeads * w.headDim, v: w.numKvHeads * w.headDim, gate: w.intermediateSize, up: w.intermediateSize };
  let offset = 0;
  return parts.map((part) => {
    const r = { part, offset, rows: rowsOf[part] };
    offset += rowsOf[part];
    return r;
  });
}

/** q, k and v are one fused linear in this architecture. */
export function fusedQkv(arch: Arch): boolean {
  const a = ARCHS[arch].attention;
  return a.q === a.k && a.k === a.v;
}

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
