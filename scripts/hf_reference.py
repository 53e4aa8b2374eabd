#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for the kit's parity tests.

Builds tiny randomly initialised LLaMA (GQA untied, MHA tied, llama3 rope scaling, linear rope
scaling) and OPT (pre-LN with project_in/out, post-LN) models, and the other families of the paper
and of users' models: GLM (transformers' native 'glm': fused gate/up, q/k/v biases, 2 KV groups,
rotary on half of each head), the same weights in ChatGLM2/3's layout ('chatglm': the remote-code
names and config keys, written from the native model since transformers ships no ChatGLM class;
its reference is the native model's), Qwen2 (q/k/v biases) and Mistral (a sliding window of 3,
shorter than the sequence). Each is saved as an HF directory with `reference.safetensors`
(input_ids, attention_mask, logits: fp32, batch of 2 with the second row right-padded;
greedy_prompt and greedy_ids: transformers' greedy continuation of the first row's first tokens),
and, when the shared stories260K HF directory is given, transformers' greedy continuation of BOS +
"Once upon a time" (`stories260K_greedy.json`).

Run on the GPU host (torch + transformers):
    python3 scripts/hf_reference.py --out "$OUT/models" --stories ../shared/reference/stories260K/hf
    python3 scripts/hf_reference.py --out "$OUT/models" --only glm,chatglm,qwen2,mistral_window   # the families alone
