#!/usr/bin/env python3
"""PyTorch reference numbers for sparsity settings that ../shared/reference/stories260K/reference_ppl.csv
does not list (e.g. 30% / 60% unstructured, 1:4), with the same protocol as that file: magnitude per
matrix (unstructured) or per group of M input columns (N:M), Wanda |W|*||X||_2 compared per output
row, SparseGPT (percdamp 0.01, blocksize 128, adaptive per-block mask, OBS updates) run block by
block on the given 128 calibration windows, each block seeing the pruned previous block's outputs;
WikiText-2 test PPL over floor(n/512) windows of 512 tokens, no BOS.

The algorithms follow the SparseGPT paper (Frantar & Alistarh 2023, Alg. 1) and the Wanda paper
(Sun et al. 2023, Sec. 3), in fp32 with TF32 off. It first reruns the listed rows so that its own
agreement with reference_ppl.csv is visible, then writes a CSV in reference_ppl.csv's format that
scripts/reproduce-reference.ts reads with --py-ref.

GPU host:  python3 scripts/reference_sparsity.py --out $OUT/reference_sparsity.csv
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("LLMCB_SHARED", os.path.join(HERE, "..", "..", "shared"))
LISTED = ["magnitude:50%", "wanda:50%", "sparsegpt:50%", "magnitude:2:4", "wanda:2:4", "sparsegpt:2:4"]
EXTRA = ["magnitude:60%", "wanda:60%", "sparsegpt:60%", "magnitude:30%", "wanda:30%", "sparsegpt:30%", "wanda:1:4", "sparsegpt:1:4"]


def parse_pattern(p):
    if ":" in p:
        n, m = (int(v) for v in p.split(":"))
        if not 0 < n < m:
            raise SystemExit(f"bad N:M pattern {p}")
        return ("nm", n, m)
    r = float(p[:-1]) / 100 if p.endswith("%") else float(p)
    if not 0 < r < 1:
        raise SystemExit(f"sparsity {p} outside (0, 1)")
    return ("ratio", r)


def nm_mask(score, n, m):
    """True where pruned: the n lowest scores of every group of m consecutive columns."""
    rows, cols = score.shape
    groups = score.reshape(rows, cols // m, m)
    idx = torch.topk(groups, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, idx, True)
    return mask.reshape(rows, cols)


def magnitude_prune(w, pat):
    score = w.abs()
    if pat[0] == "nm":
        mask = nm_mask(score, pat[1], pat[2])
    else:
        k = int(w.numel() * pat[1])
        flat = score.flatten()
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.argsort(flat, stable=True)[:k]] = True
        mask = mask.reshape(w.shape)
    return w.masked_fill(mask, 0)


def wanda_prune(w, sumsq, pat):
    score = w.abs() * sumsq.sqrt().reshape(1, -1)
    if pat[0] == "nm":
        mask = nm_mask(score, pat[1], pat[2])
    else:
        k = int(w.shape[1] * pat[1])
        order = torch.argsort(score, dim=1, stable=True)[:, :k]
        mask = torch.zeros_like(score, dtype=torch.bool)
        mask.scatter_(1, order, True)
    return w.masked_fill(mask, 0)


def sparsegpt_prune(w, H, pat, percdamp=0.01, blocksize=128):
    W = w.clone().double()
    H = H.clone().double()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    out = torch.zeros_like(W)
    done = 0  # pruned so far (unstructured: exact count per layer)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        cnt = i2 - i1
        W1 = W[:, i1:i2].clone()
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        mask = torch.zeros_like(W1, dtype=torch.bool)
        if pat[0] == "ratio":
            k = int(rows * i2 * pat[1] + 1e-9) - done
            done += k
            tmp = (W1 ** 2 / d.reshape(1, -1) ** 2).flatten()
            sel = torch.zeros_like(tmp, dtype=torch.bool)
            sel[torch.argsort(tmp, stable=True)[:k]] = True
            mask = sel.reshape(W1.shape)
        Err1 = torch.zeros_like(W1)
        for i in range(cnt):
            if pat[0] == "nm" and i % pat[2] == 0:
                tmp = W1[:, i:i + pat[2]] ** 2 / d[i:i + pat[2]].reshape(1, -1) ** 2
                mask[:, i:i + pat[2]] |= nm_mask(tmp, pat[1], pat[2])
            q = W1[:, i].masked_fill(mask[:, i], 0)
            out[:, i1 + i] = q
            err = (W1[:, i] - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return out.to(w.dtype)


class Stop(Exception):
    pass


def block_inputs(model, ids):
    """Hidden states entering block 0 and the keyword arguments the model passes its blocks."""
    layers = model.model.layers
    seen = {}

    class Catcher(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            if hasattr(inner, "attention_type"):  # some transformers versions pick the mask by it
                self.attention_type = inner.attention_type

        def forward(self, x, *args, **kwargs):
            seen["x"] = x
            seen["kwargs"] = kwargs
            raise Stop

    first = layers[0]
    layers[0] = Catcher(first)
    try:
        model(ids)
    except Stop:
        pass
    layers[0] = first
    return seen["x"], seen["kwargs"]


def run_layer(layer, x, kwargs):
    out = layer(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def prune_model(model, method, pat, calib):
    layers = model.model.layers
    if method == "magnitude":
        for layer in layers:
            for mod in layer.modules():
                if isinstance(mod, nn.Linear):
                    mod.weight.data = magnitude_prune(mod.weight.data, pat)
        return
    x, kwargs = block_inputs(model, calib)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "use_cache")}
    for layer in layers:
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        stats = {}

        def hook(name):
            def f(mod, inp, out):
                a = inp[0].reshape(-1, inp[0].shape[-1]).double()
                if method == "wanda":
                    stats[name] = stats.get(name, 0) + (a ** 2).sum(0)
                else:
                    stats[name] = stats.get(name, 0) + 2 * a.t() @ a / calib.shape[0]
            return f

        handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
        run_layer(layer, x, kwargs)
        for h in handles:
            h.remove()
        for n, m in linears.items():
            w = m.weight.data.float()
            m.weight.data = wanda_prune(w, stats[n].float(), pat) if method == "wanda" else sparsegpt_prune(w, stats[n], pat)
        x = run_layer(layer, x, kwargs)


@torch.no_grad()
def perplexity(model, ids, seqlen=512, batch=32):
    n = len(ids) // seqlen
    t = torch.tensor(ids[: n * seqlen], device="cuda").reshape(n, seqlen)
    nll = 0.0
    for b in range(0, n, batch):
        x = t[b:b + batch]
        logits = model(x).logits.float()
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        nll += loss.item()
    return math.exp(nll / (n * (seqlen - 1)))


def read_reference_ppl(reference):
    """The rows of reference_ppl.csv: (method, config dict, WikiText-2 perplexity)."""
    with open(os.path.join(reference, "reference_ppl.csv")) as f:
        return [(r["method"], json.loads(r["config"]), float(r["wikitext2_ppl"])) for r in csv.DictReader(f)]


def open_reference(reference):
    """TF32 off; a reference directory's calibration windows (on CUDA), test ids, and a loader of its fp32 HF model."""
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    calib = torch.tensor(json.load(open(os.path.join(reference, "calib_wikitext2_valid_128x512.json")))["windows"], device="cuda")
    test_ids = json.load(open(os.path.join(reference, "wikitext2_test_tok512.json")))["test_ids"]
    load = lambda: AutoModelForCausalLM.from_pretrained(os.path.join(reference, "hf"), torch_dtype=torch.float32, attn_implementation="eager").cuda().eval()
    return calib, test_ids, load


