#!/usr/bin/env python3
"""Compression time and GPU memory of the original implementations' algorithms, on an HF model
directory (scripts/build-random-model.ts's LLaMA-2-7B-shaped random model), for
scripts/bench-compress-scale.ts: GPTQ, SparseGPT, Wanda and AWQ at the papers' settings.

Minimal re-implementations written from the published algorithms, keeping what decides their cost
as the original code runs it: the model in fp16 on the host, one block at a time moved to the GPU
(llama_sequential), the calibration activations resident on the GPU in fp16 (inps/outs), the
calibration windows run through each block one window at a time, Hessians accumulated in fp32
(H = 2/n Σ XᵀX as a running mean), solvers in fp32 with percdamp 0.01 and blocksize 128:
- GPTQ (Frantar et al. 2023, Alg. 1, lazy batch updates): scripts/reference_quant.py's gptq_quant;
- SparseGPT (Frantar & Alistarh 2023): unstructured mask per block of 128 columns from the threshold
  of w²/[H⁻¹]²_jj, N:M per group of M columns, OBS updates as GPTQ's;
- Wanda (Sun et al. 2023): per-channel ‖X_j‖² running mean, |W|·‖X_j‖ sorted per output row;
- AWQ (Lin et al. 2024): the scale search over 20 ratios per linear group (reference_quant.py's
  awq_block, every window in one batch as llm-awq runs it), then the clipping search (max-shrink 0.5,
  20 steps, 512 sampled tokens, 256 output channels per batch, q/k skipped), then group quantization.
Calibration: seeded random token ids (the model is random too: this measures cost, not quality).
Prints one JSON object: method, config, time_s (whole compression, calibration forward included,
CUDA synchronised), max_memory_allocated (torch.cuda.max_memory_allocated), device, versions.

    python3 scripts/py/compress_scale_torch.py --model tmp/models/random-llama2-7b --method gptq \
        --config '{"bits": 4, "group": 128}' [--nsamples 128 --seqlen 2048 --seed 0 --layers N]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reference_quant import awq_block, awq_quant, block_inputs_of, gptq_quant, linears_of  # noqa: E402
from reference_sparsity import nm_mask, parse_pattern, run_layer  # noqa: E402

DEV = torch.device("cuda")


class Stop(Exception):
    pass


@torch.no_grad()
def block0_inputs(model, calib):
    """inps [n, T, hidden] fp16 on the GPU and the block kwargs, with only the embedding on the GPU (GPTQ's Catcher)."""
    inner = model.model
    inner.embed_tokens.to(DEV)
    if hasattr(inner, "rotary_emb"):
        inner.rotary_emb.to(DEV)
    n, T = calib.shape
    inps = torch.zeros((n, T, model.config.hidden_size), dtype=torch.float16, device=DEV)
    seen = {}
    first = inner.layers[0]

    class Catcher(nn.Module):
        def __init__(self):
            super().__init__()
            if hasattr(first, "attention_type"):
                self.attention_type = first.attention_type

        def forward(self, x, *args, **kwargs):
            inps[seen["j"]] = x[0]
            seen["kwargs"] = kwargs
            raise Stop

    inner.layers[0] = Catcher()
    for j in range(n):
        seen["j"] = j
        try:
            inner(calib[j:j + 1].to(DEV))
        except Stop:
            pass
    inner.layers[0] = first
    inner.embed_tokens.cpu()
    kwargs = {k: v for k, v in seen["kwargs"].items() if k not in ("past_key_values", "past_key_value", "use_cache")}
    return inps, kwargs


@torch.no_grad()
def forward_each(layer, inps, outs, kwargs):
    for j in range(inps.shape[0]):
        outs[j] = run_layer(layer, inps[j:j + 1], kwargs)[0]


@torch.no_grad()
def hessians(layer, inps, outs, kwargs):
    """H = 2/n Σ XᵀX per linear, accumulated as the reference add_batch (fp32 running mean over windows)."""
    lin = linears_of(layer)
    H = {k: torch.zeros((m.in_features, m.in_features), device=DEV) for k, m in lin.items()}
    count = {k: 0 for k in lin}

    def hook(name):
        def f(mod, inp, out):
            x = inp[0].reshape(-1, inp[0].shape[-1]).t().float()
            H[name] *= count[name] / (count[name] + 1)
            count[name] += 1
            x = math.sqrt(2 / count[name]) * x
            H[name] += x.matmul(x.t())
        return f
    hs = [m.register_forward_hook(hook(k)) for k, m in lin.items()]
    forward_each(layer, inps, outs, kwargs)
    for h in hs:
        h.remove()
    return lin, H


def sparsegpt_prune_fp32(W, H, pat, percdamp=0.01, blocksize=128):
    W = W.clone().float()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        if pat[0] == "ratio":
            tmp = W1 ** 2 / d.reshape(1, -1) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * pat[1])]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            if pat[0] == "nm" and i % pat[2] == 0:
                tmp = W1[:, i:i + pat[2]] ** 2 / d[i:i + pat[2]].reshape(1, -1) ** 2
                mask1[:, i:i + pat[2]] |= nm_mask(tmp, pat[1], pat[2])
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d[i]
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


