"""Pure-torch reference implementations, written from FORMATS.md: the oracles that tests and benchmarks compare the
native kernels with. This module never calls the native library, and it does not read the C format table: it
derives each format's constants from its name and the spec, so that a wrong table row is caught too.

Arithmetic follows the spec's operation order in binary32 where the sources compute in binary32 (scales, x / s,
round, q * s), and uses float64 where an operation is exact (powers of two, frexp), so results are bit-exact.
Written for clarity, not speed: padding to whole groups, dense comparisons.
"""
from __future__ import annotations

import math
import re
from typing import Optional, Union

import torch

FLT_MAX = (2.0 - 2.0**-23) * 2.0**127
# Largest finite values of the storage dtypes: integer grids clamp to them (no Inf after the final cast).
DTYPE_MAX = {torch.float32: FLT_MAX, torch.float16: (2.0 - 2.0**-10) * 2.0**15, torch.bfloat16: (2.0 - 2.0**-7) * 2.0**127}
_F32 = torch.float32
_F64 = torch.float64

# Element formats: (exponent bits, mantissa bits, has Inf, OCP-E4M3-style NaN, saturates by default)
FLOAT_FORMATS = {
    "fp16": (5, 10, True, False, False),
    "bf16": (8, 7, True, False, False),
    "fp8_e4m3": (4, 3, False, True, True),
    "fp8_e5m2": (5, 2, True, False, True),
}


_MINIFLOAT = re.compile(r"fp([3-8])_e([1-7])m([0-6])")


def _float_row(name: str) -> tuple:
    """FLOAT_FORMATS' tuple of an element format; a minifloat fp{w}_e{E}m{M} (w = 1 + E + M <= 8, other than the
    two OCP fp8 formats above) has every code finite and saturates (FORMATS.md section 3)."""
    if name in FLOAT_FORMATS:
        return FLOAT_FORMATS[name]
    m = _MINIFLOAT.fullmatch(name)
    if m and int(m.group(1)) == 1 + int(m.group(2)) + int(m.group(3)):
        return int(m.group(2)), int(m.group(3)), False, False, True
    raise ValueError(f"reference: unknown element format {name!r}")


# Block-scaled formats (FORMATS.md sections 4-5): element format, default block, default scale mode. "int8_fixed" is
# MXINT8's element k * 2^-6, |k| <= 127.
SCALED_FORMATS = {
    "mxfp8_e4m3": ("fp8_e4m3", 32, "floor"),
    "mxfp8_e5m2": ("fp8_e5m2", 32, "floor"),
    "mxfp6_e3m2": ("fp6_e3m2", 32, "floor"),
    "mxfp6_e2m3": ("fp6_e2m3", 32, "floor"),
    "mxfp4": ("fp4_e2m1", 32, "floor"),
    "mxint8": ("int8_fixed", 32, "floor"),
    "nvfp4": ("fp4_e2m1", 16, "e4m3"),
}


def float_params(name: str) -> dict:
    """Spec constants of an element format (FORMATS.md section 3)."""
    if name == "int8_fixed":  # k * 2^-6: spacing 2^-6 from 0 up to 127/64 (OCP MX's MXINT8 element)
        return dict(ebits=1, mbits=6, bias=1, emin=0, emax=0, max=127 / 64, has_inf=False, has_nan=False,
                    saturates=True)
    ebits, mbits, has_inf, fn_nan, saturates = _float_row(name)
    bias = 2 ** (ebits - 1) - 1
    emin = 1 - bias
    if has_inf:
        emax, top = 2**ebits - 2 - bias, 2.0 - 2.0**-mbits
    elif fn_nan:
        emax, top = 2**ebits - 1 - bias, 2.0 - 2.0 ** (1 - mbits)
    else:
        emax, top = 2**ebits - 1 - bias, 2.0 - 2.0**-mbits
    return dict(ebits=ebits, mbits=mbits, bias=bias, emin=emin, emax=emax, max=top * 2.0**emax,
                has_inf=has_inf, has_nan=has_inf or fn_nan, saturates=saturates)