def report_ppl(what, ppl, seconds, listed):
    """One setting's line: its PPL, the time it took, and how it compares with reference_ppl.csv's number when that lists it."""
    print(f"{what} ppl {ppl:.4f} ({seconds:.1f} s)" + (f"  reference_ppl.csv {listed} ({(ppl / listed - 1) * 100:+.2f}%)" if listed else ""), flush=True)


def write_ppl_csv(path, rows):
    """Rows (method, config JSON, ppl) as a CSV in reference_ppl.csv's format."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "config", "wikitext2_ppl"])
        w.writerows(rows)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=os.path.join(SHARED, "reference", "stories260K"))
    ap.add_argument("--settings", default=",".join(LISTED + EXTRA))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = {(m, cfg.get("pattern")): ppl for m, cfg, ppl in read_reference_ppl(a.reference)}
    calib, test_ids, load = open_reference(a.reference)
    dense = perplexity(load(), test_ids)
    print(f"dense {dense:.4f} (reference_ppl.csv {ref.get(('dense', None))})", flush=True)
    rows = []
    for s in a.settings.split(","):
        method, p = s.split(":", 1)
        pat = parse_pattern(p)
        label = f"{pat[1]}:{pat[2]}" if pat[0] == "nm" else f"{round(pat[1] * 100, 4):g}%"
        model = load()
        t0 = time.time()
        prune_model(model, method, pat, calib)
        ppl = perplexity(model, test_ids)
        report_ppl(f"{method}:{label}", ppl, time.time() - t0, ref.get((method, label)))
        rows.append((method, json.dumps({"pattern": label}), f"{ppl:.4f}"))
        del model
    write_ppl_csv(a.out, rows)


if __name__ == "__main__":
    sys.exit(main())
