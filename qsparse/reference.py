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


# Lookup grids of FORMATS.md section 7, in BitMoD's integer units (typed from the spec, not read from the C table).
_FP3 = [-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0]
_FP4 = [-12.0, -8.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]
BITMOD_GRIDS = {
    "int3": [float(v) for v in range(-3, 4)],
    "int4": [float(v) for v in range(-7, 8)],
    "fp3": _FP3,
    "fp4": _FP4,
    "flint4": [-16.0, -8.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0],
    "fp3_er_pos": sorted(_FP3 + [3.0]), "fp3_er_neg": sorted(_FP3 + [-3.0]),
    "fp3_ea_pos": sorted(_FP3 + [6.0]), "fp3_ea_neg": sorted(_FP3 + [-6.0]),
    "fp4_er_pos": sorted(_FP4 + [10.0]), "fp4_er_neg": sorted(_FP4 + [-10.0]),
    "fp4_ea_pos": sorted(_FP4 + [16.0]), "fp4_ea_neg": sorted(_FP4 + [-16.0]),
}
# Lookup-grid formats: (grids in search order, default group, BitMoD's MX scale)
LUT_FORMATS = {
    **{g: ([g], 128, False) for g in ("flint4", "fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg",
                                       "fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg")},
    **{f"mixed_ant{b}": ([f"int{b}", "flint4" if b == 4 else "fp3"], 128, False) for b in (3, 4)},
    **{f"mixed_er{b}": ([f"fp{b}_er_pos", f"fp{b}_er_neg"], 128, False) for b in (3, 4)},
    **{f"mixed_ea{b}": ([f"fp{b}_ea_pos", f"fp{b}_ea_neg"], 128, False) for b in (3, 4)},
    **{f"mixed_bitmod{b}": ([f"fp{b}_er_pos", f"fp{b}_er_neg", f"fp{b}_ea_pos", f"fp{b}_ea_neg"], 128, False)
       for b in (3, 4)},
    **{f"mx_{t}{b}": ([f"{t}{b}"], 32, True) for t in ("fp", "int") for b in (3, 4)},
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
    if name in LUT_FORMATS:
        return "lut", 3 if name.endswith("3") or name.startswith("fp3") else 4
    if _FIXED.fullmatch(name):
        return "llmq", fixed_params(name)[0]
    if _LLMQ.fullmatch(name):
        return "llmq", int(_LLMQ.fullmatch(name).group(2) or _LLMQ.fullmatch(name).group(3))
    raise ValueError(f"reference: unknown format {name!r}")


# ---- llm-mixed-q's exponent-first quantizers (FORMATS.md sections 2, 3, 6), in binary32 as its torch code runs --

_LLMQ = re.compile(r"(log|bl)([2-8])|(?:dmf|bmf)([3-8])_e([1-7])m([0-6])")
_BIAS_MAX = 255.0  # 8-bit block bias


def llmq_params(name: str) -> dict:
    """kind ('log', 'dmf', 'bmf'), block (bias per block), ebits, mbits, top exponent code, element bias."""
    m = _LLMQ.fullmatch(name)
    if m.group(1):
        w = int(m.group(2))
        return dict(kind="log", block=m.group(1) == "bl", ebits=w - 1, mbits=0, top=2 ** (w - 1) - 1,
                    bias=2 ** (w - 2) - 1)
    e, mb = int(m.group(4)), int(m.group(5))
    return dict(kind=name[:3], block=name.startswith("bmf"), ebits=e, mbits=mb, top=2**e - 1, bias=2 ** (e - 1) - 1)


def _f32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=_F32)


def _log2f(v: torch.Tensor) -> torch.Tensor:
    """The correctly rounded binary32 log2 (the double log2 rounded)."""
    return torch.log2(v.to(_F64)).to(_F32)


