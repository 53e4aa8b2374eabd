#!/usr/bin/env python3
"""PyTorch scorer for scripts/bench-eval.ts: scores the kit's recorded token requests with the same
model and the SAME batches, times each task, and writes per-request log-probabilities.

Input: the directory scripts/bench-eval.ts exports (lib/eval/scorer-bench.ts writeExport):
  manifest.json  format, model, batching (maxLength, vocabSize, padId, and how the plan was made),
                 torch (the model to load: {"hf": DIR} or {"random_config": {...}, "seed": S}),
                 warmup (one continuation request), tasks: name, kind (continuation | next_token),
                 n, tokens (file), ctx_len[], tail_len[] (continuation length or candidate count),
                 order[] and batches[[T, count], ...] (the kit's batch plan)
  <k>-<task>.i32 little-endian int32: each request's context, then its continuation/candidates.

Rows and batches (one rule, decided on the kit side and executed here as given):
  - continuation: the last maxLength + 1 tokens of context + continuation are kept; the model
    reads all but the last; the continuation's tokens (its last maxLength when it is longer) are
    scored at the positions predicting them. next_token: the last maxLength context tokens; each
    candidate is read from the last position's distribution.
  - batches are consecutive slices of `order` (longest row first) of `count` rows run at length
    T: right-padded with padId and an attention mask, or no mask when every row has length T.
    They are the kit's own batches (lib/eval/scorer-bench.ts): the tfjs TensorScorer's rule
    (token, logit and attention-score budgets, T padded to a multiple of padMultiple), or, for
    the WebGPU executor (which packs rows unpadded into steps by its token budget), the steps it
    reported, each padded here to its longest row.
  - per batch: the hidden states of the batch, the LM head and log_softmax only at the scored
    positions (as the executor; LLaMA and OPT, else the full [B, T, V] logits), in fp32 with TF32
    off; gathers summed per request in float64 on the host; greedy = every scored token's log-prob
    >= its position's max (the kit's rule; ties count as greedy).
Scored tokens: per continuation request the tokens scored, per next-token request 1.
Timing: per task, torch.cuda.synchronize() before and after everything from building the rows to
the results on the host; the model load and one warm-up request (the manifest's) are excluded.

Output (--out): JSON {format, backend (cuda | cpu | python), device, torch, transformers, dtype, model_load_s, tasks: [{name, kind,
n_requests, scored_tokens, wall_s, batches, logprobs, greedy}]}; logprobs per request (continuation:
the sum; next_token: one per candidate), null where not finite.

    python3 scripts/py/score_torch.py --export tmp/bench-eval/stories260K --out tmp/bench-eval/stories260K/torch.json

--fake-bigram TABLE.json replaces the model by a pure-Python bigram logits table (logits at a
position = TABLE[token there]) so the file handling, rows, plan and gathers can be tested without
torch (test/bench-eval.test.ts).
"""
import argparse
import json
import math
import os
import sys
import time
from array import array

from hf_compat import rope_kwargs

EXPORT_FORMAT = "llmcb-bench-eval-requests/1"
TORCH_FORMAT = "llmcb-bench-eval-torch/1"


# ---------------------------------------------------------------------------------------------
# Pure parts (no torch): reading the export, rows, the plan, per-request sums.

def read_manifest(export_dir):
    with open(os.path.join(export_dir, "manifest.json")) as f:
        m = json.load(f)
    if m.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{export_dir}/manifest.json: format {m.get('format')!r}, expected {EXPORT_FORMAT!r}")
    return m


def read_requests(export_dir, task):
    """[(context, tail)] of one task, from its int32 file and the manifest's lengths."""
    ids = array("i")
    if ids.itemsize != 4:
        raise RuntimeError("array('i') is not 32-bit on this platform")
    path = os.path.join(export_dir, task["tokens"])
    with open(path, "rb") as f:
        ids.frombytes(f.read())
    if sys.byteorder != "little":
        ids.byteswap()
    ctx_len, tail_len = task["ctx_len"], task["tail_len"]
    if len(ctx_len) != task["n"] or len(tail_len) != task["n"]:
        raise ValueError(f"{task['name']}: {len(ctx_len)}/{len(tail_len)} lengths for {task['n']} requests")
    if sum(ctx_len) + sum(tail_len) != len(ids):
        raise ValueError(f"{path}: {len(ids)} ids, the lengths say {sum(ctx_len) + sum(tail_len)}")
    out, p = [], 0
    for c, t in zip(ctx_len, tail_len):
        out.append((ids[p:p + c].tolist(), ids[p + c:p + c + t].tolist()))
        p += c + t
    return out