def parse_name(name: str) -> tuple:
    """(family, bits) of a canonical format name: ('int_sym'|'int_full'|'int_asym'|'bfp'|'float'|'scaled', bits)."""
    m = re.fullmatch(r"int([2-8])(_full|_asym)?", name)
    if m:
        return {None: "int_sym", "_full": "int_full", "_asym": "int_asym"}[m.group(2)], int(m.group(1))
    m = re.fullmatch(r"bfp([0-9]+)", name)
    if m:
        return "bfp", int(m.group(1))
    if name in FLOAT_FORMATS or _MINIFLOAT.fullmatch(name):
        e, mb = _float_row(name)[:2]
        return "float", 1 + e + mb
    if name in SCALED_FORMATS:
        elem = SCALED_FORMATS[name][0]
        return "scaled", 8 if elem == "int8_fixed" else 1 + sum(_float_row(elem)[:2])
    raise ValueError(f"reference: unknown format {name!r}")


# ---- the stochastic stream (qsparse's definition, FORMATS.md conventions) -------------------------------------------

_M32 = 0xFFFFFFFF


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    """(h * c) mod 2^32 for 0 <= h < 2^32 in int64 without overflow: split c into 16-bit halves."""
    lo, hi = c & 0xFFFF, c >> 16
    return (h * lo + (((h * hi) & 0xFFFF) << 16)) & _M32


def _mix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _mix32_int(h: int) -> int:
    return int(_mix32(torch.tensor([h], dtype=torch.int64)).item())


def rand24(seed: int, index: torch.Tensor) -> torch.Tensor:
    """The 24 random bits of each element index (int64 tensor) under `seed`: mix32 rounds keyed by the seed."""
    seed &= (1 << 64) - 1
    k0 = _mix32_int((seed & _M32) ^ 0x9E3779B9)
    k1 = _mix32_int(((seed >> 32) & _M32) ^ k0 ^ 0x7F4A7C15)
    lo, hi = index & _M32, (index >> 32) & _M32
    khi = _mix32(hi ^ k1)
    return _mix32(_mix32(lo ^ khi) ^ k0) >> 8


def _unit(u24: torch.Tensor) -> torch.Tensor:
    return u24.to(_F64) * 2.0**-24


def _round(v: torch.Tensor, rounding: str, u: Optional[torch.Tensor]) -> torch.Tensor:
    """RNE, or stochastic: floor(v + u) in exact arithmetic, i.e. floor(v) + 1 iff frac(v) >= 1 - u (frac and
    1 - u are exact in float64 for binary32 v and u on the 2^-24 grid). A zero keeps v's sign."""
    if rounding == "rne":
        return torch.round(v)
    v64 = v.to(_F64)
    f = torch.floor(v64)
    q = f + ((v64 - f) >= 1.0 - u.to(_F64)).to(_F64)
    q = torch.where(q == 0, torch.copysign(torch.zeros_like(q), v64), q)
    return q.to(v.dtype)


# ---- element formats ----------------------------------------------------------------------------------------------


def round_float(x: torch.Tensor, name: str, rounding: str = "rne", u: Optional[torch.Tensor] = None,
                saturate: Optional[bool] = None) -> torch.Tensor:
    """x (float32) rounded onto an element format's grid; float32 result (FORMATS.md section 3)."""
    p = float_params(name)
    sat = p["saturates"] if saturate is None else saturate
    a = x.to(_F64).abs()
    finite = torch.isfinite(a)
    a_f = torch.where(finite, a, torch.zeros_like(a))
    _, ex = torch.frexp(a_f)  # a = mant * 2^ex, mant in [0.5, 1): floor(log2 a) = ex - 1
    e = torch.clamp(ex.to(_F64) - 1, min=p["emin"])  # below 2^emin the spacing is that of emin (subnormals)
    quantum = torch.pow(2.0, e - p["mbits"])
    r = _round(a_f / quantum, rounding, u) * quantum  # exact in float64
    over = p["max"] if sat else (math.inf if p["has_inf"] else math.nan)
    r = torch.where(r > p["max"], torch.full_like(r, over), r)
    r = torch.where(torch.isinf(a), torch.full_like(r, over), r)
    r = torch.where(torch.isnan(a), torch.full_like(r, math.nan), r)
    return torch.copysign(r, x.to(_F64)).to(_F32)