def _pow2f(e: torch.Tensor) -> torch.Tensor:
    """2^e in binary32 for integral e (0 below 2^-149, Inf above 2^127, NaN for NaN)."""
    return torch.exp2(e.to(_F64)).to(_F32)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _rounder(dtype):
    """R(t): a binary32 result rounded to `dtype` (binary16, bfloat16), as each torch op on a tensor of that dtype
    rounds its binary32 opmath result (and TensorIterator casts a Python scalar operand to the dtype first); the
    identity for binary32."""
    if dtype == _F32:
        return _same
    return lambda t: t.to(dtype).to(_F32)


def _llmq_log(x, b, top, R=_same, block=False):
    """log{w} / bl{w}: sign(x + c) * 2^clamp(round(log2(|x| + c)), -b, top - b), c = 0.1 * 2^-b; R rounds each op to
    a half-precision input's dtype (the profile): c is a Python float for log{w} (not rounded), a tensor of the dtype
    for bl{w}, R(R(2^-b) * R(0.1)); a Python scalar is cast to the dtype first (TensorIterator's CPU scalars)."""
    if R is _same:
        c = _pow2f(-b) * _f32(0.1)
    else:
        c = R(R(_pow2f(-b)) * R(_f32(0.1))) if block else R(_pow2f(-b) * _f32(0.1))
    sign = torch.sign(R(x + c))
    e = torch.clamp(torch.round(R(_log2f(R(x.abs() + c)))), -b, top - b)
    return sign * R(_pow2f(e))


def _llmq_mini(x, b, top, mbits, ieee, R=_same):
    """(2^e, mantissa) of llm-mixed-q's minifloat_ieee (ieee) or minifloat_denorm, bias b, exponent codes 0..top;
    R: each op rounded to the input's dtype (the profile on half-precision inputs), Python scalars too."""
    S = float(2**mbits)
    v = x.abs()
    lg = R(_log2f(R(v + R(_f32(1e-9)))))
    e = torch.clamp(torch.floor(lg) if ieee else torch.ceil(lg), -b, top - b)
    p = R(_pow2f(e))
    mant = R(v / p)
    if not ieee:
        return p, R(torch.clamp(torch.round(R(mant * S)), 0, S - 1) / S)
    normal = ~torch.isclose(e, -b)
    sm = normal * torch.clamp(torch.round(R(R(mant * S) - S)), 0, S - 1) + \
        (~normal) * torch.clamp(torch.round(R(R(mant * S) / 2)), 0, S - 1)
    return p, normal * R(1.0 + R(sm / S)) + (~normal) * R(R(sm / S) * 2)


def _llmq_msfp(x, E, mbits, R=_same):
    S = float(2**mbits)
    p = R(_pow2f(E))
    mant = R(R(x.abs() + R(_f32(1e-9))) / p)
    return R(R(torch.sign(R(x + R(_f32(1e-9)))) * p) * R(torch.clamp(torch.round(R(mant * S)), 0, S - 1) / S))


def _blend(x, q, R=_same):
    """(~isclose(x, 0)) * q + isclose(x, 0) * x; isclose's allowed error atol + rtol * |0| is computed in x's dtype:
    1e-8 rounded to it (0 in binary16)."""
    close = torch.isfinite(x) & (x.abs() <= R(_f32(1e-8)))
    return (~close) * q + close * x


def _zero_block_max(amax: torch.Tensor) -> torch.Tensor:
    """The source's replacement of the blocks' max |x| (block_log.py, block_minifloat.py, block_fp.py): all zero ->
    ones; else each zero max becomes the smallest nonzero one (NaN when a block max is NaN: torch's min)."""
    if bool((amax == 0).all()):
        return torch.ones_like(amax)
    amax = amax.clone()
    amax[amax == 0] = amax[amax != 0].min()
    return amax


def _fpq_e2m1(y: torch.Tensor) -> torch.Tensor:
    """FP-Quant's E2M1 thresholds (nearest, a tie toward zero), sign from y > 0."""
    a = y.abs()
    q = torch.zeros_like(a)
    for t, v in ((0.25, 0.5), (0.75, 1.0), (1.25, 1.5), (1.75, 2.0), (2.5, 3.0), (3.5, 4.0), (5.0, 6.0)):
        q = torch.where(a > t, torch.tensor(v, dtype=_F32), q)
    return torch.where(y > 0, q, -q)


