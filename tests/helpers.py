"""Shared helpers of the numerics tests: bit-exact comparison, SQNR, the format table split by family, hand-typed
spec constants (FORMATS.md sections 1-3) and an independent minifloat decoder.

Nothing here calls the native kernels except `qsparse.formats.table()` (to parametrize over the table). The spec
constants below are typed by hand from the standards, not computed by the code under test.
"""
from __future__ import annotations

import contextlib
import math
import re
from fractions import Fraction

import torch

import qsparse
from qsparse import formats

FLT_MAX = 3.4028234663852886e38
F32_MIN_NORMAL = 2.0**-126
F32_MAX_SUBNORMAL = 2.0**-126 - 2.0**-149
F32_MIN_SUBNORMAL = 2.0**-149

# ---- the format table, split by what a test needs --------------------------------------------------------------

TABLE = formats.table()
ALL_FORMATS = tuple(f.name for f in TABLE)
# Formats that take every common option (stochastic rounding, per-tensor groups): all but the lookup grids, which
# round by their own rule, quantize per group or row, and have their own suite (test_lut.py).
# llm-mixed-q's formats (family llmq) round half to even only and have their own suite too (test_llmq.py).
COMMON_FORMATS = tuple(f.name for f in TABLE if f.family not in ("lut", "llmq"))
ELEMENT_FORMATS = tuple(f.name for f in TABLE if f.elementwise and f.family != "llmq")
GROUP_FORMATS = tuple(f.name for f in TABLE if not f.elementwise and f.family not in ("scaled", "lut", "llmq"))
LLMQ_FORMATS = tuple(f.name for f in TABLE if f.family == "llmq" and not f.fixed_point)  # exponent-first
FIXED_FORMATS = tuple(f.name for f in TABLE if f.fixed_point)  # llm-mixed-q's integer, fixed{w}_f0
LUT_FORMATS = tuple(f.name for f in TABLE if f.family == "lut")
SCALED_FORMATS = tuple(f.name for f in TABLE if f.family == "scaled")
CODE_FORMATS = tuple(f.name for f in TABLE if f.has_codes)
INT_FORMATS = tuple(f.name for f in TABLE if f.family.startswith("int"))
BFP_FORMATS = tuple(f.name for f in TABLE if f.family == "bfp")


def info(name):
    return formats.get(name)


def saturate_options(name):
    """The saturate values an element format accepts: False only where there is an Inf or NaN to overflow to."""
    f = info(name)
    return (None, True, False) if f.has_inf or f.has_nan else (None, True)


# ---- hand-typed spec constants of the element formats -------------------------------------------------------------
# ebits, mbits, bias, emin, emax (unbiased exponents of the smallest normal / largest finite binade), max normal,
# min normal, min subnormal, Inf, NaN, saturating by default, element codes, NaN convention ("ieee": all-ones
# exponent with nonzero mantissa; "fn": only S.1111.111, OCP E4M3).
ELEMENT_SPEC = {
    "fp8_e4m3": dict(bits=8, ebits=4, mbits=3, bias=7, emin=-6, emax=8, max=448.0, min_normal=2.0**-6,
                     min_subnormal=2.0**-9, has_inf=False, has_nan=True, saturates=True, has_codes=True, nan="fn"),
    "fp8_e5m2": dict(bits=8, ebits=5, mbits=2, bias=15, emin=-14, emax=15, max=57344.0, min_normal=2.0**-14,
                     min_subnormal=2.0**-16, has_inf=True, has_nan=True, saturates=True, has_codes=True, nan="ieee"),
    "fp16": dict(bits=16, ebits=5, mbits=10, bias=15, emin=-14, emax=15, max=65504.0, min_normal=2.0**-14,
                 min_subnormal=2.0**-24, has_inf=True, has_nan=True, saturates=False, has_codes=False, nan="ieee"),
    "bf16": dict(bits=16, ebits=8, mbits=7, bias=127, emin=-126, emax=127, max=3.3895313892515355e38,
                 min_normal=2.0**-126, min_subnormal=2.0**-133, has_inf=True, has_nan=True, saturates=False,
                 has_codes=False, nan="ieee"),
}