def model_row(kind, context, tail, max_length):
    """(input ids, scored positions, tokens read there) of one request (the rule in the header)."""
    if not tail:
        raise ValueError("empty continuation/candidates")
    if kind == "continuation":
        # The recorded context may be empty when the continuation alone overflows the window.
        if len(context) + len(tail) < 2:
            raise ValueError("a continuation request needs at least 2 tokens")
        full = context + tail
        start = max(0, len(full) - 1 - max_length)
        inp = full[start:-1]
        scored = tail[-len(inp):]
        first = len(inp) - len(scored)
        return inp, list(range(first, first + len(scored))), scored
    if kind == "next_token":
        if not context:
            raise ValueError("empty context")
        inp = context[-max_length:]
        return inp, [len(inp) - 1] * len(tail), list(tail)
    raise ValueError(f"unknown request kind {kind!r}")


def plan_batches(task, rows, max_length):
    """[(T, [request indices])] from the exported plan, checked against the rows."""
    n = task["n"]
    order = task["order"]
    if sorted(order) != list(range(n)):
        raise ValueError(f"{task['name']}: the plan's order is not a permutation of its {n} requests")
    out, i = [], 0
    for T, count in task["batches"]:
        idx = order[i:i + count]
        if count < 1 or len(idx) != count:
            raise ValueError(f"{task['name']}: batch of {count} rows at position {i} of {n}")
        if T > max_length:
            raise ValueError(f"{task['name']}: batch length {T} exceeds maxLength {max_length}")
        longest = max(len(rows[k][0]) for k in idx)
        if longest > T:
            raise ValueError(f"{task['name']}: a row of {longest} tokens in a batch of length {T}")
        out.append((T, idx))
        i += count
    if i != n:
        raise ValueError(f"{task['name']}: the plan's batches hold {i} rows for {n} requests")
    return out


def batch_arrays(rows, idx, T, pad_id):
    """Flat ids [B*T], mask [B*T] or None (no row padded), and the flat (b*T + position) and token
    of every scored position, in row order."""
    B = len(idx)
    ids = [pad_id] * (B * T)
    mask = [0] * (B * T)
    flat_pos, flat_tok = [], []
    for b, k in enumerate(idx):
        inp, pos, tok = rows[k]
        ids[b * T:b * T + len(inp)] = inp
        mask[b * T:b * T + len(inp)] = [1] * len(inp)
        flat_pos.extend(b * T + p for p in pos)
        flat_tok.extend(tok)
    full = all(len(rows[k][0]) == T for k in idx)
    return ids, (None if full else mask), flat_pos, flat_tok


def finite_or_none(x):
    return x if math.isfinite(x) else None


def score_task(task, requests, batching, run_batch):
    """Runs one task's batches through run_batch(ids, mask, B, T, flat_pos, flat_tok) -> (picked,
    best) lists; returns (logprobs, greedy or None, scored tokens, batches)."""
    L = batching["maxLength"]
    kind = task["kind"]
    rows = [model_row(kind, c, t, L) for c, t in requests]
    plan = plan_batches(task, rows, L)
    picked_of = [None] * len(rows)
    best_of = [None] * len(rows)
    for T, idx in plan:
        ids, mask, flat_pos, flat_tok = batch_arrays(rows, idx, T, batching["padId"])
        picked, best = run_batch(ids, mask, len(idx), T, flat_pos, flat_tok)
        p = 0
        for k in idx:
            m = len(rows[k][1])
            picked_of[k] = picked[p:p + m]
            best_of[k] = best[p:p + m]
            p += m
    if kind == "continuation":
        logprobs = [finite_or_none(math.fsum(p)) for p in picked_of]
        greedy = [all(x >= y for x, y in zip(p, b)) for p, b in zip(picked_of, best_of)]
        scored = sum(len(r[1]) for r in rows)
        return logprobs, greedy, scored, len(plan)
    logprobs = [[finite_or_none(x) for x in p] for p in picked_of]
    return logprobs, None, len(rows), len(plan)


def bigram_runner(table):
    """A pure-Python stand-in model: the logits at a position are table[token at that position]."""
    logp = []
    for row in table:
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        logp.append([x - lse for x in row])

    def run(ids, mask, B, T, flat_pos, flat_tok):
        picked = [logp[ids[q]][t] for q, t in zip(flat_pos, flat_tok)]
        best = [max(logp[ids[q]]) for q in flat_pos]
        return picked, best

    return run


# ---------------------------------------------------------------------------------------------
# PyTorch

def load_torch_model(spec, device):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    if "hf" in spec:
        try:
            model = AutoModelForCausalLM.from_pretrained(spec["hf"], dtype=torch.float32, attn_implementation="sdpa")
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(spec["hf"], torch_dtype=torch.float32, attn_implementation="sdpa")
        return model.to(device).eval(), spec["hf"]
    keys = {k: v for k, v in spec["random_config"].items() if k != "model_type"}
    if spec["random_config"].get("model_type", "llama") != "llama":
        raise ValueError("random models: only model_type llama")
    cfg = LlamaConfig(**rope_kwargs(keys))
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(spec.get("seed", 0))
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    return model, f"random LlamaForCausalLM (seed {spec.get('seed', 0)})"