def fpquant_fake_quant(x: torch.Tensor, name: str, group_size: Union[int, str, None] = None,
                       mask: Optional[torch.Tensor] = None, sparsify_first: bool = True) -> torch.Tensor:
    """Reference of compat='fpquant' (IST-DASLab/FP-Quant's mxfp4 / nvfp4 Triton quantizers without rotation), in
    binary32 torch operations; E4M3 block scales through torch's float8_e4m3fn cast."""
    shape, dtype, cols, x2, m2 = _as_rows(x, mask, sparsify_first)
    mx = name == "mxfp4"
    g = group_size if group_size is not None else (32 if mx else 16)
    xg, restore = _group_view(x2, g)
    amax = xg.abs().amax(dim=1, keepdim=True) if xg.shape[1] else torch.zeros(xg.shape[0], 1, dtype=_F32)
    bad = ~torch.isfinite(xg).all(dim=1, keepdim=True)
    if mx:
        e = torch.floor(torch.log2(torch.clamp(amax, min=2.0**-126).to(_F64))).to(_F32)
        s = torch.exp2(e - 2) / _f32(0.75)
        y = _fpq_e2m1(xg / s) * s
    else:
        at = x2.abs().amax() if x2.numel() else torch.zeros((), dtype=_F32)
        if not torch.isfinite(x2).all():
            bad = torch.ones_like(bad)
        gs = _f32(2688.0) / at
        S = torch.clamp(gs * amax / _f32(6.0), 0.0, 448.0).to(torch.float8_e4m3fn).to(_F32)
        y = _fpq_e2m1(xg * gs / S) * S / gs
        if float(at) == 0.0:
            y = torch.copysign(torch.zeros_like(xg), xg)
    y = torch.where(bad, torch.full((), math.nan, dtype=_F32), y)
    y = torch.clamp(restore(y), -DTYPE_MAX[dtype], DTYPE_MAX[dtype])
    if m2 is not None:
        y = torch.where(m2, y, torch.zeros((), dtype=_F32))
    return y.to(dtype).reshape(shape)


# ---- llm-mixed-q's fixed point (its integer_quantizer, signed), from the spec in float64 ----------------------------

_FIXED = re.compile(r"fixed([0-9]+)_f(m?)([0-9]+)")


def fixed_params(name: str) -> tuple:
    """(width w, fraction width f) of fixed{w}_f{f} / fixed{w}_fm{-f}."""
    m = _FIXED.fullmatch(name)
    return int(m.group(1)), int(m.group(3)) * (-1 if m.group(2) else 1)


def fixed_fake_quant(x: torch.Tensor, name: str, mask: Optional[torch.Tensor] = None,
                     sparsify_first: bool = True) -> torch.Tensor:
    """x_hat = clamp(round(x * 2^f), -2^(w-1), 2^(w-1) - 1) / 2^f in float64 (round half to even), element-wise;
    NaN stays NaN, +-Inf clamps to the grid's ends; stored without overflowing the dtype (fp16 with f < 0)."""
    w, f = fixed_params(name)
    shape, dtype, cols, x2, m2 = _as_rows(x, mask, sparsify_first)
    v = x2.to(torch.float64) * 2.0**f
    q = torch.clamp(torch.round(v), -(2.0 ** (w - 1)), 2.0 ** (w - 1) - 1)  # torch.clamp keeps NaN
    y = torch.clamp(q / 2.0**f, -DTYPE_MAX[dtype], DTYPE_MAX[dtype])
    if m2 is not None:
        y = torch.where(m2, y, torch.zeros((), dtype=torch.float64))
    return y.to(dtype).reshape(shape)


