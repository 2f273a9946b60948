"""Kernel benchmark: each qsparse op on a 16M-element tensor next to torch.clone of the same tensor and next to the
pure-torch reference (qsparse/reference.py), measured in one run, after checking the op's output against the
reference bit for bit.

    python benchmarks/bench_kernels.py [--device cpu|cuda] [--dtypes float32,bfloat16] [--quick] [--json PATH]

Targets (CPU with its default threads): element-wise and INT/BFP fake-quant within 1.25x of the clone time, MX,
NVFP4 and BitMoD's single grids within 1.5x, the mixed grids (2-4 quantizations per group) within 3x, masks within 2x,
and at least 10x faster than the reference. Times are medians of --repeat runs, each op
timed alternately with its clone; each op allocates its output, as clone does, so both include the same
allocation cost (glibc's mmap threshold is pinned, so that each of them gets fresh pages, as a first call does:
left adaptive, one of the two could reuse the other's warm pages and skip the page faults, which are most of a
clone's time).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import platform
import re
import statistics
import sys
import time

import torch

import qsparse
from qsparse import reference

log = logging.getLogger("qsparse.bench")

FQ_CASES = [  # (label, format, group_size, rounding[, scale_mode])
    ("int4 per-row", "int4", None, "rne"),
    ("int4 g128", "int4", 128, "rne"),
    ("int4_full g128", "int4_full", 128, "rne"),
    ("int4_asym g32", "int4_asym", 32, "rne"),
    ("int8_asym g128", "int8_asym", 128, "rne"),
    ("int8 per-tensor", "int8", "tensor", "rne"),
    ("int2 g16", "int2", 16, "rne"),
    ("bfp8 b32", "bfp8", None, "rne"),
    ("bfp4 b16", "bfp4", 16, "rne"),
    ("fp16", "fp16", None, "rne"),
    ("bf16", "bf16", None, "rne"),
    ("fp8_e4m3", "fp8_e4m3", None, "rne"),
    ("fp8_e5m2", "fp8_e5m2", None, "rne"),
    ("mxfp4 b32", "mxfp4", None, "rne"),
    ("mxfp4 b32 rceil", "mxfp4", None, "rne", "rceil"),
    ("mxfp8_e4m3 b32", "mxfp8_e4m3", None, "rne"),
    ("mxfp6_e2m3 b32", "mxfp6_e2m3", None, "rne"),
    ("mxint8 b32", "mxint8", None, "rne"),
    ("nvfp4 b16", "nvfp4", None, "rne"),
    ("nvfp4 b16 no tensor scale", "nvfp4", None, "rne", "e4m3_block"),
    ("fp4_e2m1 g128 (amax scale)", "fp4_e2m1", 128, "rne"),
    ("int4_asym g32 stochastic", "int4_asym", 32, "stochastic"),
    ("bfp8 b32 stochastic", "bfp8", None, "stochastic"),
    ("fp8_e4m3 stochastic", "fp8_e4m3", None, "stochastic"),
    # lookup grids (ANT, BitMoD): one grid, and the mixed formats that try several per group
    ("flint4 g128", "flint4", 128, "rne"),
    ("fp4_er_pos g128", "fp4_er_pos", 128, "rne"),
    ("mx_fp4 b32 (BitMoD)", "mx_fp4", None, "rne"),
    ("mixed_ant4 g128", "mixed_ant4", 128, "rne"),
    ("mixed_bitmod4 g128", "mixed_bitmod4", 128, "rne"),
    ("mixed_bitmod3 g128", "mixed_bitmod3", 128, "rne"),
    ("fp4_e2m1 g128 compat=bitmod", "fp4_e2m1", 128, "rne", None, "bitmod"),
    # llm-mixed-q's formats (a binary32 log2 per element, taken from a threshold table) and its profile of the
    # minifloats and bfp (MSFP)
    ("log4", "log4", None, "rne"),
    ("bl8 b16", "bl8", None, "rne"),
    ("dmf8_e4m3", "dmf8_e4m3", None, "rne"),
    ("bmf5_e2m2 b16", "bmf5_e2m2", None, "rne"),
    ("fp8_e4m3 compat=llm-mixed-q", "fp8_e4m3", None, "rne", None, "llm-mixed-q"),
    ("bfp8 b16 compat=llm-mixed-q (MSFP)", "bfp8", 16, "rne", None, "llm-mixed-q"),
]
MASK_CASES = [  # (label, kind, args)
    ("nm 2:4", "nm", (2, 4)),
    ("nm 1:4", "nm", (1, 4)),
    ("nm 2:8", "nm", (2, 8)),
    ("magnitude 50% per-tensor", "mag", (0.5, False)),
    ("magnitude 50% per-row", "mag", (0.5, True)),
]


def pin_mmap_threshold() -> bool:
    """glibc raises its mmap threshold when an mmapped block is freed, so that a later large allocation may reuse
    pages that exist already and pay no page faults: which allocation does depends on the order of the calls.
    Pinning the threshold (mallopt M_MMAP_THRESHOLD, 1 MB) makes every large allocation fresh pages, the case of a
    first call. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_pair(fn, baseline, device, repeat):
    """Medians of `fn` and `baseline` timed alternately: both see the same allocator, page-fault and cache state
    (timed apart, glibc's adaptive mmap threshold can make one of them pay page faults the other does not)."""
    fn(), baseline()  # warm-up (and lazy library load)
    times, base_times = [], []
    for _ in range(repeat):
        for f, acc in ((baseline, base_times), (fn, times)):
            _sync(device)
            t = time.perf_counter()
            out = f()
            _sync(device)
            acc.append(time.perf_counter() - t)
            del out
    return statistics.median(times), statistics.median(base_times)