def torch_runner(model, device, vocab):
    """run(ids, mask, B, T, flat_pos, flat_tok) -> (picked, best) on the model. LLaMA and OPT: the
    decoder's final hidden states, then the LM head and log_softmax at the scored positions only
    (their CausalLM forward is lm_head(decoder output), nothing after it); other models: the full
    [B, T, V] logits."""
    import torch
    head = model.get_output_embeddings()
    rows_only = model.config.model_type in ("llama", "opt") and head is not None

    def run(ids, mask, B, T, flat_pos, flat_tok):
        x = torch.tensor(ids, dtype=torch.long, device=device).view(B, T)
        m = None if mask is None else torch.tensor(mask, dtype=torch.long, device=device).view(B, T)
        rows = torch.tensor(flat_pos, dtype=torch.long, device=device)
        toks = torch.tensor(flat_tok, dtype=torch.long, device=device)
        with torch.inference_mode():
            if rows_only:
                h = model.base_model(input_ids=x, attention_mask=m, use_cache=False).last_hidden_state  # [B, T, D]
                at, inv = torch.unique(rows, return_inverse=True)  # next-token candidates share a row
                logp = torch.log_softmax(head(h.reshape(B * T, -1)[at]).float(), dim=-1)  # [R, V]
            else:
                logits = model(input_ids=x, attention_mask=m, use_cache=False).logits  # [B, T, V]
                logp = torch.log_softmax(logits.float(), dim=-1).view(B * T, vocab)
                inv = rows
            picked = logp[inv, toks]
            best = logp.max(dim=-1).values[inv]
            return picked.double().tolist(), best.double().tolist()

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="directory written by scripts/bench-eval.ts (manifest.json)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--fake-bigram", default=None, help="JSON [V][V] logits table instead of a model (tests; no torch)")
    args = ap.parse_args()

    m = read_manifest(args.export)
    batching = m["batching"]
    tasks = [(t, read_requests(args.export, t)) for t in m["tasks"]]
    warm = m["warmup"]
    warm_task = {"name": "warmup", "kind": "continuation", "n": 1, "order": [0],
                 "batches": [[min(len(warm["context"]) + len(warm["continuation"]) - 1, batching["maxLength"]), 1]]}

    if args.fake_bigram:
        with open(args.fake_bigram) as f:
            table = json.load(f)
        if len(table) != batching["vocabSize"]:
            raise ValueError(f"{args.fake_bigram}: {len(table)} rows for a vocabulary of {batching['vocabSize']}")
        run, sync = bigram_runner(table), (lambda: None)
        info = {"backend": "python", "device": "cpu (pure-Python bigram table)", "torch": "none", "transformers": "none",
                "dtype": "float64 (Python)", "model_load_s": 0.0, "model": args.fake_bigram}
    else:
        import torch
        import transformers
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the kit computes in fp32)
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        spec = m["torch"]
        if not spec:
            raise ValueError(f"{args.export}/manifest.json names no model for PyTorch")
        t0 = time.perf_counter()
        model, what = load_torch_model(spec, device)
        cfg = model.config
        if cfg.vocab_size != batching["vocabSize"]:
            raise ValueError(f"{what}: vocabulary {cfg.vocab_size}, the kit's {batching['vocabSize']}")
        if cfg.max_position_embeddings < batching["maxLength"]:
            raise ValueError(f"{what}: context {cfg.max_position_embeddings} below the kit's maxLength {batching['maxLength']}")
        cuda = device.startswith("cuda")
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        load_s = time.perf_counter() - t0
        run = torch_runner(model, device, cfg.vocab_size)
        info = {"backend": "cuda" if cuda else "cpu", "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                "torch": torch.__version__,
                "transformers": transformers.__version__, "dtype": "float32 (TF32 off), sdpa attention, logits at scored positions",
                "model_load_s": load_s, "model": what}
        print(f"[score_torch] {what} on {info['device']} loaded in {load_s:.1f} s", file=sys.stderr, flush=True)

    # Warm-up (untimed): the manifest's one short request, as the kit does before its first task.
    score_task(warm_task, [(warm["context"], warm["continuation"])], batching, run)
    sync()

    results = []
    for task, requests in tasks:
        sync()
        t0 = time.perf_counter()
        logprobs, greedy, scored, nb = score_task(task, requests, batching, run)
        sync()
        wall = time.perf_counter() - t0
        r = {"name": task["name"], "kind": task["kind"], "n_requests": task["n"], "scored_tokens": scored,
             "wall_s": wall, "batches": nb, "logprobs": logprobs}
        if greedy is not None:
            r["greedy"] = greedy
        results.append(r)
        print(f"[score_torch] {task['name']}: {task['n']} requests, {scored} scored tokens in {nb} batches, "
              f"{wall:.3f} s ({scored / wall if wall > 0 else float('inf'):.0f} tok/s)", file=sys.stderr, flush=True)

    out = {"format": TORCH_FORMAT, **info, "tasks": results}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, allow_nan=False)
        f.write("\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