def _unfold_view(x: torch.Tensor, block_shape) -> tuple:
    """llm-mixed-q's _block_2d_weight: x (R, C) zero padded to multiples of the block (a, b) (-1 or a size above the
    dimension: the whole dimension), F.unfold with kernel = stride = (a, b) -> (blocks, a * b), and its F.fold back."""
    R, C = x.shape
    a, b = (d if (v == -1 or v > d) else v for v, d in zip(block_shape, (R, C)))
    pr, pc = (-R) % a, (-C) % b
    xp = torch.nn.functional.pad(x, (0, pc, 0, pr))
    blocks = torch.nn.functional.unfold(xp[None, None], kernel_size=(a, b), stride=(a, b))[0]  # (a * b, blocks)

    def restore(g):
        y = torch.nn.functional.fold(g.t().contiguous(), output_size=(R + pr, C + pc), kernel_size=(a, b),
                                     stride=(a, b))
        return y[0, :R, :C]
    return blocks.t().contiguous(), restore


def llmq_fake_quant(x: torch.Tensor, name: str, group_size: Union[int, str, None] = None,
                    compat: Optional[str] = None, mask: Optional[torch.Tensor] = None,
                    sparsify_first: bool = True, block_shape=None) -> torch.Tensor:
    """Reference of the llm-mixed-q formats (log{w}, bl{w}, dmf*, bmf*) and of the llm-mixed-q profile of the
    minifloats fp{w}_e{E}m{M} (element-wise) and bfp{w} (MSFP, block 32 by default). Default (compat None): the
    source's magnitude with x's sign, |x| <= 1e-8 as a signed zero (dmf, bmf), NaN kept, Inf saturating (element
    rows), a block holding NaN or Inf all NaN. Profile: the source's arithmetic (each op rounded to a float16 /
    bfloat16 input's dtype), its output blend and its zero-block max replacement; block_shape (a, b): its 2-D
    weight tiles through F.unfold / F.fold, as utils.py's _block_2d_weight."""
    src = compat == "llm-mixed-q"
    family, bits = parse_name(name)
    shape, dtype, cols, x2, m2 = _as_rows(x, mask, sparsify_first)
    if family == "float":
        e, mb = _float_row(name)[:2]
        p = dict(kind="ieee", block=False, ebits=e, mbits=mb, top=2**e - 1, bias=2 ** (e - 1) - 1)
    elif family == "bfp":
        p = dict(kind="msfp", block=True, mbits=bits - 1)
    else:
        p = llmq_params(name)
    if p["block"] and block_shape is not None:  # the profile's 2-D weight blocks
        xg, restore = _unfold_view(x2, block_shape)
    elif p["block"]:
        g = group_size if group_size is not None else (32 if family == "bfp" else 16)
        xg, restore = _group_view(x2, g)
    else:
        xg, restore = x2, (lambda t: t)
    R = _rounder(dtype) if src and p["kind"] != "fixed" else _same  # the source's torch ops in a half dtype
    if p["block"]:
        amax = xg.abs().amax(dim=1, keepdim=True) if xg.shape[1] else torch.zeros(xg.shape[0], 1, dtype=_F32)
        if src and amax.numel():
            amax = _zero_block_max(amax)
        lg = R(_log2f(amax))
        if p["kind"] == "log":
            b = torch.clamp(p["top"] - torch.ceil(lg), 0, _BIAS_MAX)
        elif p["kind"] == "bmf":
            b = torch.clamp(torch.floor(lg), 0, _BIAS_MAX)
        else:
            b = torch.clamp(torch.ceil(lg), -127, 128)
        bad = torch.isnan(amax) if src else ~torch.isfinite(amax)
    else:
        b = torch.full((xg.shape[0], 1), float(p["bias"]), dtype=_F32)
        bad = torch.zeros((xg.shape[0], 1), dtype=torch.bool)
    if p["kind"] == "log":
        y = _llmq_log(xg, b, float(p["top"]), R, p["block"])
    elif p["kind"] == "msfp":
        y = _blend(xg, _llmq_msfp(xg, b, p["mbits"], R), R)
    else:
        pw, m = _llmq_mini(xg, b, float(p["top"]), p["mbits"], p["kind"] != "dmf", R)
        if src:
            y = _blend(xg, R(R(torch.sign(R(xg + R(_f32(1e-9)))) * pw) * m), R)
        else:
            y = torch.where(xg.abs() <= _f32(1e-8), torch.zeros((), dtype=_F32), pw * m)
            y = torch.where(torch.isnan(xg), xg, torch.copysign(y, xg))
    y = torch.where(bad, torch.full((), math.nan, dtype=_F32), y)
    y = restore(y)
    if R is _same:  # stored without overflowing (log6 in fp16); the source's own fp16 arithmetic gives Inf
        y = torch.clamp(y, -DTYPE_MAX[dtype], DTYPE_MAX[dtype])
    if m2 is not None:
        y = torch.where(m2, y, torch.zeros((), dtype=_F32))
    return y.to(dtype).reshape(shape)


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
    if rounding == "half_away":  # the sum |v| + 0.5 in binary32, as microxcaling computes it
        return torch.copysign(torch.floor(v.to(_F32).abs() + 0.5), v.to(_F32)).to(v.dtype)
    if rounding == "ties_lower":  # exact in float64: ceil(v - 0.5)
        q = torch.ceil(v.to(_F64) - 0.5)
        return torch.where(q == 0, torch.copysign(torch.zeros_like(q), v.to(_F64)), q).to(v.dtype)
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
    v = a_f / quantum  # exact; rounded on magnitudes, so ties_lower goes up in magnitude for negative x
    if rounding == "ties_lower":
        r = torch.where(x.to(_F64) < 0, torch.floor(v + 0.5), torch.ceil(v - 0.5)) * quantum
    else:
        r = _round(v, rounding, u) * quantum  # exact in float64
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