@torch.no_grad()
def wanda_layer(layer, inps, outs, kwargs, pat):
    lin = linears_of(layer)
    scaler = {k: torch.zeros(m.in_features, device=DEV) for k, m in lin.items()}
    count = {k: 0 for k in lin}

    def hook(name):
        def f(mod, inp, out):
            x = inp[0].reshape(-1, inp[0].shape[-1]).t().float()
            scaler[name] *= count[name] / (count[name] + 1)
            count[name] += 1
            scaler[name] += torch.norm(x, p=2, dim=1) ** 2 / count[name]
        return f
    hs = [m.register_forward_hook(hook(k)) for k, m in lin.items()]
    forward_each(layer, inps, outs, kwargs)
    for h in hs:
        h.remove()
    for k, m in lin.items():
        metric = m.weight.data.abs() * torch.sqrt(scaler[k].reshape(1, -1))
        if pat[0] == "nm":
            mask = nm_mask(metric.float(), pat[1], pat[2])
        else:
            idx = torch.sort(metric, dim=-1, stable=True)[1][:, :int(metric.shape[1] * pat[1])]
            mask = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, idx, True)
        m.weight.data[mask] = 0
    forward_each(layer, inps, outs, kwargs)


@torch.no_grad()
def awq_clip(layer, feats, bits, group, n_grid=20, max_shrink=0.5, n_tokens=512):
    """AWQ's clipping search per output channel and group (q/k skipped, as llm-awq)."""
    for name, m in linears_of(layer).items():
        if "q_proj" in name or "k_proj" in name:
            continue
        w_all = m.weight.data
        co, ci = w_all.shape
        gs = group if group > 0 else ci
        x = feats[name].reshape(-1, ci)
        x = x[0::max(1, x.shape[0] // n_tokens)][:n_tokens].reshape(1, -1, ci // gs, gs)  # [1, tokens, ng, gs]
        ob = 256 if co % 256 == 0 else 64
        best_all = []
        for b in range(co // ob):
            w = w_all[b * ob:(b + 1) * ob].reshape(ob, 1, ci // gs, gs)
            org_max = w.abs().amax(dim=-1, keepdim=True)
            best = org_max.clone()
            min_errs = torch.ones_like(org_max) * 1e9
            org_out = (x * w).sum(dim=-1)
            for s in range(int(max_shrink * n_grid)):
                mx = org_max * (1 - s / n_grid)
                cur = torch.clamp(w, -mx, mx)
                q = awq_quant(cur.reshape(ob, ci), bits, gs).reshape(w.shape)
                err = (((x * q).sum(dim=-1) - org_out) ** 2).mean(dim=1).view(min_errs.shape)
                better = err < min_errs
                min_errs[better] = err[better]
                best[better] = mx[better]
            best_all.append(best)
        mx = torch.cat(best_all, dim=0)  # [co, 1, ng, 1]
        w = w_all.reshape(co, 1, ci // gs, gs)
        m.weight.data = torch.clamp(w, -mx, mx).reshape(co, ci)


@torch.no_grad()
def awq_layer(layer, inps, outs, kwargs, bits, group):
    lin = linears_of(layer)
    feats, outs[:] = block_inputs_of(layer, lin, inps, kwargs)  # every window in one batch, as llm-awq; dense outputs go forward
    awq_block(layer, inps, kwargs, feats, lin, bits, group)
    awq_clip(layer, feats, bits, group)
    for m in lin.values():
        m.weight.data = awq_quant(m.weight.data, bits, group)


@torch.no_grad()
def compress(model, calib, method, cfg):
    inps, kwargs = block0_inputs(model, calib)
    outs = torch.zeros_like(inps)
    pat = parse_pattern(cfg["pattern"]) if "pattern" in cfg else None
    for layer in model.model.layers:
        layer.to(DEV)
        if method in ("gptq", "sparsegpt"):
            lin, H = hessians(layer, inps, outs, kwargs)
            for k, m in lin.items():
                W = m.weight.data.float()
                Q = gptq_quant(W, H[k], cfg["bits"], cfg["group"]) if method == "gptq" else sparsegpt_prune_fp32(W, H[k], pat)
                m.weight.data = Q.to(m.weight.dtype)
                del H[k]
            forward_each(layer, inps, outs, kwargs)  # the compressed block's outputs go forward
        elif method == "wanda":
            wanda_layer(layer, inps, outs, kwargs, pat)
        elif method == "awq":
            awq_layer(layer, inps, outs, kwargs, cfg["bits"], cfg["group"])
        else:
            raise SystemExit(f"unknown method {method} (gptq, sparsegpt, wanda, awq)")
        layer.cpu()
        torch.cuda.empty_cache()
        inps, outs = outs, inps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--method", required=True, choices=["gptq", "sparsegpt", "wanda", "awq"])
    ap.add_argument("--config", default="{}", help='JSON: {"bits": 4, "group": 128} or {"pattern": "50%%"}')
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=0, help="only the first N blocks (0: all)")
    a = ap.parse_args()
    cfg = json.loads(a.config)
    import transformers
    from transformers import LlamaForCausalLM
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float16, low_cpu_mem_usage=True)
    model.eval()
    model.config.use_cache = False
    if a.layers:
        model.model.layers = model.model.layers[: a.layers]
    g = torch.Generator().manual_seed(a.seed)
    calib = torch.randint(0, model.config.vocab_size, (a.nsamples, a.seqlen), generator=g)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    compress(model, calib, a.method, cfg)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "method": a.method, "config": cfg, "time_s": seconds, "max_memory_allocated": torch.cuda.max_memory_allocated(),
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
        "nsamples": a.nsamples, "seqlen": a.seqlen, "layers": len(model.model.layers), "calib": f"random-ids:{a.nsamples}x{a.seqlen}:seed{a.seed}",
    }))


if __name__ == "__main__":
    main()