def _minifloat_spec(ebits: int, mbits: int) -> dict:
    """FORMATS.md section 3's rule for fp{w}_e{E}m{M}: bias 2^(E-1) - 1, subnormals, every code finite, saturating,
    max (2 - 2^-M) * 2^(2^E - 1 - bias)."""
    bias = 2 ** (ebits - 1) - 1
    emin, emax = 1 - bias, 2**ebits - 1 - bias
    return dict(bits=1 + ebits + mbits, ebits=ebits, mbits=mbits, bias=bias, emin=emin, emax=emax,
                max=(2.0 - 2.0**-mbits) * 2.0**emax, min_normal=2.0**emin, min_subnormal=2.0 ** (emin - mbits),
                has_inf=False, has_nan=False, saturates=True, has_codes=True, nan="none")


ELEMENT_SPEC.update({f"fp{1 + e + m}_e{e}m{m}": _minifloat_spec(e, m)
                     for e in range(1, 8) for m in range(0, 7) if 3 <= 1 + e + m <= 8 and (e, m) not in ((4, 3), (5, 2))})
# MXINT8's element, k * 2^-6 with |k| <= 127 (OCP MX v1.0): the 1-bit-exponent grid with bias 1
_MXINT8_ELEM = dict(bits=8, ebits=1, mbits=6, bias=1, emin=0, emax=0, max=127 / 64, min_normal=1.0,
                    min_subnormal=2.0**-6, has_inf=False, has_nan=False, saturates=True, has_codes=False, nan="none")
# Block-scaled formats (FORMATS.md sections 4-5): element spec, default block, default scale mode, E8M0 emax
# (floor(log2(max element)), the exponents OCP MX lists: e4m3 8, e5m2 15, e3m2 4, e2m3 2, e2m1 2, int8 0)
SCALED_SPEC = {
    "mxfp8_e4m3": dict(elem="fp8_e4m3", block=32, mode="floor", emax_elem=8),
    "mxfp8_e5m2": dict(elem="fp8_e5m2", block=32, mode="floor", emax_elem=15),
    "mxfp6_e3m2": dict(elem="fp6_e3m2", block=32, mode="floor", emax_elem=4),
    "mxfp6_e2m3": dict(elem="fp6_e2m3", block=32, mode="floor", emax_elem=2),
    "mxfp4": dict(elem="fp4_e2m1", block=32, mode="floor", emax_elem=2),
    "mxint8": dict(elem=_MXINT8_ELEM, block=32, mode="floor", emax_elem=0),
    "nvfp4": dict(elem="fp4_e2m1", block=16, mode="e4m3", emax_elem=2),
}


def scaled_elem_spec(name: str) -> dict:
    e = SCALED_SPEC[name]["elem"]
    return e if isinstance(e, dict) else ELEMENT_SPEC[e]


# The maxima FORMATS.md types out, as a check of the rule above.
MINIFLOAT_MAX = {"fp4_e2m1": 6.0, "fp5_e2m2": 7.0, "fp5_e3m1": 24.0, "fp6_e2m3": 7.5, "fp6_e3m2": 28.0, "fp3_e2m0": 4.0}

# Integer code ranges per family and width, typed from FORMATS.md section 1.
INT_SYM_RANGE = {2: (-1, 1), 3: (-3, 3), 4: (-7, 7), 5: (-15, 15), 6: (-31, 31), 7: (-63, 63), 8: (-127, 127)}
INT_FULL_RANGE = {2: (-2, 1), 3: (-4, 3), 4: (-8, 7), 5: (-16, 15), 6: (-32, 31), 7: (-64, 63), 8: (-128, 127)}
INT_ASYM_RANGE = {2: (0, 3), 3: (0, 7), 4: (0, 15), 5: (0, 31), 6: (0, 63), 7: (0, 127), 8: (0, 255)}


