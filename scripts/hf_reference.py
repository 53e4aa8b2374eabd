#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for the kit's parity tests.

Builds tiny randomly initialised LLaMA (GQA untied, MHA tied, llama3 rope scaling, linear rope
scaling) and OPT (pre-LN with project_in/out, post-LN) models, saves each as an HF directory with
`reference.safetensors` (input_ids, attention_mask, logits: fp32, batch of 2 with the second row
right-padded), and, when the shared stories260K HF directory is given, transformers' greedy
continuation of BOS + "Once upon a time" (`stories260K_greedy.json`).

Run on the GPU host (torch + transformers):
    python3 scripts/hf_reference.py --out "$OUT/models" --stories ../shared/reference/stories260K/hf
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
    save_tensors(os.path.join(d, "reference.safetensors"),
                 {"input_ids": ids.float(), "attention_mask": mask.float(), "logits": logits})
    print(f"{name}: logits {tuple(logits.shape)} max |logit| {logits.abs().max().item():.3f}")


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
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    for i, (name, (cfg_cls, model_cls, kwargs)) in enumerate(CONFIGS.items()):
        build(name, cfg_cls, model_cls, kwargs, args.out, device, args.seed + 10 * i)
    if args.stories:
        stories_greedy(args.stories, args.out, device, args.greedy_tokens)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("Reference fixtures made by `scripts/hf_reference.py` with transformers "
                f"{transformers.__version__}, torch {torch.__version__} on {device} (fp32, TF32 off, eager attention).\n"
                "Each folder: a tiny random HF model (config.json, model.safetensors) and reference.safetensors "
                "(input_ids, attention_mask as F32; logits [2, 8, vocab]). Regenerate, never edit.\n")


if __name__ == "__main__":
    main()
