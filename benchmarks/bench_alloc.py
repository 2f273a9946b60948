"""Where the time of a CPU fake-quant goes: the output's allocation, or the kernel.

bench_kernels.py compares each op with torch.clone, and both allocate their output. A fresh 64 MB tensor comes from
the system as untouched pages, so whoever writes it first pays a page fault per 4 KB page; for a clone that is most
of its time. This script times, in one run, on a 16M-element tensor:

- clone, and copy_ into a tensor that exists already (the same copy without the page faults);
- the op as users call it (it allocates), and the op's kernel writing into an existing tensor.

so that "allocation" (clone - copy_) and "kernel" (the op into an existing tensor) can be read apart. Before timing,
the op is checked bit for bit against the pure-torch reference (on the first 256 rows: the reference is slow), and
the kernel's output into the existing tensor against the op's.

    python benchmarks/bench_alloc.py [--repeat 7] [--threads N]
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import statistics
import time

import torch

import qsparse
from qsparse import _lib, ops, reference
from qsparse.functional import op_args

from bench_kernels import pin_mmap_threshold, same_bits  # this folder: sys.path[0] when run as a script

log = logging.getLogger("qsparse.bench")

CASES = [  # (label, format, group_size)
    ("int4 g128", "int4", 128),
    ("fp8_e4m3", "fp8_e4m3", None),
    ("mxfp4 b32", "mxfp4", None),
    ("nvfp4 b16", "nvfp4", None),
    ("flint4 g128", "flint4", 128),
    ("mx_fp4 b32 (BitMoD)", "mx_fp4", None),
    ("mixed_bitmod4 g128", "mixed_bitmod4", 128),
]


def _kernel_into(fmt: str, group, rounding=None, seed: int = 0):
    """A function (x, y) that runs the CPU kernel of fake_quant(x, fmt, group_size=group, rounding=rounding,
    seed=seed) writing into y (contiguous, same shape and dtype). The ops layer always allocates; this reaches under
    it, for timing only."""
    name, group_code, rounding, saturate, mode, observer, compat = op_args(
        qsparse.formats.Format(fmt, group_size=group, rounding=rounding))
    p = ops._params(name, group_code, rounding, seed, saturate, mode, observer, compat)
    lib = _lib.cpu()

    def run(x: torch.Tensor, y: torch.Tensor) -> None:
        rows, cols = x.shape
        lib.call("qs_fake_quant_cpu", ctypes.byref(p), ops.dtype_code(x.dtype), rows, cols, x.data_ptr(), cols,
                 y.data_ptr(), cols, None, 0, ops.MASK_NONE, torch.get_num_threads())
    return run


def _median_ms(fns, repeat: int) -> list:
    """Median times (ms) of fns, run in turn in each round, so that each sees the allocator in the same state
    (glibc's mmap threshold moves as blocks are freed: a later allocation of the same size may reuse pages that
    exist already, and then pays no page faults)."""
    ts = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return [statistics.median(t) * 1e3 for t in ts]


def run(repeat: int) -> list:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        x = torch.randn(4096, 4096).to(dtype)
        y = torch.zeros_like(x)  # touched: its pages exist
        for label, fmt, group in CASES:
            head = x[:256].contiguous()
            ref = reference.fake_quant(head, fmt, group, "rne")
            if not same_bits(qsparse.fake_quant(head, fmt, group_size=group), ref):
                raise SystemExit(f"{label} {dtype}: output differs from the reference; not timing it")
            into = _kernel_into(fmt, group)
            into(x, y)
            if not same_bits(qsparse.fake_quant(x, fmt, group_size=group), y):
                raise SystemExit(f"{label} {dtype}: the kernel into an existing tensor differs from the op")
            clone_t, op_t, copy_t, into_t = _median_ms(
                [lambda: x.clone(), lambda: qsparse.fake_quant(x, fmt, group_size=group), lambda: y.copy_(x),
                 lambda: into(x, y)], repeat)
            rows.append(dict(op=label, dtype=str(dtype).replace("torch.", ""), clone=clone_t, copy=copy_t, op_ms=op_t,
                             into=into_t))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    pinned = pin_mmap_threshold()
    rows = run(args.repeat)
    log.info("threads %d; mmap threshold pinned: %s; allocation = clone - copy_ into an existing tensor",
             torch.get_num_threads(), pinned)
    log.info("| op | dtype | clone ms | copy_ ms | allocation share of clone | op ms | op vs clone | kernel into "
             "existing ms | kernel vs copy_ | op - kernel ms |")
    log.info("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        log.info(f"| {r['op']} | {r['dtype']} | {r['clone']:.2f} | {r['copy']:.2f} | "
                 f"{(r['clone'] - r['copy']) / r['clone']:.0%} | {r['op_ms']:.2f} | {r['op_ms'] / r['clone']:.2f}x | "
                 f"{r['into']:.2f} | {r['into'] / r['copy']:.2f}x | {r['op_ms'] - r['into']:.2f} |")


if __name__ == "__main__":
    main()
