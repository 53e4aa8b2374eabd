#!/usr/bin/env python3
"""Per-request log-likelihoods from Hugging Face transformers, for the kit's evaluator check.

The kit exports token-id requests (so both sides read the same tokens; no tokenizer involved):
    npx tsx scripts/eval.ts --model models/stories260K/stories260K.bin \
        --tasks arc_challenge,arc_easy,hellaswag,piqa,mmlu,qnli,advglue,truthfulqa \
        --data ../shared/datasets --no-hub --limit 3 --seed 1 --backend wasm \
        --export-requests test/fixtures/eval/mc_requests_stories260K.json
(that file is committed). This script scores every request with transformers, one sequence at a
time (no padding, no batching: an independent path), in fp32 with TF32 off:
  - continuation requests: sum over the continuation of log_softmax(logits)[next token], reading
    (context + continuation)[:-1];
  - next-token requests: log_softmax of the logits after the whole context, at each candidate.

Usage (GPU host, PyTorch + transformers):
    python3 scripts/py/eval_mc_reference.py --hf <shared>/reference/stories260K/hf \
        --requests test/fixtures/eval/mc_requests_stories260K.json \
        --out $OUT/mc_reference_stories260K.json
Commit the output as test/fixtures/eval/mc_reference_stories260K.json; test/eval-stories.test.ts
compares the kit against it (relative difference < 1e-4).
"""
import argparse
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True, help="Hugging Face model directory (config.json + model.safetensors)")
    ap.add_argument("--requests", required=True, help="JSON exported by scripts/eval.ts --export-requests")
    ap.add_argument("--out", required=True, help="where to write the reference log-likelihoods (JSON)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(args.requests) as f:
        req = json.load(f)
    for key in ("continuations", "nextToken"):
        if not isinstance(req.get(key), list):
            print(f"{args.requests}: expected a list under '{key}'", file=sys.stderr)
            return 1

    model = AutoModelForCausalLM.from_pretrained(args.hf, torch_dtype=torch.float32).to(args.device).eval()
    max_len = model.config.max_position_embeddings

    def logprobs(ids):
        if len(ids) > max_len:
            raise ValueError(f"request of {len(ids)} tokens exceeds the model context {max_len}")
        x = torch.tensor([ids], dtype=torch.long, device=args.device)
        with torch.no_grad():
            logits = model(input_ids=x).logits[0].float()  # [T, V]
        return torch.log_softmax(logits.double(), dim=-1)  # float64 from here on

    cont = []
    for k, r in enumerate(req["continuations"]):
        full = r["context"] + r["continuation"]
        lp = logprobs(full[:-1])
        n = len(r["continuation"])
        first = len(full) - 1 - n
        targets = torch.tensor(r["continuation"], device=args.device)
        picked = lp[first:first + n].gather(1, targets[:, None])[:, 0]
        greedy = bool((lp[first:first + n].argmax(-1) == targets).all())
        cont.append({"logprob": float(picked.sum()), "greedy": greedy})
    nxt = []
    for r in req["nextToken"]:
        lp = logprobs(r["context"])
        nxt.append({"logprobs": [float(lp[-1, c]) for c in r["candidates"]]})

    out = {
        "model": args.hf,
        "requests": args.requests,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "dtype": "float32 (TF32 off), log-softmax in float64",
        "continuations": cont,
        "nextToken": nxt,
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {len(cont)} continuation and {len(nxt)} next-token references to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