def same_bits(a, b):
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    ia = a.view(torch.int32 if a.dtype == torch.float32 else torch.int16)
    ib = b.view(torch.int32 if b.dtype == torch.float32 else torch.int16)
    na, nb = torch.isnan(a), torch.isnan(b)
    return torch.equal(na, nb) and torch.equal(ia[~na], ib[~nb])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads"


def run(device: str, dtypes, repeat: int, quick: bool, only: str = ""):
    rows = []
    shape = (4096, 4096)  # 16M elements
    fq_cases = FQ_CASES[:4] + FQ_CASES[9:11] if quick else FQ_CASES
    for dtype in dtypes:
        torch.manual_seed(0)
        x = torch.randn(shape, dtype=torch.float32).to(dtype)
        xd = x.to(device)
        clone = lambda: xd.clone()  # noqa: E731
        for label, fmt, group, rounding, *mode in fq_cases:
            if only and not re.search(only, label):
                continue
            compat = mode[1] if len(mode) > 1 else None
            mode = mode[0] if mode else None
            t0 = time.perf_counter()
            ref = reference.fake_quant(x, fmt, group, rounding, seed=7, scale_mode=mode, compat=compat)
            ref_t = time.perf_counter() - t0
            run_op = lambda: qsparse.fake_quant(xd, fmt, group_size=group, rounding=rounding, seed=7,  # noqa: E731
                                                scale_mode=mode, compat=compat)
            if not same_bits(run_op().cpu(), ref):
                raise SystemExit(f"{label} {dtype}: output differs from the reference; not timing it")
            t, clone_t = time_pair(run_op, clone, device, repeat)
            f = qsparse.formats.Format(fmt, group_size=group, scale_mode=mode, compat=compat)
            scaled = f.effective_scale_mode not in ("default", "none")
            kind = ("fake_quant_mixed" if f.info.candidates > 1 else "fake_quant_lut") if (
                f.info.family == "lut" or compat == "bitmod") else "fake_quant_scaled" if scaled else "fake_quant"
            if f.info.family == "llmq" or compat == "llm-mixed-q":
                kind = "fake_quant_llmq"
            rows.append(dict(op=label, kind=kind,
                             dtype=str(dtype).replace("torch.", ""), ms=t * 1e3,
                             clone_ms=clone_t * 1e3, ref_ms=ref_t * 1e3))
            log.info("%-28s %-9s %8.2f ms  %.2fx clone  %.0fx faster than reference", label, dtype, t * 1e3,
                     t / clone_t, ref_t / t)
        scores, scores_d = x.abs(), xd.abs()
        for label, kind, args in MASK_CASES[:2] if quick else MASK_CASES:
            if only and not re.search(only, label):
                continue
            if kind == "nm":
                ref_fn = lambda: reference.nm_mask(scores, *args)  # noqa: E731
                op = lambda: qsparse.nm_mask(scores_d, *args)  # noqa: E731
            else:
                ref_fn = lambda: reference.magnitude_mask(x, *args)  # noqa: E731
                op = lambda: qsparse.magnitude_mask(xd, *args)  # noqa: E731
            t0 = time.perf_counter()
            ref = ref_fn()
            ref_t = time.perf_counter() - t0
            if not torch.equal(op().cpu(), ref):
                raise SystemExit(f"{label} {dtype}: mask differs from the reference; not timing it")
            t, clone_t = time_pair(op, clone, device, repeat)
            rows.append(dict(op=label, kind="mask", dtype=str(dtype).replace("torch.", ""), ms=t * 1e3,
                             clone_ms=clone_t * 1e3, ref_ms=ref_t * 1e3))
            log.info("%-28s %-9s %8.2f ms  %.2fx clone  %.0fx faster than reference", label, dtype, t * 1e3,
                     t / clone_t, ref_t / t)
    return rows


def table(rows, device) -> str:
    lines = ["| op | dtype | qsparse ms | clone ms | vs clone | target | reference ms | speed-up | ok |",
             "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        # element-wise and INT/BFP fake quant 1.25x the clone; block-scaled formats (MX, NVFP4) and BitMoD's grids
        # 1.5x; mixed grids (several quantizations per group) 3x; masks 2x
        target = {"fake_quant": 1.25, "fake_quant_scaled": 1.5, "fake_quant_lut": 1.5,
                  "fake_quant_mixed": 3.0}.get(r["kind"], 2.0)
        ratio = r["ms"] / r["clone_ms"]
        speedup = r["ref_ms"] / r["ms"]
        ok = ratio <= target and speedup >= 10 if device == "cpu" else True
        lines.append(f"| {r['op']} | {r['dtype']} | {r['ms']:.2f} | {r['clone_ms']:.2f} | {ratio:.2f}x | "
                     f"<= {target}x | {r['ref_ms']:.0f} | {speedup:.0f}x | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a few cases only (a smoke run)")
    p.add_argument("--only", default="", help="run only the cases whose label matches this regular expression")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    pinned = args.device == "cpu" and pin_mmap_threshold()
    log.info("machine: %s; mmap threshold pinned: %s", machine(), pinned)
    rows = run(args.device, dtypes, args.repeat, args.quick, args.only)
    print(f"\nmachine: {machine()}\n")
    print(table(rows, args.device))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "device": args.device, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
