"""Shared by the PyTorch helper scripts (GPU host with torch and transformers): strict fp32, RoPE
keywords across transformers versions, and the stories260K reference protocol of
scripts/reference_quant.py and scripts/reference_sparsity.py (block inputs, the damped inverse
Hessian of GPTQ/SparseGPT, WikiText-2 perplexity, the reference files, the result CSV).

torch and transformers are imported inside the functions, so importing this module needs neither.
Scripts in scripts/py import it directly; scripts in scripts/ put scripts/py on sys.path first.
"""
import csv
import json
import math
import os

# ../shared beside the repository, unless LLMCB_SHARED says otherwise.
SHARED = os.environ.get("LLMCB_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared"))


def strict_fp32():
    """No TF32 matmuls or convolutions: fp32 means fp32 (the kit's matmuls are fp32)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def rope_kwargs(kw):
    """transformers 5 takes RoPE settings as rope_parameters; 4.x as rope_theta + rope_scaling."""
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5 or "rope_theta" not in kw:
        return kw
    kw = dict(kw)
    params = {"rope_type": "default", "rope_theta": kw.pop("rope_theta")}
    params.update(kw.pop("rope_scaling", None) or {})
    kw["rope_parameters"] = params
    return kw


# ---- the stories260K reference protocol ----

def load_reference_model(ref_dir):
    """The reference's HF model (ref_dir/hf) in fp32 with eager attention, on CUDA, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(os.path.join(ref_dir, "hf"), torch_dtype=torch.float32, attn_implementation="eager").cuda().eval()


def reference_inputs(ref_dir):
    """The 128 calibration windows of 512 tokens (a CUDA tensor) and the WikiText-2 test token ids."""
    import torch

    with open(os.path.join(ref_dir, "calib_wikitext2_valid_128x512.json")) as f:
        calib = torch.tensor(json.load(f)["windows"], device="cuda")
    with open(os.path.join(ref_dir, "wikitext2_test_tok512.json")) as f:
        test_ids = json.load(f)["test_ids"]
    return calib, test_ids


def reference_rows(ref_dir):
    """(method, config dict, ppl) of every row of ref_dir/reference_ppl.csv."""
    with open(os.path.join(ref_dir, "reference_ppl.csv")) as f:
        return [(r["method"], json.loads(r["config"]), float(r["wikitext2_ppl"])) for r in csv.DictReader(f)]


def print_setting(label, ppl, seconds, listed):
    """One progress line: the setting's PPL and time, and its reference_ppl.csv value when listed."""
    print(f"{label} ppl {ppl:.4f} ({seconds:.1f} s)" + (f"  reference_ppl.csv {listed} ({(ppl / listed - 1) * 100:+.2f}%)" if listed else ""), flush=True)


def write_ppl_csv(path, rows):
    """rows of (method, config JSON, ppl text) in reference_ppl.csv's format (what --py-ref reads)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "config", "wikitext2_ppl"])
        w.writerows(rows)
    print(f"wrote {path}")


def linears_of(layer):
    """The nn.Linear modules of a block, by name."""
    import torch.nn as nn

    return {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}


class _Stop(Exception):
    pass


def block_inputs(model, ids):
    """Hidden states entering block 0 and the keyword arguments the model passes its blocks, less the
    KV cache ones (the scripts run the blocks one at a time)."""
    import torch.nn as nn

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
            raise _Stop

    first = layers[0]
    layers[0] = Catcher(first)
    try:
        model(ids)
    except _Stop:
        pass
    layers[0] = first
    kwargs = {k: v for k, v in seen["kwargs"].items() if k not in ("past_key_values", "past_key_value", "use_cache")}
    return seen["x"], kwargs


def run_layer(layer, x, kwargs):
    out = layer(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def inverse_hessian(W, H, percdamp):
    """GPTQ/SparseGPT's upper Cholesky factor of the damped inverse Hessian, in H's dtype. Modifies
    W and H in place: dead inputs (zero diagonal) get H 1 and W's column 0, then percdamp of the
    mean diagonal is added to the diagonal."""
    import torch

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)


def perplexity(model, ids, seqlen=512, batch=32):
    """WikiText-2 PPL over floor(n/seqlen) windows, mean NLL over the seqlen-1 predicted positions."""
    import torch
    import torch.nn as nn

    n = len(ids) // seqlen
    with torch.no_grad():
        t = torch.tensor(ids[: n * seqlen], device="cuda").reshape(n, seqlen)
        nll = 0.0
        for b in range(0, n, batch):
            x = t[b:b + batch]
            logits = model(x).logits.float()
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
            nll += loss.item()
    return math.exp(nll / (n * (seqlen - 1)))
