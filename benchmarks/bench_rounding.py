"""The rounding modes other than round-to-nearest-even on the CPU kernels, against RNE of the same format.

Stochastic rounding (quantization-aware training, HBFP's 'stoc'), half away from zero (microxcaling's 'nearest')
and ties to the lower value run with the rounding known only at run time; RNE has its own instantiation. This
script times, per format, the kernel writing into an existing tensor (no allocation) with each rounding and with
RNE, in turn within each round, on a tensor that stays in cache, and prints the ratio. Before timing, each case is
checked bit for bit against the pure-torch reference (first rows; the reference is slow) and the kernel's output
into the existing tensor against the op's.

    python benchmarks/bench_rounding.py [--repeat 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import logging

import torch

import qsparse
from qsparse import reference

from bench_alloc import _kernel_into, _median_ms  # this folder: sys.path[0] when run as a script
from bench_kernels import machine, same_bits

log = logging.getLogger("qsparse.bench")

CASES = [  # (format, group_size, rounding)
    ("int4", 128, "stochastic"),
    ("int4", 128, "half_away"),
    ("int4_asym", 128, "stochastic"),
    ("int8", None, "stochastic"),
    ("fp8_e4m3", None, "stochastic"),
    ("mxfp4", None, "stochastic"),
    ("mxfp4", None, "half_away"),
    ("nvfp4", None, "stochastic"),
    ("bfp8", None, "stochastic"),
]
SEED = 7
CHECK_ROWS = 64


def _check(x: torch.Tensor, fmt: str, group, rounding: str, into) -> None:
    head = x[:CHECK_ROWS].contiguous()  # a tensor of its own: NVFP4's tensor scale is head's
    ref = reference.fake_quant(head, fmt, group, rounding, seed=SEED)
    if not same_bits(qsparse.fake_quant(head, fmt, group_size=group, rounding=rounding, seed=SEED), ref):
        raise SystemExit(f"{fmt} {rounding} {x.dtype}: output differs from the reference; not timing it")
    op = qsparse.fake_quant(x, fmt, group_size=group, rounding=rounding, seed=SEED)
    y = torch.zeros_like(x)
    into(x, y)
    if not same_bits(op, y):
        raise SystemExit(f"{fmt} {rounding} {x.dtype}: the kernel into an existing tensor differs from the op")


def run(repeat: int) -> list:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        x = torch.randn(1024, 1024).to(dtype)
        y = torch.zeros_like(x)
        for fmt, group, rounding in CASES:
            into = _kernel_into(fmt, group, rounding, SEED)
            rne = _kernel_into(fmt, group, "rne")
            _check(x, fmt, group, rounding, into)
            _check(x, fmt, group, "rne", rne)
            t, t_rne = _median_ms([lambda: into(x, y), lambda: rne(x, y)], repeat)
            label = f"{fmt}" + (f" g{group}" if group else "")
            rows.append(dict(case=label, rounding=rounding, dtype=str(dtype).replace("torch.", ""), ms=t,
                             rne=t_rne))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: per-element cost)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    rows = run(args.repeat)
    log.info("%s; threads %d; 1M elements; medians of %d", machine(), torch.get_num_threads(), args.repeat)
    log.info("| format | rounding | dtype | kernel ms | RNE kernel ms | vs RNE |")
    log.info("|---|---|---|---:|---:|---:|")
    for r in rows:
        log.info(f"| {r['case']} | {r['rounding']} | {r['dtype']} | {r['ms']:.3f} | {r['rne']:.3f} | "
                 f"{r['ms'] / r['rne']:.2f}x |")


if __name__ == "__main__":
    main()
