// Writes a randomly initialised LLaMA-2-7B-shaped model (hidden 4096, 32 layers, 32 heads, SwiGLU
// 11008, vocabulary 32000) as an HF directory: bf16 (or fp16) safetensors shards, config.json
// marked random, a placeholder tokenizer.bin. It measures the cost of compression at real scale
// (Track 3, scripts/bench-compress-scale.ts), not quality: the directory's name must contain
// 'random', and every row it leads to carries that name. Tensors are drawn, encoded and written
// one at a time (the host never holds the model). Seeded: the same flags give the same bytes.
//
//   npx tsx scripts/build-random-model.ts --out tmp/models/random-llama2-7b
//     [--layers 32] [--hidden 4096] [--heads 32] [--mlp 11008] [--vocab 32000] [--context 4096]
//     [--dtype bf16|f16] [--seed 0] [--dist uniform|normal] [--shard-gb 4]
// Shrink for quick runs, e.g. --layers 2 --hidden 256 --heads 4 --mlp 688 --vocab 512.
import { existsSync, readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { CONFIG_LLAMA2_7B, randomDirDefaults, writeRandomModelDir } from '../lib/models/random';
helpFromHeader(import.meta.url);

const { values: v } = parseArgs({
  options: {
    out: { type: 'string' },
    layers: { type: 'string' },
    hidden: { type: 'string' },
    heads: { type: 'string' },
    mlp: { type: 'string' },
    vocab: { type: 'string' },
    context: { type: 'string' },
    dtype: { type: 'string', default: 'bf16' },
    seed: { type: 'string' },
    dist: { type: 'string', default: randomDirDefaults.dist },
    'shard-gb': { type: 'string' },
  },
  strict: true,
});
const int = (flag: string, value: string | undefined, dflt: number) => numberFlag(flag, value, { integer: true, min: 1 }) ?? dflt;

async function main(): Promise<void> {
  if (!v.out) throw new Error('--out DIR is required (its name must contain "random")');
  if (existsSync(v.out) && readdirSync(v.out).length > 0) throw new Error(`--out ${v.out} exists and is not empty`);
  const dtype = ({ bf16: 'BF16', f16: 'F16' } as const)[v.dtype as 'bf16' | 'f16'];
  if (!dtype) throw new Error(`--dtype must be bf16 or f16, got '${v.dtype}'`);
  if (v.dist !== 'uniform' && v.dist !== 'normal') throw new Error(`--dist must be uniform or normal, got '${v.dist}'`);
  const heads = int('heads', v.heads, CONFIG_LLAMA2_7B.num_attention_heads);
  const hf = {
    ...CONFIG_LLAMA2_7B,
    num_hidden_layers: int('layers', v.layers, CONFIG_LLAMA2_7B.num_hidden_layers),
    hidden_size: int('hidden', v.hidden, CONFIG_LLAMA2_7B.hidden_size),
    num_attention_heads: heads,
    num_key_value_heads: heads,
    intermediate_size: int('mlp', v.mlp, CONFIG_LLAMA2_7B.intermediate_size),
    vocab_size: int('vocab', v.vocab, CONFIG_LLAMA2_7B.vocab_size),
    max_position_embeddings: int('context', v.context, CONFIG_LLAMA2_7B.max_position_embeddings),
  };
  const t0 = performance.now();
  const shards = await writeRandomModelDir(hf, v.out, {
    dtype,
    dist: v.dist,
    seed: numberFlag('seed', v.seed, { integer: true, min: 0 }) ?? randomDirDefaults.seed,
    maxShardBytes: (numberFlag('shard-gb', v['shard-gb'], { min: 0.001 }) ?? randomDirDefaults.maxShardBytes / 1024 ** 3) * 1024 ** 3,
  });
  console.log(`${v.out}: ${shards.length} shard(s) (${shards.join(', ')}), ${hf.num_hidden_layers} layers, hidden ${hf.hidden_size}, ${dtype}, random weights, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(e instanceof Error ? (process.env.DEBUG ? e.stack : e.message) : e);
  process.exit(1);
});