# ---- group formats ------------------------------------------------------------------------------------------------


def _group_view(x: torch.Tensor, group: Union[int, str]) -> tuple:
    """x (rows, cols) -> (groups, G) padded with zeros, and a function restoring (rows, cols)."""
    rows, cols = x.shape
    if group == "tensor":
        return x.reshape(1, -1), lambda g: g.reshape(rows, cols)
    if group == "row" or group >= cols:
        return x, lambda g: g
    pad = (-cols) % group
    xp = torch.nn.functional.pad(x, (0, pad))
    return xp.reshape(-1, group), lambda g: g.reshape(rows, cols + pad)[:, :cols]


def _quant_groups(xg: torch.Tensor, family: str, bits: int, rounding: str, ug, ymax: float, shrink=None,
                  return_ok: bool = False):
    """Fake-quantize each row of xg (float32 groups, zero padded); integer results are clamped to +-ymax. `shrink`
    (binary32 scalar): the mse observer's candidate, multiplying the group's min and max. With `return_ok`, also
    the groups whose scale is finite and nonzero."""
    one = torch.ones((), dtype=_F32)
    bad = ~torch.isfinite(xg).all(dim=1, keepdim=True)
    xs = torch.where(bad, torch.zeros_like(xg), xg)
    vmin = xs.amin(dim=1, keepdim=True)
    vmax = xs.amax(dim=1, keepdim=True)
    if shrink is not None:
        vmin, vmax = vmin * shrink, vmax * shrink
    amax = torch.maximum(vmin.abs(), vmax.abs())
    s = None
    zero_out = torch.copysign(torch.zeros_like(xs), xs)
    if family in ("int_sym", "int_full"):
        qmax = 2 ** (bits - 1) - 1
        qmin = -qmax if family == "int_sym" else -(qmax + 1)
        divisor = float(qmax) if family == "int_sym" else qmax + 0.5
        s = amax / torch.tensor(divisor, dtype=_F32)
        safe_s = torch.where(s == 0, one, s)
        q = torch.clamp(_round(xs / safe_s, rounding, ug), qmin, qmax)
        y = torch.clamp(q * safe_s, -ymax, ymax)
        y = torch.where(s == 0, zero_out, y)
    elif family == "int_asym":
        maxq = float(2**bits - 1)
        xmin = torch.minimum(vmin, torch.zeros((), dtype=_F32))
        xmax = torch.maximum(vmax, torch.zeros((), dtype=_F32))
        both0 = (xmin == 0) & (xmax == 0)
        xmin = torch.where(both0, -one, xmin)
        xmax = torch.where(both0, one, xmax)
        s = (xmax - xmin) / torch.tensor(maxq, dtype=_F32)
        overflow = ~torch.isfinite(s)
        safe_s = torch.where((s == 0) | overflow, one, s)
        z = torch.round(-xmin / safe_s)
        q = torch.clamp(_round(xs / safe_s, rounding, ug) + z, 0, maxq)
        y = torch.clamp(safe_s * (q - z), -ymax, ymax)
        y = torch.where(s == 0, zero_out, y)
        bad = bad | overflow
    elif family == "bfp":
        mbits = bits - 1
        m = amax + torch.tensor(1e-8, dtype=_F32)  # binary32 sum, as HBFP computes it
        mant, ex = torch.frexp(m.to(_F64))
        e = torch.where(mant == 0.5, ex - 1, ex).to(_F64)  # exact ceil(log2(m))
        interval = torch.pow(2.0, e - mbits).to(_F32)  # a power of two in [2^-41, 2^127]: exact
        maxv = (2.0**mbits - 1.0) * interval  # = 2^e - interval, exact
        v = xs / interval  # exact
        y = torch.clamp(_round(v, rounding, ug) * interval, -maxv, maxv)
    else:
        raise ValueError(family)
    y = torch.where(bad, torch.full_like(y, math.nan), y)
    if return_ok:
        ok = ~bad & (s != 0) if s is not None else ~bad
        return y, ok
    return y


