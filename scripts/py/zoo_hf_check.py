#!/usr/bin/env python3
"""Loads zoo models with Hugging Face transformers and writes their logits for a fixed text.

Proof that the kit's saved format is the real HF format: the kit-side check
(scripts/zoo-hf-check.ts) loads the same directories, encodes the same text, and compares the
token ids (exactly) and the logits (max |diff| <= 1e-4).

Usage (GPU host, PyTorch + transformers):
    python3 scripts/py/zoo_hf_check.py --zoo $OUT/models/zoo --models llama-1m opt-1m \
        --out $OUT/data/zoo/hf_logits.json
"""
import argparse
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

# Fixed text: a verse-like English sentence in the corpus' style (not taken from any split).
TEXT = (
    "And the king said unto the prophet, Go thou up to the city, and speak unto the people "
    "all the words which I have commanded thee this day."
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", required=True, help="directory holding the zoo model directories")
    ap.add_argument("--models", nargs="+", default=["llama-1m", "opt-1m"])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    # fp32 everywhere: no TF32 matmuls, so differences come only from summation order.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    out = {
        "text": TEXT,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "models": {},
    }
    for name in args.models:
        d = os.path.join(args.zoo, name)
        if not os.path.isdir(d):
            print(f"{d}: no such model directory", file=sys.stderr)
            return 1
        try:
            tok = AutoTokenizer.from_pretrained(d)
            ids = tok(TEXT, add_special_tokens=False)["input_ids"]
            tok_via = type(tok).__name__
        except Exception as e:  # the tokenizers library reads tokenizer.json directly
            print(f"{name}: AutoTokenizer failed ({e}); using tokenizers.Tokenizer", file=sys.stderr)
            from tokenizers import Tokenizer

            ids = Tokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(TEXT, add_special_tokens=False).ids
            tok_via = "tokenizers.Tokenizer"
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        model.to(args.device).eval()
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=args.device)).logits[0].float().cpu()
        out["models"][name] = {
            "class": type(model).__name__,
            "tokenizer": tok_via,
            "ids": ids,
            "logits": logits.tolist(),  # [T, V]
        }
        print(f"{name}: {type(model).__name__}, {len(ids)} tokens, logits {tuple(logits.shape)}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
