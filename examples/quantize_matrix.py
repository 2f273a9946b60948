"""Sparsify and fake-quantize one weight matrix in every number format qsparse knows, and report the error and the
time of each: a quick tour of the formats on equal terms.

    python examples/quantize_matrix.py                       # a 2048 x 2048 synthetic LLM-like matrix (no files)
    python examples/quantize_matrix.py --llama2c ../shared/data/stories260K/stories260K.bin   # a real model's wq
    python examples/quantize_matrix.py --sparsity 2:4 --dtype bfloat16 --csv out.csv

For each format (its default group size, and group 128 for INT formats) the table gives the SQNR
(20 log10 ||W|| / ||W - Q(W)||, in dB), the relative output error ||XW^T - XQ(W)^T|| / ||XW^T|| on random inputs,
and the kernel time. With --sparsity the mask (N:M or a fraction, by magnitude) is applied first, as the seed's
``first: s`` does, and the errors are measured against the dense matrix.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import struct
import sys
import time

import torch

import qsparse

log = logging.getLogger("qsparse.examples")


def synthetic_weight(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Heavy-tailed rows with per-channel scales and a few outlier columns, roughly like LLM linear weights."""
    g = torch.Generator().manual_seed(seed)
    t = torch.distributions.StudentT(torch.tensor(4.0))
    w = t.sample((rows, cols)) * 0.02
    w *= torch.exp(torch.randn(rows, 1, generator=g) * 0.3)
    outliers = torch.randperm(cols, generator=g)[: max(1, cols // 256)]
    w[:, outliers] *= 8
    return w.float()


def llama2c_wq(path: str) -> torch.Tensor:
    """The first layer's query projection of a llama2.c checkpoint (header of 7 int32, then float32 weights)."""
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack("7i", f.read(28))
        f.seek(28 + 4 * (abs(vocab) * dim + n_layers * dim))  # skip the token embedding and attention norms
        data = f.read(4 * dim * dim)
    return torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(dim, dim).clone()


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    err = (ref.double() - approx.double()).norm()
    return math.inf if err == 0 else 20 * math.log10(ref.double().norm() / err)


def cases():
    for info in qsparse.formats.table():
        yield qsparse.Format(info.name)
        if info.family.startswith("int"):
            yield qsparse.Format(info.name, group_size=128)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama2c", help="take the matrix from this llama2.c checkpoint (layer 0 wq)")
    p.add_argument("--size", type=int, default=2048, help="synthetic matrix size (default 2048)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--sparsity", help="N:M as keep:group (e.g. 2:4) or a fraction (e.g. 0.5)")
    p.add_argument("--csv", help="also write the table here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    w = llama2c_wq(args.llama2c) if args.llama2c else synthetic_weight(args.size, args.size)
    w = w.to(getattr(torch, args.dtype))
    source = args.llama2c or f"synthetic {args.size}x{args.size}"
    x = torch.randn(64, w.shape[1], dtype=w.dtype)
    dense_out = x.double() @ w.double().t()

    mask = None
    if args.sparsity:
        sp = qsparse.SparsityConfig.parse(args.sparsity if ":" in args.sparsity else float(args.sparsity))
        mask = (qsparse.nm_mask(w.abs(), sp.keep, sp.group) if sp.structured
                else qsparse.magnitude_mask(w, sp.fraction))
        log.info("mask %s: %.1f%% of weights kept", sp, 100 * mask.float().mean().item())

    rows = []
    all_cases = list(cases())
    for i, fmt in enumerate(all_cases, 1):
        qsparse.fake_quant(w, fmt, mask=mask)  # warm-up
        t = time.perf_counter()
        q = qsparse.fake_quant(w, fmt, mask=mask)
        ms = (time.perf_counter() - t) * 1e3
        out_err = ((x.double() @ q.double().t()) - dense_out).norm() / dense_out.norm()
        rows.append((str(fmt), fmt.info.bits, sqnr_db(w, q), out_err.item(), ms))
        log.info("[%2d/%d] %-28s %6.2f dB", i, len(all_cases), fmt, rows[-1][2])

    print(f"\n{source}, {args.dtype}, sparsity {args.sparsity or 'none'}, {torch.get_num_threads()} threads\n")
    print(f"{'format':<30}{'bits':>5}{'SQNR dB':>10}{'out rel err':>13}{'ms':>9}")
    for name, bits, snr, oerr, ms in rows:
        print(f"{name:<30}{bits:>5}{snr:>10.2f}{oerr:>13.2e}{ms:>9.2f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["format", "bits", "sqnr_db", "output_rel_error", "ms"])
            wr.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
