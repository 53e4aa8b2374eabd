"""The GPU's ceilings as PyTorch reaches them, for the kit's benchmarks to compare against in the
same call: device-to-device copy bandwidth (bytes read + written), fp32 matmul with TF32 off,
bf16 matmul and INT8 matmul (torch._int_mm) at the issue's GEMM shapes. Prints one JSON object.

    python3 scripts/py/device_anchors.py [--repeats 20]
"""
import argparse
import json
import statistics

import torch


def timed(fn, repeats):
    """Median and spread of `repeats` runs in ms (CUDA events, three warm-ups)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    g = torch.Generator(device=dev).manual_seed(0)

    n = 1 << 30  # 4 GiB of fp32, far past the L2
    src = torch.rand(n, device=dev, generator=g)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), args.repeats)
    out["copy"] = {**t, "gb_s": 2 * 4 * n / t["median_ms"] / 1e6}
    del src, dst

    for M, K, N in [(4096, 4096, 4096), (2048, 4096, 14336)]:
        key = f"{M}x{K}x{N}"
        for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16)]:
            a = torch.randn(M, K, device=dev, generator=g).to(dtype)
            b = torch.randn(K, N, device=dev, generator=g).to(dtype)
            t = timed(lambda: a @ b, args.repeats)
            out[f"matmul_{name}_{key}"] = {**t, "tflop_s": 2 * M * K * N / t["median_ms"] / 1e9}
        a = torch.randint(-128, 128, (M, K), device=dev, generator=g, dtype=torch.int8)
        b = torch.randint(-128, 128, (K, N), device=dev, generator=g, dtype=torch.int8)
        t = timed(lambda: torch._int_mm(a, b), args.repeats)
        out[f"int_mm_{key}"] = {**t, "tops": 2 * M * K * N / t["median_ms"] / 1e9}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