_PROFILE = [None]  # the compat profile of the fake_quant call in progress (read by _pow2_exponent)


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
    if mode == "floor" and _PROFILE[0] == "microxcaling":
        # mx_ops.py: floor(torch.log2(amax)) in binary32 (log2 correctly rounded to binary32 here)
        normal = amax >= 2.0**-126
        l2 = torch.floor(torch.log2(torch.where(normal, amax, torch.ones_like(amax)).to(_F64)).to(_F32))
        e = torch.where(normal, l2.to(torch.int64), e)
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


# ---- lookup grids and the bitmod profile (FORMATS.md section 7; BitMoD quant_weight.py) -----------------------------


def nearest_lower(y: torch.Tensor, values) -> torch.Tensor:
    """BitMoD's quantization onto a sorted grid: value i where mid(i-1) < y <= mid(i), a tie to the lower value; in
    y's dtype (the grid values are exact in binary16)."""
    mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
    q = torch.zeros_like(y)
    for i, v in enumerate(values):
        if i == 0:
            cond = y <= mids[0]
        elif i == len(values) - 1:
            cond = y > mids[-1]
        else:
            cond = (y > mids[i - 1]) & (y <= mids[i])
        q = q + torch.where(cond, torch.tensor(v, dtype=y.dtype), torch.zeros((), dtype=y.dtype))
    return q


def minifloat_units(name: str) -> list:
    """A minifloat's grid in units of its smallest subnormal, mirrored (BitMoD's FP4_E2M1 = 0, +-1, ..., +-12)."""
    p = float_params(name)
    unit = 2.0 ** (p["emin"] - p["mbits"])
    pos = {0.0}
    pos.update(k for k in range(1, 2 ** p["mbits"]))
    for e in range(p["emin"], p["emax"] + 1):
        pos.update((1.0 + k * 2.0 ** -p["mbits"]) * 2.0**e / unit for k in range(2 ** p["mbits"]))
    pos = sorted(v for v in pos if v <= p["max"] / unit)
    return [-v for v in reversed(pos[1:])] + pos


def _lanes_sum(sq: torch.Tensor) -> torch.Tensor:
    """sum over dim 1 in qsparse's order: element j into lane j % 8 (in order), then the lanes in order (binary32)."""
    lanes = torch.zeros((sq.shape[0], 8), dtype=_F32)
    for j in range(sq.shape[1]):
        lanes[:, j % 8] += sq[:, j]
    total = torch.zeros(sq.shape[0], dtype=_F32)
    for lane in range(8):
        total = total + lanes[:, lane]
    return total