then copy $OUT/models/* into test/fixtures/models/. fp32 with TF32 off, eager attention.
"""
import argparse
import json
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "py"))
from hf_compat import rope_kwargs  # noqa: E402

VOCAB = 256  # <= 512 so the parity test can pair the models with tok512 (only ids matter)
SEQ = 8
PAD = 3  # padding positions at the end of the second row

CONFIGS = {
    "llama_gqa": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
    "llama_tied": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)),
    "llama_rope_llama3": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16),
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
    "llama_rope_linear": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
        rope_scaling=dict(rope_type="linear", factor=4.0), tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)),
    "opt_pre_proj": (OPTConfig, OPTForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, word_embed_proj_dim=16, do_layer_norm_before=True,
        activation_function="relu", bos_token_id=2, eos_token_id=2, pad_token_id=1)),
    "opt_post_ln": (OPTConfig, OPTForCausalLM, dict(
        vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, word_embed_proj_dim=32, do_layer_norm_before=False,
        activation_function="relu", bos_token_id=2, eos_token_id=2, pad_token_id=1)),
}

# Families beyond LLaMA and OPT, by class name (GLM needs transformers >= 4.46).
FAMILIES = {
    "glm": ("GlmConfig", "GlmForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, partial_rotary_factor=0.5, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=True, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        use_sliding_window=False, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
    "mistral_window": ("MistralConfig", "MistralForCausalLM", dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        sliding_window=3, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
}
GREEDY_PROMPT = 4  # tokens of the first row that prompt the greedy continuation
GREEDY_NEW = 6


def save_tensors(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, path)


def build(name, cfg_cls, model_cls, kwargs, out, device, seed):
    torch.manual_seed(seed)
    cfg = cfg_cls(**rope_kwargs(kwargs))
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).to(torch.float32).eval()
    with torch.no_grad():
        # Larger-than-default weights and non-trivial norms/biases so every parameter matters.
        for pname, p in model.named_parameters():
            if "norm" in pname and pname.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    model = model.to(device)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(3, VOCAB, (2, SEQ), generator=g)
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, SEQ - PAD:] = 0
    ids[1, SEQ - PAD:] = 0
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        prompt = ids[:1, :GREEDY_PROMPT].to(device)
        seq = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=GREEDY_NEW,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
    save_tensors(os.path.join(d, "reference.safetensors"),
                 {"input_ids": ids.float(), "attention_mask": mask.float(), "logits": logits,
                  "greedy_prompt": prompt.float(), "greedy_ids": seq[:, GREEDY_PROMPT:].float()})
    print(f"{name}: logits {tuple(logits.shape)} max |logit| {logits.abs().max().item():.3f}")
    return model


def chatglm_from_glm(model, native_dir, out):
    """The native GLM model's weights under ChatGLM2/3's names and config keys (the kit's GLM table):
    q, k, v stacked into query_key_value (rows q | k | v), gate_up_proj is dense_h_to_4h. The
    reference tensors are the native model's: the two layouts are the same model."""
    import shutil
    from safetensors.torch import save_file
    cfg = model.config
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    out_sd = {
        "transformer.embedding.word_embeddings.weight": sd["model.embed_tokens.weight"],
        "transformer.encoder.final_layernorm.weight": sd["model.norm.weight"],
        "transformer.output_layer.weight": sd["lm_head.weight"],
    }
    for i in range(cfg.num_hidden_layers):
        n, c = f"model.layers.{i}.", f"transformer.encoder.layers.{i}."
        for part in ("weight", "bias"):
            out_sd[f"{c}self_attention.query_key_value.{part}"] = torch.cat(
                [sd[f"{n}self_attn.{p}_proj.{part}"] for p in ("q", "k", "v")], 0)
        out_sd[f"{c}self_attention.dense.weight"] = sd[f"{n}self_attn.o_proj.weight"]
        out_sd[f"{c}mlp.dense_h_to_4h.weight"] = sd[f"{n}mlp.gate_up_proj.weight"]
        out_sd[f"{c}mlp.dense_4h_to_h.weight"] = sd[f"{n}mlp.down_proj.weight"]
        out_sd[f"{c}input_layernorm.weight"] = sd[f"{n}input_layernorm.weight"]
        out_sd[f"{c}post_attention_layernorm.weight"] = sd[f"{n}post_attention_layernorm.weight"]
    d = os.path.join(out, "chatglm")
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out_sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    chat = dict(
        model_type="chatglm", architectures=["ChatGLMModel"], num_layers=cfg.num_hidden_layers,
        padded_vocab_size=cfg.vocab_size, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.intermediate_size, kv_channels=cfg.head_dim, num_attention_heads=cfg.num_attention_heads,
        multi_query_attention=True, multi_query_group_num=cfg.num_key_value_heads, seq_length=cfg.max_position_embeddings,
        layernorm_epsilon=cfg.rms_norm_eps, rmsnorm=True, add_qkv_bias=True, add_bias_linear=False,
        post_layer_norm=True, apply_residual_connection_post_layernorm=False, original_rope=True,
        rope_ratio=theta / 10000.0, bos_token_id=1, eos_token_id=2, pad_token_id=0, torch_dtype="float32")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(chat, f, indent=2)
        f.write("\n")
    shutil.copy(os.path.join(native_dir, "reference.safetensors"), os.path.join(d, "reference.safetensors"))
    print("chatglm: the glm weights in ChatGLM's layout, the glm reference")


def stories_greedy(hf_dir, out, device, n):
    model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    prompt = [1, 403, 407, 261, 378]  # BOS + "Once upon a time" with tok512 (llama2.c encoding)
    with torch.no_grad():
        seq = model.generate(torch.tensor([prompt], device=device), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    ids = seq[0, len(prompt):].tolist()
    with open(os.path.join(out, "stories260K_greedy.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "new_ids": ids, "transformers": transformers.__version__,
                   "torch": torch.__version__, "device": str(device)}, f)
        f.write("\n")
    print(f"stories260K greedy: {ids}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="test/fixtures/models", help="output folder")
    ap.add_argument("--stories", default=None, help="stories260K HF directory (../shared/reference/stories260K/hf)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--greedy-tokens", type=int, default=60)
    ap.add_argument("--only", default=None,
                    help="comma-separated fixture names to make (default: all); 'chatglm' comes with 'glm'")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    known = set(CONFIGS) | set(FAMILIES) | {"chatglm"}
    if only and not only <= known:
        ap.error(f"--only: unknown fixture(s) {sorted(only - known)} (known: {sorted(known)})")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    for i, (name, (cfg_cls, model_cls, kwargs)) in enumerate(CONFIGS.items()):
        if only is None or name in only:
            build(name, cfg_cls, model_cls, kwargs, args.out, device, args.seed + 10 * i)
    for i, (name, (cfg_name, model_name, kwargs)) in enumerate(FAMILIES.items()):
        if only is not None and name not in only and not (name == "glm" and "chatglm" in only):
            continue
        cfg_cls, model_cls = getattr(transformers, cfg_name), getattr(transformers, model_name)
        model = build(name, cfg_cls, model_cls, kwargs, args.out, device, args.seed + 100 + 10 * i)
        if name == "glm":  # the rotary part must be half of each head (4 frequencies for head_dim 16)
            inv = getattr(getattr(model.model, "rotary_emb", None), "inv_freq", None)
            if inv is None:
                print("glm: no model.model.rotary_emb.inv_freq to check the rotary share against", file=sys.stderr)
            else:
                assert inv.numel() == kwargs["head_dim"] // 4, f"GLM rotates {2 * inv.numel()} of {kwargs['head_dim']} dims, expected half"
        if name == "glm" and (only is None or "chatglm" in only):
            chatglm_from_glm(model, os.path.join(args.out, name), args.out)
    if args.stories:
        stories_greedy(args.stories, args.out, device, args.greedy_tokens)
    made = f"transformers {transformers.__version__}, torch {torch.__version__} on {device}"
    if only is not None:  # the folder's README stays the full run's: each new fixture records its own provenance
        for name in only | ({"glm"} if "chatglm" in only else set()):
            with open(os.path.join(args.out, name, "provenance.txt"), "w") as f:
                f.write(f"made by scripts/hf_reference.py --only with {made} (fp32, TF32 off, eager attention)\n")
        return
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("Reference fixtures made by `scripts/hf_reference.py` with transformers "
                f"{transformers.__version__}, torch {torch.__version__} on {device} (fp32, TF32 off, eager attention).\n"
                "Each folder: a tiny random HF model (config.json, model.safetensors) and reference.safetensors "
                "(input_ids, attention_mask as F32; logits [2, 8, vocab]). Regenerate, never edit.\n")


if __name__ == "__main__":
    main()