def spec_family(name: str):
    """(family, bits) from the canonical name alone, by the naming rules of FORMATS.md (not by the table)."""
    m = re.fullmatch(r"int([0-9]+)(_full|_asym)?", name)
    if m:
        return {None: "int_sym", "_full": "int_full", "_asym": "int_asym"}[m.group(2)], int(m.group(1))
    m = re.fullmatch(r"bfp([0-9]+)", name)
    if m:
        return "bfp", int(m.group(1))
    if name in ELEMENT_SPEC:
        return "float", ELEMENT_SPEC[name]["bits"]
    if name in SCALED_SPEC:
        return "scaled", scaled_elem_spec(name)["bits"]
    m = re.fullmatch(r"(?:mixed_(?:ant|er|ea|bitmod)|mx_fp|mx_int)([34])|flint(4)|fp([34])_e[ra]_(?:pos|neg)", name)
    if m:  # FORMATS.md section 7: the ANT and BitMoD grids
        return "lut", int(next(g for g in m.groups() if g))
    m = re.fullmatch(r"(?:log|bl)([2-8])|(?:dmf|bmf)([3-8])_e[1-7]m[0-6]", name)
    if m:  # FORMATS.md sections 3 and 6: llm-mixed-q's formats
        return "llmq", int(m.group(1) or m.group(2))
    m = re.fullmatch(r"fixed([0-9]+)_fm?[0-9]+", name)
    if m:  # llm-mixed-q's fixed point (its integer quantizer): w bits, codes -2^(w-1) .. 2^(w-1) - 1
        return "llmq", int(m.group(1))
    raise AssertionError(f"format {name!r} has no hand-typed spec constants in tests/helpers.py: add them")


def int_divisor(name: str) -> float:
    """The spec's scale divisor: s = amax / divisor (sym, full), s = (xmax - xmin) / divisor (asym)."""
    fam, b = spec_family(name)
    return {"int_sym": 2 ** (b - 1) - 1, "int_full": 2 ** (b - 1) - 0.5, "int_asym": 2**b - 1}[fam]


# ---- an independent minifloat decoder ------------------------------------------------------------------------------


def decode_minifloat(code: int, spec: dict) -> float:
    """Value of a sign|exponent|mantissa code, from the bit fields and the hand-typed constants."""
    e_bits, m_bits, bias = spec["ebits"], spec["mbits"], spec["bias"]
    nbits = 1 + e_bits + m_bits
    sign = -1.0 if (code >> (nbits - 1)) & 1 else 1.0
    e = (code >> m_bits) & ((1 << e_bits) - 1)
    m = code & ((1 << m_bits) - 1)
    e_top, m_top = (1 << e_bits) - 1, (1 << m_bits) - 1
    if spec["nan"] == "ieee" and e == e_top:
        return sign * math.inf if m == 0 else math.copysign(math.nan, sign)
    if spec["nan"] == "fn" and e == e_top and m == m_top:
        return math.copysign(math.nan, sign)
    if e == 0:
        mag = Fraction(m, 1 << m_bits) * Fraction(2) ** (1 - bias)
    else:
        mag = (1 + Fraction(m, 1 << m_bits)) * Fraction(2) ** (e - bias)
    return sign * float(mag)  # exact: every value here fits a double


def minifloat_grid(spec: dict):
    """(codes, values) of the non-negative finite codes of an 8-bit-or-less format, ascending, from the decoder."""
    nbits = 1 + spec["ebits"] + spec["mbits"]
    pos = [c for c in range(1 << (nbits - 1))]
    vals = [decode_minifloat(c, spec) for c in pos]
    pairs = [(c, v) for c, v in zip(pos, vals) if math.isfinite(v)]
    return [c for c, _ in pairs], [v for _, v in pairs]


# ---- bit-exact comparison -----------------------------------------------------------------------------------------