def _lut_block(xb: torch.Tensor, grids: list, pow2: bool, f16: bool, ymax: float):
    """One group column block (rows, n) of a lookup-grid format: (outputs float32, choice per row)."""
    rows, n = xb.shape
    bad = ~torch.isfinite(xb.half() if f16 else xb).all(dim=1)
    xs = torch.where(bad[:, None], torch.zeros_like(xb), xb)
    results = []
    for values in grids:
        gmax = max(abs(v) for v in values)
        if f16 and not pow2:  # quant_datatype, verbatim
            w = xs.half()
            s = (w.abs().amax(dim=1, keepdim=True) / gmax).clamp(min=1e-5, max=1e4)
            out = nearest_lower(w / s, values) * s
            err = ((out - w) * (out - w)).double().sum(dim=1).float() / n
            results.append((out.float(), err.half().float(), torch.zeros(rows, dtype=torch.bool)))
            continue
        w = xs.half().float() if f16 else xs
        amax = w.abs().amax(dim=1, keepdim=True)
        zero = amax[:, 0] == 0
        if pow2:  # quant_mx: E = floor(log2 amax) (torch.log2 in binary32 under f16), y = x / 2^E / (2 / gmax)
            if f16:
                e = torch.floor(torch.log2(amax.double()).float().double())
            else:
                mant, ex = torch.frexp(amax.double())
                e = (ex - 1).double()
            e = torch.where(amax == 0, torch.zeros_like(e), e)
            s2 = torch.pow(2.0, e).float()
            c = torch.tensor(2.0 / gmax, dtype=_F32)
            out = (nearest_lower((w / s2) / c, values) * c) * s2
            if f16:
                out = out.half().float()
        else:
            s = amax / torch.tensor(gmax, dtype=_F32)
            safe = torch.where(s == 0, torch.ones_like(s), s)
            out = nearest_lower(w / safe, values) * safe
        out = torch.clamp(out, -ymax, ymax)
        out = torch.where(zero[:, None], torch.zeros_like(out), out)
        results.append((out, _lanes_sum((out - w) * (out - w)), zero))
    best = torch.full((rows,), 1e3 if f16 else math.inf, dtype=_F32)
    choice = torch.full((rows,), 255 if f16 else 0, dtype=torch.int64)
    y = torch.zeros_like(xb)
    if len(grids) == 1:
        choice = torch.zeros_like(choice)
        y = results[0][0]
    else:
        for c, (out, err, zero) in enumerate(results):
            better = (err < best) & ~zero
            best = torch.where(better, err, best)
            choice = torch.where(better, torch.full_like(choice, c), choice)
            y = torch.where(better[:, None], out, y)
        zero0 = results[0][2]
        choice = torch.where(zero0, torch.zeros_like(choice), choice)
    y = torch.where(bad[:, None], torch.full_like(y, math.nan), y)
    choice = torch.where(bad, torch.zeros_like(choice), choice)
    return y, choice


def _bitmod_int_block(xb: torch.Tensor, bits: int, asym: bool, ymax: float) -> torch.Tensor:
    """BitMoD's quant_int / quant_int_asym on one group column block, verbatim in binary16."""
    w = xb.half()
    bad = ~torch.isfinite(w).all(dim=1, keepdim=True)
    w = torch.where(bad, torch.zeros_like(w), w)
    if asym:
        rmin, rmax = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
        qmax = 2**bits - 1
        s = ((rmax - rmin) / qmax).clamp(min=1e-5, max=1e4)
        zp = torch.round(-rmin / s).clamp(min=0, max=qmax)
        q = torch.clamp(torch.round(w / s) + zp, min=0, max=qmax)
        out = (q - zp) * s
    else:
        qmax = 2 ** (bits - 1) - 1
        s = (w.abs().amax(dim=1, keepdim=True) / qmax).clamp(min=1e-5, max=1e4)
        out = torch.clamp(torch.round(w / s), min=-qmax, max=qmax) * s
    out = torch.clamp(out.float(), -ymax, ymax)
    return torch.where(bad, torch.full_like(out, math.nan), out)