def _mse_groups(xg: torch.Tensor, run, grid: int = 100, maxshrink: float = 0.8, norm: float = 2.4) -> torch.Tensor:
    """GPTQ's mse observer (FORMATS.md section 1): for i < int(maxshrink * grid), p = fl32(1 - i / grid); quantize
    every group with its range shrunk by p (RNE), error = sum |q - x|^norm in float64; each group keeps the first p
    with the smallest error among candidates with a nonzero scale (else the min/max result). `run(p)` returns
    (quantized groups, ok). Returns the chosen p per group (1.0: the min/max range)."""
    xs = torch.where(torch.isfinite(xg), xg, torch.zeros_like(xg)).to(_F64)
    best = torch.full((xg.shape[0], 1), math.inf, dtype=_F64)
    choice = torch.ones((xg.shape[0], 1), dtype=torch.float32)  # p of the winner; 1.0 = min/max
    for i in range(int(maxshrink * grid)):
        p = torch.tensor(1.0 - i / grid, dtype=_F32)
        y, ok = run(p)
        d = (y.to(_F64) - xs).abs()
        err = (d * d if norm == 2 else d.pow(norm)).sum(dim=1, keepdim=True)
        better = ok & (err < best)
        best = torch.where(better, err, best)
        choice = torch.where(better, p, choice)
    return choice


def _pow2_exponent(amax: torch.Tensor, mode: str, p: dict) -> torch.Tensor:
    """E8M0 exponents (int64) of finite block maxima amax (float32), torchao's to_mx arithmetic on bit patterns."""
    if mode == "rceil":
        d = (amax * torch.tensor(1.0 / p["max"], dtype=_F32)).view(torch.int32).to(torch.int64)
        ex, man = d >> 23, d & 0x7FFFFF
        up = torch.where(ex == 0, man > 0x400000, man != 0)
        return ex + up.to(torch.int64) - 127
    b = amax.view(torch.int32).to(torch.int64)
    bb = (b + (1 << (22 - p["mbits"]))) & 0x7F800000 if mode == "even" else b
    e = (bb >> 23) - 127
    if mode == "ceil":
        e = e + ((b & 0x7FFFFF) != 0).to(torch.int64)
    return torch.clamp(e - p["emax"], min=-127)


def _scaled_groups(xg: torch.Tensor, elem: str, mode: str, rounding: str, ug, ymax: float,
                   tscale: Optional[float], shrink=None, return_ok: bool = False):
    """Block-scaled fake quantization of each row of xg (FORMATS.md sections 3-5; torchao's to_mx and
    nvfp4_quantize for the E8M0 and E4M3 scales). `shrink`, `return_ok`: as in _quant_groups."""
    p = float_params(elem)
    bad = ~torch.isfinite(xg).all(dim=1, keepdim=True)
    xs = torch.where(bad, torch.zeros_like(xg), xg)
    amax = xs.abs().amax(dim=1, keepdim=True)
    if shrink is not None:
        amax = amax * shrink
    zero = torch.zeros_like(bad)
    if mode == "amax":
        s = amax / torch.tensor(p["max"], dtype=_F32)
    elif mode in ("e4m3", "e4m3_block"):
        bs = amax / torch.tensor(p["max"], dtype=_F32)
        if mode == "e4m3":
            if math.isnan(tscale):
                bad = torch.ones_like(bad)
            elif tscale == 0.0:
                zero = torch.ones_like(zero)
            else:
                bs = bs / torch.tensor(tscale, dtype=_F32)
        bs = torch.clamp(bs, 2.0**-6, 448.0)
        S = round_float(bs, "fp8_e4m3")
        s = torch.tensor(tscale, dtype=_F32) * S if mode == "e4m3" and tscale == tscale and tscale != 0 else S
    else:
        e = _pow2_exponent(amax, mode, p)
        bad = bad | (e > 127)
        s = torch.pow(torch.tensor(2.0, dtype=_F64), torch.clamp(e, max=127).to(_F64)).to(_F32)
    zero = zero | (s == 0)
    safe_s = torch.where(zero | bad, torch.ones_like(s), s)
    q = round_float(xs / safe_s, elem, rounding, ug, saturate=True)
    y = torch.clamp(q * safe_s, -ymax, ymax)
    y = torch.where(zero, torch.copysign(torch.zeros_like(xs), xs), y)
    y = torch.where(bad, torch.full_like(y, math.nan), y)
    if return_ok:
        return y, ~bad & ~zero
    return y


