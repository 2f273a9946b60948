"""Runs one qsparse CUDA op a few times on a large tensor, for a profiler (ncu) to look at one of its launches.

    ncu --launch-skip 2 --launch-count 1 python benchmarks/profile_cuda.py int4_asym 32 bfloat16
"""
import sys

import torch

import qsparse


def main(argv):
    fmt, group, dtype = argv[0], argv[1], getattr(torch, argv[2] if len(argv) > 2 else "float32")
    numel = int(argv[3]) if len(argv) > 3 else 1 << 27
    x = torch.randn(numel // 4096, 4096, device="cuda").to(dtype)
    for _ in range(4):
        if fmt.startswith("nm"):
            qsparse.nm_mask(x.abs(), *map(int, group.split(":")))
        elif fmt == "magnitude":
            qsparse.magnitude_mask(x, 0.5, per_row=group == "row")
        else:
            g = None if group == "none" else (group if group in ("row", "tensor") else int(group))
            qsparse.fake_quant(x, fmt, group_size=g)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main(sys.argv[1:])