def _as_rows(x: torch.Tensor, mask: Optional[torch.Tensor], sparsify_first: bool) -> tuple:
    """(shape, dtype, cols, x as float32 rows with masked-before positions zeroed, the mask as rows or None)."""
    cols = x.shape[-1] if x.dim() > 0 else 1
    x2 = x.reshape(-1, cols).to(_F32)
    m2 = mask.reshape(-1, cols) if mask is not None else None
    if m2 is not None and sparsify_first:
        x2 = torch.where(m2, x2, torch.zeros((), dtype=_F32))
    return x.shape, x.dtype, cols, x2, m2


def lut_fake_quant(x: torch.Tensor, name: str, group_size: Union[int, str, None] = None,
                   compat: Optional[str] = None, mask: Optional[torch.Tensor] = None, sparsify_first: bool = True,
                   return_choice: bool = False):
    """Reference of qsparse.fake_quant (and group_choices) for a lookup-grid format, or for int{b}, int{b}_asym and
    minifloats (with a group size) under compat='bitmod'. Output in x's dtype."""
    f16 = compat == "bitmod"
    if name in LUT_FORMATS:
        grid_names, default_group, pow2 = LUT_FORMATS[name]
        grids = [BITMOD_GRIDS[g] for g in grid_names]
        kind = "lut"
    else:
        family, bits = parse_name(name)
        default_group, pow2 = "row", False
        kind = family if family in ("int_sym", "int_asym") else "lut"
        grids = [minifloat_units(name)] if kind == "lut" else None
    group = default_group if group_size is None else group_size
    shape, dtype, cols, x2, m2 = _as_rows(x, mask, sparsify_first)
    g = cols if group == "row" or group >= cols else group
    ys, choices = [], []
    for c0 in range(0, cols, g):
        xb = x2[:, c0:c0 + g]
        if kind == "lut":
            yb, cb = _lut_block(xb, grids, pow2, f16, DTYPE_MAX[dtype])
        else:
            yb, cb = _bitmod_int_block(xb, bits, kind == "int_asym", DTYPE_MAX[dtype]), None
        ys.append(yb)
        choices.append(cb)
    y = torch.cat(ys, dim=1) if ys else x2.clone()
    if m2 is not None:
        y = torch.where(m2, y, torch.zeros((), dtype=_F32))
    y = y.to(dtype).reshape(shape)
    if return_choice:
        return y, torch.stack(choices, dim=1).to(torch.uint8) if choices else None
    return y


def fake_quant(x: torch.Tensor, name: str, group_size: Union[int, str, None] = None, rounding: str = "rne",
               seed: int = 0, saturate: Optional[bool] = None, mask: Optional[torch.Tensor] = None,
               sparsify_first: bool = True, scale_mode: Optional[str] = None,
               observer: str = "minmax", compat: Optional[str] = None, block_shape=None) -> torch.Tensor:
    """Reference of qsparse.fake_quant for a canonical format name. group_size: None (format default), int,
    'row' or 'tensor'; scale_mode: None (format default) or one of qsparse.formats.SCALE_MODES; compat: None or a
    profile (bitmod, microxcaling; torchao and hbfp only change defaults, which the caller passes). Output in x's
    dtype."""
    family, bits = parse_name(name)
    if _FIXED.fullmatch(name):  # the source has no blend: the llm-mixed-q profile is the same arithmetic
        return fixed_fake_quant(x, name, mask, sparsify_first)
    if compat == "fpquant":
        return fpquant_fake_quant(x, name, group_size, mask, sparsify_first)
    if family == "llmq" or compat == "llm-mixed-q":
        return llmq_fake_quant(x, name, group_size, compat, mask, sparsify_first, block_shape)
    if family == "lut" or compat == "bitmod":
        return lut_fake_quant(x, name, group_size, compat, mask, sparsify_first)
    _PROFILE[0] = compat
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
    shape, dtype, cols, x2, m2 = _as_rows(x, mask, sparsify_first)
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