def _observed(xg: torch.Tensor, quant, observer: str, rounding: str, ug):
    """quant(rounding, ug, shrink) of the groups, with the shrink chosen by the observer."""
    if observer == "minmax":
        return quant(rounding, ug, None)
    _, ok0 = quant("rne", None, None, True)  # the C searches only groups whose min/max scale is usable
    choice = _mse_groups(xg, lambda p: quant("rne", None, p, True))
    # groups quantized with their own p: one pass per distinct p
    y = quant(rounding, ug, None)
    for p in torch.unique(choice).tolist():
        if p == 1.0:
            continue
        yp = quant(rounding, ug, torch.tensor(p, dtype=_F32))
        y = torch.where((choice == p) & ok0, yp, y)
    return y


def fake_quant(x: torch.Tensor, name: str, group_size: Union[int, str, None] = None, rounding: str = "rne",
               seed: int = 0, saturate: Optional[bool] = None, mask: Optional[torch.Tensor] = None,
               sparsify_first: bool = True, scale_mode: Optional[str] = None,
               observer: str = "minmax") -> torch.Tensor:
    """Reference of qsparse.fake_quant for a canonical format name. group_size: None (format default), int,
    'row' or 'tensor'; scale_mode: None (format default) or one of qsparse.formats.SCALE_MODES. Output in x's
    dtype."""
    family, bits = parse_name(name)
    elem = None
    if family == "scaled":
        elem, block, default_mode = SCALED_FORMATS[name]
        mode = scale_mode or default_mode
        group_size = block if group_size is None else group_size
    elif family == "float" and (group_size is not None or scale_mode not in (None, "none")):
        elem, mode = name, scale_mode or "amax"
        group_size = "row" if group_size is None else group_size
    if elem is not None:
        family = "scaled"
    shape, dtype = x.shape, x.dtype
    cols = shape[-1] if x.dim() > 0 else 1
    x2 = x.reshape(-1, cols).to(_F32)
    m2 = mask.reshape(-1, cols) if mask is not None else None
    if m2 is not None and sparsify_first:
        x2 = torch.where(m2, x2, torch.zeros((), dtype=_F32))
    rows = x2.shape[0]
    index = torch.arange(rows * cols, dtype=torch.int64).reshape(rows, cols)
    u = _unit(rand24(seed, index)) if rounding == "stochastic" else None
    if family == "float":
        y = round_float(x2, name, rounding, u, saturate)
    else:
        if family == "scaled":
            tscale = None
            if mode == "e4m3":  # binary32 tensor scale amax / (max_elem * 448), NaN for a non-finite tensor
                a = x2.abs().amax() if x2.numel() else torch.zeros((), dtype=_F32)
                tdiv = torch.tensor(float_params(elem)["max"] * 448.0, dtype=_F32)
                tscale = float(a / tdiv) if torch.isfinite(x2).all() else math.nan
            g = group_size

            def quant(r, u_, sh, ok=False):
                return _scaled_groups(xg, elem, mode, r, u_, DTYPE_MAX[dtype], tscale, sh, ok)
        else:
            g = group_size if group_size is not None else ("row" if family != "bfp" else 32)

            def quant(r, u_, sh, ok=False):
                return _quant_groups(xg, family, bits, r, u_, DTYPE_MAX[dtype], sh, ok)
        xg, restore = _group_view(x2, g)
        ug = None
        if u is not None:
            ug, _ = _group_view(u, g)
            ug = ug.to(_F32)
        y = restore(_observed(xg, quant, observer, rounding, ug))
    if m2 is not None:
        y = torch.where(m2, y, torch.zeros((), dtype=_F32))
    return y.to(dtype).reshape(shape)


