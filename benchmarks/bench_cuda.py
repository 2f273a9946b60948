"""CUDA kernel benchmark: each qsparse op on a CUDA tensor, timed with CUDA events next to a device-to-device copy
(torch.clone) of the same tensor, after checking the op's output bit for bit against the CPU library (which the
test suite checks against the pure-torch reference) and, for a few cases, against qsparse/reference.py directly.

    python benchmarks/bench_cuda.py [--numel 16777216,134217728] [--dtypes float32,bfloat16] [--json PATH]

The floor for these ops is memory traffic: each reads its input once and writes its output once (a mask writes one
byte per element), so the table gives each op's effective bandwidth (bytes read + bytes written over time) next to
the copy's, measured in the same run on the same buffers.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys

import torch

import qsparse
from qsparse import reference

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_kernels import FQ_CASES, MASK_CASES, same_bits  # noqa: E402

log = logging.getLogger("qsparse.bench_cuda")

REFERENCE_CHECKED = {"int4 g128", "bfp8 b32", "fp8_e4m3", "int4_asym g32 stochastic"}  # also against reference.py


def event_time(fn, iters: int, reps: int) -> float:
    """Median over `reps` of the mean time of `iters` back-to-back calls, in seconds (CUDA events)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / iters)
    return statistics.median(samples)


def device_name() -> str:
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}")


def run(numels, dtypes, iters, reps):
    rows = []
    for numel in numels:
        shape = (numel // 4096, 4096)
        for dtype in dtypes:
            g = torch.Generator().manual_seed(numel)
            x = torch.randn(shape, generator=g).to(dtype)
            xd = x.cuda()
            esize = x.element_size()
            clone_t = event_time(lambda: xd.clone(), iters, reps)
            copy_bw = 2 * numel * esize / clone_t
            log.info("%s %d: clone %.1f us, %.0f GB/s", dtype, numel, clone_t * 1e6, copy_bw / 1e9)
            for label, fmt, group, rounding in FQ_CASES:
                kw = dict(group_size=group, rounding=rounding, seed=7)
                out = qsparse.fake_quant(xd, fmt, **kw).cpu()
                expected = qsparse.fake_quant(x, fmt, **kw)
                if not same_bits(out, expected):
                    raise SystemExit(f"{label} {dtype}: CUDA output differs from the CPU library; not timing it")
                if label in REFERENCE_CHECKED and numel <= 1 << 24:
                    if not same_bits(out, reference.fake_quant(x, fmt, group, rounding, seed=7)):
                        raise SystemExit(f"{label} {dtype}: CUDA output differs from the reference; not timing it")
                t = event_time(lambda: qsparse.fake_quant(xd, fmt, **kw), iters, reps)
                bw = 2 * numel * esize / t
                rows.append(dict(op=label, kind="fake_quant", dtype=str(dtype)[6:], numel=numel, us=t * 1e6,
                                 clone_us=clone_t * 1e6, gbps=bw / 1e9, copy_gbps=copy_bw / 1e9))
                log.info("%-28s %-9s %9.1f us  %6.0f GB/s  %.2fx clone", label, dtype, t * 1e6, bw / 1e9,
                         t / clone_t)
            scores, scores_d = x.abs(), xd.abs()
            for label, kind, args in MASK_CASES:
                if kind == "nm":
                    op = lambda: qsparse.nm_mask(scores_d, *args)  # noqa: E731
                    expected = qsparse.nm_mask(scores, *args)
                else:
                    op = lambda: qsparse.magnitude_mask(xd, *args)  # noqa: E731
                    expected = qsparse.magnitude_mask(x, *args)
                if not torch.equal(op().cpu(), expected):
                    raise SystemExit(f"{label} {dtype}: CUDA mask differs from the CPU library; not timing it")
                t = event_time(op, iters, reps)
                bw = numel * (esize + 1) / t
                rows.append(dict(op=label, kind="mask", dtype=str(dtype)[6:], numel=numel, us=t * 1e6,
                                 clone_us=clone_t * 1e6, gbps=bw / 1e9, copy_gbps=copy_bw / 1e9))
                log.info("%-28s %-9s %9.1f us  %6.0f GB/s  %.2fx clone", label, dtype, t * 1e6, bw / 1e9,
                         t / clone_t)
            del xd
            torch.cuda.empty_cache()
    return rows


def table(rows) -> str:
    lines = ["| op | dtype | elements | qsparse us | clone us | vs clone | GB/s | copy GB/s | % of copy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['dtype']} | {r['numel'] >> 20}M | {r['us']:.1f} | {r['clone_us']:.1f} | "
                     f"{r['us'] / r['clone_us']:.2f}x | {r['gbps']:.0f} | {r['copy_gbps']:.0f} | "
                     f"{100 * r['gbps'] / r['copy_gbps']:.0f}% |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--numel", default=f"{1 << 24},{1 << 27}")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        raise SystemExit("bench_cuda.py needs a CUDA GPU")
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    numels = [int(n) for n in args.numel.split(",")]
    rows = run(numels, dtypes, args.iters, args.reps)
    print(f"\ndevice: {device_name()}\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
