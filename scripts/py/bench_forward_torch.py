#!/usr/bin/env python3
"""PyTorch reference for scripts/bench-forward.ts: a randomly initialised LLaMA-style model
(transformers' LlamaForCausalLM from a config.json-style dict) on the GPU, prefill and KV-cache
greedy decode throughput in fp32 (TF32 off) and bf16. Prints one JSON object per dtype on stdout.

    python3 scripts/py/bench_forward_torch.py --config '{"hidden_size": 2048, ...}' \
        --prefill 512 --decode 64 --reps 10 --warmup-ms 1000 --dtypes fp32,bf16
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from hf_compat import rope_kwargs


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench(cfg_dict, dtype_name, prefill, decode, reps, device, warmup_ms):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    keys = {k: v for k, v in cfg_dict.items() if k != "model_type"}
    cfg = LlamaConfig(**rope_kwargs(keys))
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(3, cfg.vocab_size, (1, prefill), generator=g).to(device)
    with torch.no_grad():
        # warm-up as the kit's (two runs and warmup_ms at least: the GPU back at sustained clocks)
        t0, n = time.perf_counter(), 0
        while n < 2 or (time.perf_counter() - t0) * 1000 < warmup_ms:
            model(ids)
            sync()
            n += 1
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(ids)
            sync()
            times.append(time.perf_counter() - t0)
        prefill_s = statistics.median(times)
        # Decode: prefill once, then one token per step with the KV cache, reading each argmax back
        # to the host (as the kit's generate does).
        decode_times = []
        for _ in range(max(1, reps // 2)):
            out = model(ids, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.item()
            sync()
            t0 = time.perf_counter()
            for _ in range(decode):
                out = model(nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                nxt.item()
            sync()
            decode_times.append(time.perf_counter() - t0)
        decode_s = statistics.median(decode_times)
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {
        "engine": "pytorch", "dtype": dtype_name, "params": params, "prefill_tokens": prefill,
        "decode_tokens": decode, "prefill_s": prefill_s, "prefill_tok_s": prefill / prefill_s,
        "prefill_ms": prefill_s * 1000, "prefill_ms_min": min(times) * 1000, "prefill_ms_max": max(times) * 1000,
        "decode_s": decode_s, "decode_tok_s": decode / decode_s,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config.json-style dict (JSON)")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup-ms", type=float, default=1000, help="least warm-up time before timing (after two runs)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the kit's WebGPU matmuls are fp32)
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = json.loads(args.config)
    for dt in args.dtypes.split(","):
        print(json.dumps(bench(cfg, dt, args.prefill, args.decode, args.reps, device, args.warmup_ms)), flush=True)


if __name__ == "__main__":
    main()
