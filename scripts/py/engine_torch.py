#!/usr/bin/env python3
"""Track 5's PyTorch engine (lib/efficiency/engines/pytorch.ts): a worker that loads an HF model
directory with transformers (eager, its default attention, no torch.compile: what a researcher runs
instead of an inference engine) in fp32 (TF32 off) or bf16 and times greedy generation.

Line protocol: one JSON request per line on stdin, one JSON answer per line on stdout; it exits at
the end of stdin.
  {"op": "probe"}
      -> {"ok": true, "device": ..., "cuda": bool, "torch": ..., "transformers": ...}
  {"op": "measure", "model": DIR, "dtype": "fp32"|"bf16", "prompts": [[ids...], ...],
   "new_tokens": N, "warmup": W, "warmup_min_ms": MS, "repeats": R}
      -> {"ok": true, "runs": [[[ms, ...] per sequence] per timed run], "peak_memory_bytes": int|null,
          "memory_what": str, "notes": [...]}
  any failure -> {"ok": false, "error": "..."}
Token times are ms from the start of the run to each new token's id on the host (one readback per
step, as the kit's and llama.cpp's engines); every sequence of a batch gets its token at each step.
"""
import json
import sys
import time


def sync(torch):
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def probe():
    import torch
    import transformers
    cuda = torch.cuda.is_available()
    return {"ok": True, "cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__}


def generate_once(torch, model, prompt, new_tokens):
    """Greedy generation of new_tokens ids after the prompt batch, with the KV cache; per-sequence token times (ms)."""
    times = []
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        nxt.tolist()  # the ids on the host: the step is done
        times.append((time.perf_counter() - t0) * 1000)
        past = out.past_key_values
        for _ in range(new_tokens - 1):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.tolist()
            times.append((time.perf_counter() - t0) * 1000)
    return [list(times) for _ in range(prompt.shape[0])]


def measure(req):
    import torch
    from transformers import AutoModelForCausalLM
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[req["dtype"]]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lengths = {len(p) for p in req["prompts"]}
    if len(lengths) != 1:
        raise ValueError(f"prompts of one length expected (no padding), got lengths {sorted(lengths)}")
    # Loaded as stored (fp32), then cast: from_pretrained's dtype argument is named differently across
    # transformers versions. Attention is transformers' default for the architecture (SDPA where it has it).
    model = AutoModelForCausalLM.from_pretrained(req["model"]).to(device=device, dtype=dtype).eval()
    arch, attn = type(model).__name__, getattr(model.config, "_attn_implementation", None) or "default"
    try:
        prompt = torch.tensor(req["prompts"], dtype=torch.long, device=device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        done = 0
        while done < req["warmup"] or (req["warmup"] > 0 and (time.perf_counter() - t0) * 1000 < req["warmup_min_ms"]):
            generate_once(torch, model, prompt, req["new_tokens"])
            done += 1
        runs = [generate_once(torch, model, prompt, req["new_tokens"]) for _ in range(req["repeats"])]
        sync(torch)
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    finally:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    notes = [f"transformers {arch} eager (no torch.compile), {attn} attention, {req['dtype']}{' (TF32 off)' if req['dtype'] == 'fp32' else ''}, on {device}"]
    return {"ok": True, "runs": runs, "peak_memory_bytes": peak,
            "memory_what": "PyTorch CUDA allocator peak (torch.cuda.max_memory_allocated: weights, KV cache, activations)" if peak is not None else "not measured on the CPU",
            "notes": notes}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "probe":
                ans = probe()
            elif op == "measure":
                ans = measure(req)
            else:
                ans = {"ok": False, "error": f"unknown op {op!r} (probe, measure)"}
        except Exception as e:  # the answer names it; the worker stays up for the next request
            ans = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