_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(_INT_VIEW[t.dtype])


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor, what: str = "", inputs: torch.Tensor = None):
    """Same shape and dtype, NaN at the same positions, identical bit patterns everywhere else (so +0.0 != -0.0).
    NaN payloads are not compared."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    na, ne = torch.isnan(actual), torch.isnan(expected)
    bad = (na != ne) | (~na & ~ne & (bits(actual) != bits(expected)))
    if bool(bad.any()):
        idx = bad.nonzero()[:5].tolist()
        rows = []
        for i in idx:
            t = tuple(i)
            x = f" x={inputs[t].item()!r}" if inputs is not None else ""
            rows.append(f"  at {t}:{x} got {actual[t].item()!r} expected {expected[t].item()!r}")
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} elements differ\n" + "\n".join(rows))


def is_neg_zero(t: torch.Tensor) -> torch.Tensor:
    return (t == 0) & torch.signbit(t)


def is_pos_zero(t: torch.Tensor) -> torch.Tensor:
    return (t == 0) & ~torch.signbit(t)


# ---- metrics and inputs -------------------------------------------------------------------------------------------


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """sqnr_db = 20*log10(||x|| / ||x - y||), Frobenius norms in float64 (inf when y == x)."""
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    noise = torch.linalg.vector_norm(x64 - y64).item()
    signal = torch.linalg.vector_norm(x64).item()
    return math.inf if noise == 0 else 20.0 * math.log10(signal / noise)


def all_16bit(dtype: torch.dtype) -> torch.Tensor:
    """All 65,536 bit patterns of a 16-bit float dtype, in code order."""
    return torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype)


def randn(shape, seed: int, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float32) * scale).to(dtype)


def group_sizes(name: str, extra=(32, "row", "tensor")):
    """None (the default) plus `extra` for group formats; element formats only take None."""
    return (None,) if info(name).elementwise else (None,) + tuple(extra)


@contextlib.contextmanager
def num_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fq(x, name, **kw):
    return qsparse.fake_quant(x, name, **kw)


def reference_effective_weight(cfg, w: torch.Tensor) -> torch.Tensor:
    """The weight a BFPLinear with LayerConfig ``cfg`` multiplies by, computed from its dense weight ``w`` with
    reference.py only: mask from |w| (N:M or magnitude), then the weight format (mask before or after)."""
    from qsparse import reference

    mask = None
    if cfg.sparsity is not None:
        if cfg.sparsity.structured:
            mask = reference.nm_mask(w.abs(), cfg.sparsity.keep, cfg.sparsity.group)
        else:
            mask = reference.magnitude_mask(w, cfg.sparsity.fraction, cfg.sparsity.per_row)
    if cfg.weight is not None:
        return reference.fake_quant(w, cfg.weight.name, cfg.weight.group_size, cfg.weight.rounding, mask=mask,
                                    sparsify_first=cfg.sparsify_first)
    if mask is not None:
        return torch.where(mask, w, torch.zeros((), dtype=w.dtype))
    return w


def batch_layouts(dtype, group: int, seed: int = 0):
    """Inputs for kernels that take runs of consecutive groups together: (label, x) with x contiguous and a row
    length that is a multiple of `group` but not of the run (runs cross rows), the same as a row-strided view
    (runs stop at each row's end), and one whose rows end in a shorter group; each with a NaN, an Inf, a zero
    group and a zero row placed at run and row boundaries, and rows of very different magnitudes."""
    g = torch.Generator().manual_seed(seed)
    cols = group * 41
    base = torch.randn(37, cols + 3 * group, generator=g)
    base = base * torch.pow(2.0, torch.randint(-20, 20, (37, 1), generator=g).float())
    base[2, cols - 1] = math.nan  # the last element of a row
    base[5, 0] = math.inf  # the first of a row
    base[9, group * 3: group * 4] = 0.0
    base[11] = 0.0
    base = base.to(dtype)
    return [("contiguous", base[:, :cols].contiguous()), ("row-strided view", base[:, :cols]),
            ("short last group", base[:, :cols + group // 2].contiguous())]
