// transformers' native GLM layout (model_type 'glm': separate q/k/v projections, 'model.layers.N.')
// ↔ the GLM architecture table, which keeps ChatGLM2/3's names and fused query_key_value
// (lib/models/arch.ts ARCHS.glm). Loading stacks q, k and v rows into one linear; saving splits them
// again, so a saved GLM model is a directory transformers reads (GlmForCausalLM).
import { ARCHS, linearParts } from './arch';
import type { AsyncWriteTensor } from './safetensors';
import type { ModelConfig } from './types';
import { blockWidths, concatFloat32, type TensorSource } from './weights';

const GLM = ARCHS.glm;

/** Native names outside the blocks → the table's. */
const NATIVE_TOP: Record<string, string> = {
  'model.embed_tokens.weight': GLM.embedTokens,
  'model.norm.weight': `${GLM.finalNorm}.weight`,
  'lm_head.weight': GLM.lmHead,
};

/** Native block suffixes → the table's (the three attention projections are stacked instead). */
const NATIVE_BLOCK: Record<string, string> = {
  input_layernorm: GLM.norms.attn,
  post_attention_layernorm: GLM.norms.mlp,
  'self_attn.o_proj': GLM.linears.o,
  'mlp.gate_up_proj': GLM.linears.gate_up,
  'mlp.down_proj': GLM.linears.down,
};

/** Native q, k, v projections in the fused linear's row order (ARCHS.glm.fused.qkv). */
const NATIVE_QKV: Record<string, string> = { q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj' };

const BLOCK_NAME = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/;

/**
 * Native GLM tensor sources renamed to the table's names, q/k/v weights (and biases) stacked into
 * one lazy query_key_value source per block. Names it does not know pass unchanged (validation then
 * names them); a block with only some of q, k, v is an error naming the missing one.
 */
export function glmFromNativeNames(sources: TensorSource[]): TensorSource[] {
  const out: TensorSource[] = [];
  const qkv = new Map<string, Map<string, TensorSource>>(); // fused name → part → source
  const partOf = Object.fromEntries(Object.entries(NATIVE_QKV).map(([p, s]) => [s, p]));
  for (const s of sources) {
    const m = BLOCK_NAME.exec(s.name);
    const top = NATIVE_TOP[s.name];
    if (top) out.push({ ...s, name: top });
    else if (m && NATIVE_BLOCK[m[2]]) out.push({ ...s, name: `${GLM.blockPrefix(Number(m[1]))}${NATIVE_BLOCK[m[2]]}.${m[3]}` });
    else if (m && partOf[m[2]]) {
      const fused = `${GLM.blockPrefix(Number(m[1]))}${GLM.linears.qkv}.${m[3]}`;
      if (!qkv.has(fused)) qkv.set(fused, new Map());
      qkv.get(fused)!.set(partOf[m[2]], s);
    } else out.push(s);
  }
  for (const [name, parts] of qkv) {
    const ordered = GLM.fused.qkv.map((p) => {
      const s = parts.get(p);
      if (!s) throw new Error(`${[...parts.values()][0].origin}: '${name}' needs the native '${NATIVE_QKV[p]}' tensor, which is missing`);
      return s;
    });
    const cols = ordered[0].shape.slice(1);
    for (const s of ordered) {
      if (s.shape.slice(1).join() !== cols.join()) throw new Error(`${s.origin}: '${s.name}' has shape [${s.shape}], its q/k/v siblings [*, ${cols}]`);
    }
    out.push({
      name,
      shape: [ordered.reduce((a, s) => a + s.shape[0], 0), ...cols],
      origin: ordered.map((s) => s.origin).join(' + '),
      read: () => concatFloat32(ordered.map((s) => s.read())),
    });
  }
  return out;
}

/** The table's GLM tensors to write, under native names with query_key_value split into q, k, v (sorted by name). */
export function glmToNativeTensors(tensors: AsyncWriteTensor[], config: ModelConfig): AsyncWriteTensor[] {
  const toTop = Object.fromEntries(Object.entries(NATIVE_TOP).map(([n, t]) => [t, n]));
  const toBlock = Object.fromEntries(Object.entries(NATIVE_BLOCK).map(([n, t]) => [t, n]));
  const out: AsyncWriteTensor[] = [];
  for (const t of tensors) {
    const m = /^transformer\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(t.name);
    if (toTop[t.name]) out.push({ ...t, name: toTop[t.name] });
    else if (m && m[2] === GLM.linears.qkv) {
      const layer = Number(m[1]);
      const cols = t.shape.slice(1).reduce((a, d) => a * d, 1);
      let whole: Promise<Float32Array> | null = null; // read once for the three parts
      const read = async () => concatFloat32(await t.chunks());
      for (const p of linearParts('glm', 'qkv', { ...blockWidths(config, layer), headDim: config.headDim })) {
        const rows = p.rows!;
        out.push({
          ...t,
          name: `model.layers.${layer}.${NATIVE_QKV[p.part]}.${m[3]}`,
          shape: [rows, ...t.shape.slice(1)],
          chunks: async () => [(await (whole ??= read())).slice(p.offset * cols, (p.offset + rows) * cols)],
        });
      }
    } else if (m && toBlock[m[2]]) out.push({ ...t, name: `model.layers.${m[1]}.${toBlock[m[2]]}.${m[3]}` });
    else throw new Error(`saving GLM: tensor '${t.name}' has no native transformers name`);
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
