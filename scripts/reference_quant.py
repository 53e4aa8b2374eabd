#!/usr/bin/env python3
"""PyTorch reference numbers for quantization settings that ../shared/reference/stories260K/reference_ppl.csv
does not list (W3/W2, other group sizes, other SmoothQuant alphas, per-tensor W8A8, AWQ W3/g32), with the
same protocol as that file: GPTQ's asymmetric min-max quantizer per output channel or per group of input
columns (last group may be shorter), all linears of every block; GPTQ with percdamp 0.01, blocksize 128,
no act-order, each block calibrated on the quantized previous block's outputs; AWQ scale search over 20
ratios with AWQ's own quantizer, the FP block outputs fed forward, no clipping; SmoothQuant from the
per-channel activation maxima of the FP model, norm->linears smoothing, W8 per-channel absmax, A8
per-token (or per-tensor) dynamic absmax; WikiText-2 test PPL over floor(n/512) windows of 512, no BOS.

This is an independent PyTorch implementation written from the papers (GPTQ Alg. 1 with lazy batch
updates, AWQ Sec. 3.2, SmoothQuant Sec. 4), in fp32 with TF32 off, on transformers' LlamaForCausalLM.
It first reruns the listed rows so that its own agreement with reference_ppl.csv is visible, then writes a
CSV in reference_ppl.csv's format that scripts/reproduce-reference.ts reads with --py-ref.

GPU host:  python3 scripts/reference_quant.py --out $OUT/reference_quant.csv
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_sparsity import SHARED, block_inputs, open_reference, perplexity, read_reference_ppl, report_ppl, run_layer, write_ppl_csv  # noqa: E402

LISTED = [
    ("rtn", {"bits": 8, "group": -1}), ("gptq", {"bits": 8, "group": -1}), ("rtn", {"bits": 8, "group": 32}),
    ("gptq", {"bits": 8, "group": 32}), ("rtn", {"bits": 4, "group": -1}), ("gptq", {"bits": 4, "group": -1}),
    ("rtn", {"bits": 4, "group": 32}), ("gptq", {"bits": 4, "group": 32}), ("awq", {"bits": 4, "clip": False, "group": -1}),
    ("w8a8-naive", {"act": "per_token"}), ("smoothquant", {"act": "per_token", "alpha": 0.5}),
]
EXTRA = [
    ("rtn", {"bits": 3, "group": -1}), ("gptq", {"bits": 3, "group": -1}), ("rtn", {"bits": 3, "group": 32}),
    ("gptq", {"bits": 3, "group": 32}), ("rtn", {"bits": 2, "group": 32}), ("gptq", {"bits": 2, "group": 32}),
    ("rtn", {"bits": 4, "group": 16}), ("gptq", {"bits": 4, "group": 16}), ("awq", {"bits": 3, "clip": False, "group": -1}),
    ("awq", {"bits": 4, "clip": False, "group": 32}), ("smoothquant", {"act": "per_token", "alpha": 0.25}),
    ("smoothquant", {"act": "per_token", "alpha": 0.75}), ("smoothquant", {"act": "per_token", "alpha": 1.0}),
    ("w8a8-naive", {"act": "per_tensor"}), ("smoothquant", {"act": "per_tensor", "alpha": 0.5}),
]


# ---- weight quantizers ----

def minmax_params(x, bits):
    """GPTQ-style asymmetric min-max over each row of x [rows, k], range forced to contain 0."""
    maxq = 2 ** bits - 1
    zero_ = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    xmin = torch.minimum(x.min(1).values, zero_)
    xmax = torch.maximum(x.max(1).values, zero_)
    both = (xmin == 0) & (xmax == 0)
    xmin[both], xmax[both] = -1, 1
    scale = (xmax - xmin) / maxq
    return scale.unsqueeze(1), torch.round(-xmin / scale).unsqueeze(1)


def qdq(x, scale, zero, bits):
    return scale * (torch.clamp(torch.round(x / scale) + zero, 0, 2 ** bits - 1) - zero)


def rtn_quant(w, bits, group):
    if group == -1:
        return qdq(w, *minmax_params(w, bits), bits)
    out = torch.empty_like(w)
    for i in range(0, w.shape[1], group):
        seg = w[:, i:i + group]
        out[:, i:i + group] = qdq(seg, *minmax_params(seg, bits), bits)
    return out


def awq_quant(w, bits, group):
    """AWQ's quantizer: each row/group's own [min, max] (0 not forced), zero clamped to the code range."""
    maxq = 2 ** bits - 1
    shape = w.shape
    g = w.reshape(-1, group) if group > 0 else w
    mx, mn = g.amax(1, keepdim=True), g.amin(1, keepdim=True)
    scale = (mx - mn).clamp(min=1e-5) / maxq
    zero = (-torch.round(mn / scale)).clamp(0, maxq)
    return ((torch.clamp(torch.round(g / scale) + zero, 0, maxq) - zero) * scale).reshape(shape)


def gptq_quant(w, H, bits, group, percdamp=0.01, blocksize=128):
    W = w.clone().float()
    H = H.clone().float()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    params = minmax_params(W, bits) if group == -1 else None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if group != -1 and c % group == 0:
                # group parameters from the outer W: lazy updates of earlier blocks, not this block's
                params = minmax_params(W[:, c:c + group], bits)
            q = qdq(W1[:, i:i + 1], *params, bits).flatten()
            Q[:, c] = q
            err = (W1[:, i] - q) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q


def linears_of(layer):
    return {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}


def block_inputs_of(layer, lin, x, kwargs):
    """Runs the block on x and keeps each linear's input as [tokens, in] (AWQ's features); returns (features, block output)."""
    feats = {}

    def cap(name):
        def f(mod, inp, out):
            feats[name] = inp[0].reshape(-1, inp[0].shape[-1])
        return f
    hs = [m.register_forward_hook(cap(k)) for k, m in lin.items()]
    try:
        out = run_layer(layer, x, kwargs)
    finally:
        for h in hs:
            h.remove()
    return feats, out


@torch.no_grad()
def quantize_weights(model, method, cfg, calib):
    layers = model.model.layers
    bits, group = cfg["bits"], cfg["group"]
    if method == "rtn":
        for layer in layers:
            for m in linears_of(layer).values():
                m.weight.data = rtn_quant(m.weight.data, bits, group)
        return
    x, kwargs = block_inputs(model, calib)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "use_cache")}
    for layer in layers:
        lin = linears_of(layer)
        if method == "gptq":
            H = {}
            n = calib.shape[0]

            def hook(name):
                def f(mod, inp, out):
                    a = inp[0].reshape(-1, inp[0].shape[-1]).float()
                    H[name] = H.get(name, 0) + 2 * a.t() @ a / n
                return f
            hs = [m.register_forward_hook(hook(k)) for k, m in lin.items()]
            run_layer(layer, x, kwargs)
            for h in hs:
                h.remove()
            for k, m in lin.items():
                m.weight.data = gptq_quant(m.weight.data, H[k], bits, group)
            x = run_layer(layer, x, kwargs)  # quantized block's outputs
        else:  # awq: search scales on the FP block, feed its FP outputs forward
            feats, nxt = block_inputs_of(layer, lin, x, kwargs)
            awq_block(layer, x, kwargs, feats, lin, bits, group)
            x = nxt
    if method == "awq":
        for layer in layers:
            for m in linears_of(layer).values():
                m.weight.data = awq_quant(m.weight.data, bits, group)


def awq_block(layer, x, kwargs, feats, lin, bits, group, n_grid=20):
    at, mlp = layer.self_attn, layer.mlp

    def through(target):
        """Output of `target` applied to its own input, after running the whole block on x."""
        box = {}
        h = target.register_forward_hook(lambda m, i, o: box.__setitem__("y", o.reshape(-1, o.shape[-1])))
        run_layer(layer, x, kwargs)
        h.remove()
        return box["y"]

    groups = [("norm", layer.input_layernorm, [at.q_proj, at.k_proj, at.v_proj], "self_attn.q_proj", lambda: through(at.o_proj))]
    if at.v_proj.weight.shape == at.o_proj.weight.shape:
        groups.append(("linear", at.v_proj, [at.o_proj], "self_attn.o_proj", None))
    groups.append(("norm", layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], "mlp.gate_proj", lambda: through(mlp.down_proj)))
    groups.append(("linear", mlp.up_proj, [mlp.down_proj], "mlp.down_proj", None))
    found = []
    for kind, prev, fcs, feat, out_fn in groups:
        inp = feats[feat]
        out_fn = out_fn or (lambda fc=fcs[0], inp=inp: inp @ fc.weight.t())
        org = out_fn()
        x_mean = inp.abs().mean(0)
        saved = [fc.weight.data.clone() for fc in fcs]
        best, best_s = float("inf"), None
        for r in range(n_grid):
            s = x_mean.pow(r / n_grid).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            for fc, w0 in zip(fcs, saved):
                fc.weight.data = awq_quant(w0 * s.view(1, -1), bits, group) / s.view(1, -1)
            loss = (org - out_fn()).float().pow(2).mean().item()
            if loss < best:
                best, best_s = loss, s.clone()
        for fc, w0 in zip(fcs, saved):
            fc.weight.data = w0
        found.append((kind, prev, fcs, best_s))
    for kind, prev, fcs, s in found:  # apply after searching every group, as the reference
        if kind == "norm":
            prev.weight.data /= s
        else:
            prev.weight.data[-s.numel():] /= s.view(-1, 1)
        for fc in fcs:
            fc.weight.data *= s.view(1, -1)


@torch.no_grad()
def smoothquant(model, cfg, calib, smooth):
    layers = model.model.layers
    if smooth:
        amax = {}

        def hook(key):
            def f(mod, inp, out):
                m = inp[0].reshape(-1, inp[0].shape[-1]).abs().amax(0).float()
                amax[key] = torch.maximum(amax[key], m) if key in amax else m
            return f
        hs = []
        for i, layer in enumerate(layers):
            hs.append(layer.self_attn.q_proj.register_forward_hook(hook((i, "attn"))))
            hs.append(layer.mlp.gate_proj.register_forward_hook(hook((i, "mlp"))))
        for b in range(0, calib.shape[0], 16):
            model(calib[b:b + 16])
        for h in hs:
            h.remove()
        a = cfg["alpha"]
        for i, layer in enumerate(layers):
            for key, ln, fcs in ((("attn"), layer.input_layernorm, [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                                 (("mlp"), layer.post_attention_layernorm, [layer.mlp.gate_proj, layer.mlp.up_proj])):
                wmax = torch.stack([fc.weight.abs().amax(0) for fc in fcs]).amax(0).clamp(min=1e-5)
                s = (amax[(i, key)].pow(a) / wmax.pow(1 - a)).clamp(min=1e-5)
                ln.weight.data /= s
                for fc in fcs:
                    fc.weight.data *= s.view(1, -1)
    per_token = cfg["act"] == "per_token"
    for layer in layers:
        for m in linears_of(layer).values():
            w = m.weight.data
            sc = w.abs().amax(1, keepdim=True).clamp(min=1e-5) / 127
            m.weight.data = torch.round(w / sc) * sc

            def pre(mod, inp, per_token=per_token):
                t = inp[0]
                s = (t.abs().amax(-1, keepdim=True) if per_token else t.abs().amax()).clamp(min=1e-5) / 127
                return (torch.round(t / s) * s,) + tuple(inp[1:])
            m.register_forward_pre_hook(pre)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=os.path.join(SHARED, "reference", "stories260K"))
    ap.add_argument("--no-listed", action="store_true", help="only the settings the file does not list")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = {(m, json.dumps(cfg, sort_keys=True)): ppl for m, cfg, ppl in read_reference_ppl(a.reference)}
    calib, test_ids, load = open_reference(a.reference)
    print(f"dense {perplexity(load(), test_ids):.4f} (reference_ppl.csv {ref.get(('dense', '{}'))})", flush=True)
    rows = []
    for method, cfg in ([] if a.no_listed else LISTED) + EXTRA:
        model = load()
        t0 = time.time()
        if method in ("rtn", "gptq", "awq"):
            quantize_weights(model, method, cfg, calib)
        else:
            smoothquant(model, cfg, calib, smooth=method == "smoothquant")
        ppl = perplexity(model, test_ids)
        report_ppl(f"{method} {json.dumps(cfg)}", ppl, time.time() - t0, ref.get((method, json.dumps(cfg, sort_keys=True))))
        rows.append((method, json.dumps(cfg), f"{ppl:.4f}"))
        del model
    write_ppl_csv(a.out, rows)


if __name__ == "__main__":
    sys.exit(main())