# ---- transforms ---------------------------------------------------------------------------------------------------


def hadamard(x: torch.Tensor, group: int) -> torch.Tensor:
    """Normalized Walsh-Hadamard transform of every group of `group` consecutive elements of the last dimension
    (FORMATS.md section 8): binary32 butterflies at strides 1, 2, ..., g/2 ((a, b) -> (a + b, a - b)), then one
    multiplication by fl32(1 / sqrt(g)). Output in x's dtype."""
    shape, dtype = x.shape, x.dtype
    v = x.reshape(-1, group).to(_F32).clone()
    h = 1
    while h < group:
        w = v.view(-1, group // (2 * h), 2, h)
        a, b = w[:, :, 0, :].clone(), w[:, :, 1, :].clone()
        w[:, :, 0, :] = a + b
        w[:, :, 1, :] = a - b
        h *= 2
    scale = torch.tensor(1.0 / math.sqrt(group), dtype=_F32)
    return (v * scale).reshape(shape).to(dtype)


# ---- masks -------------------------------------------------------------------------------------------------------


def nm_mask(scores: torch.Tensor, keep: int, group: int) -> torch.Tensor:
    """Keep the `keep` highest scores of each `group` consecutive entries of a row: rank by score (NaN highest,
    -0 == +0), ties to the lower index; a partial last group keeps min(keep, its length)."""
    shape = scores.shape
    cols = shape[-1] if scores.dim() > 0 else 1
    s = scores.reshape(-1, cols).to(_F64)
    rows = s.shape[0]
    pad = (-cols) % group
    sp = torch.nn.functional.pad(s, (0, pad)).reshape(-1, group)
    valid = torch.nn.functional.pad(torch.ones_like(s, dtype=torch.bool), (0, pad)).reshape(-1, group)
    a, b = sp.unsqueeze(2), sp.unsqueeze(1)  # a: entry i, b: entry j
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    j_gt_i = (nan_b & ~nan_a) | (b > a)
    j_eq_i = (nan_a & nan_b) | (a == b)
    idx = torch.arange(group)
    j_before_i = (idx.unsqueeze(0) < idx.unsqueeze(1)).unsqueeze(0)  # [i, j]: j < i
    above = ((j_gt_i | (j_eq_i & j_before_i)) & valid.unsqueeze(1)).sum(dim=2)
    kept = (above < keep) & valid
    return kept.reshape(rows, cols + pad)[:, :cols].reshape(shape)


def magnitude_mask(w: torch.Tensor, sparsity: float, per_row: bool = False) -> torch.Tensor:
    """Prune floor(n * sparsity) entries with the smallest |w| (NaN largest), the higher index first among
    equal magnitudes; n per tensor or per row."""
    shape = w.shape
    cols = shape[-1] if w.dim() > 0 else 1
    a = w.reshape(-1, cols).to(_F64).abs()
    if not per_row:
        a = a.reshape(1, -1)
    n = a.shape[1]
    k = int(n * sparsity)
    keep = torch.ones_like(a, dtype=torch.bool)
    for r in range(a.shape[0]):
        row = a[r]
        order = torch.arange(n - 1, -1, -1)  # index descending: ties prune the highest index first
        mag = torch.where(torch.isnan(row), torch.zeros_like(row), row)
        order = order[torch.sort(mag[order], stable=True).indices]
        order = order[torch.sort(torch.isnan(row[order]).to(torch.int8), stable=True).indices]
        keep[r, order[:k]] = False
    return keep.reshape(shape)


__all__ = ["fake_quant", "hadamard", "round_float", "nm_mask", "magnitude_mask", "rand24", "float_params", "parse_name",
           "FLOAT_FORMATS", "FLT_MAX", "DTYPE_MAX"]
