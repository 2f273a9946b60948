"""Memory density and an analytic throughput model of a model's linear layers (the search objectives).

Memory: bits per weight of a set of linear modules as :func:`qsparse.summary` counts them (kept elements at the
element width, group scales and zero points, N:M index metadata or an unstructured bitmap), weighted by size.

Throughput: a roofline over the linear layers, for ``tokens`` tokens through each (a prefill chunk, or a decode
batch). For a linear of N outputs and K inputs:

- operations ``ops = 2 * tokens * N * K * c`` with ``c = keep / group`` under structured N:M sparsity (the pruned
  multiply-adds are skipped, as sparse tensor cores do for 2:4) and ``c = 1`` otherwise (unstructured sparsity saves
  no math);
- bytes ``= N * K * bits_per_weight / 8`` (the stored weight: elements, scales, mask metadata)
  ``+ tokens * K * a_bits / 8`` (the input) ``+ tokens * N * 16 / 8`` (a 16-bit output);
- the math rate ``peak_tflops * 16 / max(w_bits, a_bits, min_bits)``, where ``w_bits`` and ``a_bits`` are the
  element widths of the weight and of the input (a dense weight or input counts at its dtype's width): a matmul runs
  at the rate of its widest operand (W4A16 at the 16-bit rate, NVFP4 x NVFP4 at 4x), not below ``min_bits``;
- time ``= max(ops / rate, bytes / bandwidth)``; throughput ``= tokens / sum of the times`` (tokens per second).

Attention score math, norms and embeddings are left out: the model ranks linear-layer configurations against each
other, it does not predict wall-clock time. Defaults: ``tokens = 64``, ``peak_tflops = 989`` (16-bit dense),
``bandwidth_gbs = 3350``, ``min_bits = 4``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional

import torch

DEFAULTS = {"tokens": 64, "peak_tflops": 989.0, "bandwidth_gbs": 3350.0, "min_bits": 4}


@dataclass(frozen=True)
class LayerCost:
    name: str
    ops: float
    bytes: float
    seconds: float


def _bits(fmt, dtype: torch.dtype) -> int:
    return int(fmt.info.bits) if fmt is not None else torch.finfo(dtype).bits


def layer_costs(model, names: Optional[Iterable[str]] = None, **params) -> Dict[str, LayerCost]:
    """The cost of each linear module (all of them, or ``names``) under the model above."""
    from ..integrations.transformers import _weight_bits, is_linear_like
    from ..nn.linear import BFPLinear, is_conv1d

    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown throughput parameter(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    for k, v in p.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"throughput.{k}={v!r} is not allowed; expected a positive number")
    wanted = set(names) if names is not None else None
    out = {}
    for name, m in model.named_modules():
        if not name or not is_linear_like(m) or (wanted is not None and name not in wanted):
            continue
        cfg = m.config if isinstance(m, BFPLinear) and not m.config.is_dense else None
        n, k = (m.weight.shape[1], m.weight.shape[0]) if is_conv1d(m) else tuple(m.weight.shape)
        t = p["tokens"]
        c = 1.0
        if cfg is not None and cfg.sparsity is not None and cfg.sparsity.structured:
            c = cfg.sparsity.keep / cfg.sparsity.group
        ops = 2.0 * t * n * k * c
        w_bits = _bits(cfg.weight if cfg else None, m.weight.dtype)
        a_bits = _bits(cfg.activation if cfg else None, m.weight.dtype)
        nbytes = n * k * _weight_bits(m, cfg) / 8 + t * k * a_bits / 8 + t * n * 2
        rate = p["peak_tflops"] * 1e12 * 16 / max(w_bits, a_bits, p["min_bits"])
        out[name] = LayerCost(name, ops, nbytes, max(ops / rate, nbytes / (p["bandwidth_gbs"] * 1e9)))
    return out


def throughput(model, names: Optional[Iterable[str]] = None, **params) -> float:
    """Tokens per second through the linear modules (``names``, default all) under the roofline above."""
    costs = layer_costs(model, names, **params)
    total = sum(c.seconds for c in costs.values())
    return {**DEFAULTS, **params}["tokens"] / total if total else 0.0


def bits_per_weight(model, names: Optional[Iterable[str]] = None) -> float:
    """Storage bits per weight over the linear modules ``names`` (default all), from qsparse.summary."""
    from ..integrations.transformers import summary

    rows = summary(model).rows
    wanted = set(names) if names is not None else None
    sel = [r for r in rows if wanted is None or r.name in wanted]
    n = sum(r.in_features * r.out_features for r in sel)
    return sum(r.bits_per_weight * r.in_features * r.out_features for r in sel) / n if n else 0.0


__all__ = ["layer_costs", "throughput", "bits_per_weight", "LayerCost", "DEFAULTS"]
