"""qsparse.fake_quant against the spec (RELIABILITY.md items 3-11, 13, 14, and masks in fake quantization).

Oracles: qsparse/reference.py (pure torch, written from FORMATS.md), hand-written tables of values, the IEEE grids
of torch.float16 / torch.bfloat16, and the minifloat decoder of tests/helpers.py. Every test is parametrized from
the format table, so a new row of an existing family is covered without new test code.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

import qsparse
from qsparse import reference as ref
from helpers import (COMMON_FORMATS as ALL_FORMATS, BFP_FORMATS, ELEMENT_FORMATS, ELEMENT_SPEC, FLT_MAX, F32_MAX_SUBNORMAL,
                     SCALED_SPEC, scaled_elem_spec,
                     GROUP_FORMATS, INT_FORMATS, all_16bit, assert_same_bits, bits, fq, info, saturate_options,
                     int_divisor, is_neg_zero, is_pos_zero, minifloat_grid, num_threads, randn, spec_family,
                     sqnr_db)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

F32 = torch.float32


def t32(values):
    return torch.tensor(values, dtype=F32)


def ref_fq(x, name, **kw):
    return ref.fake_quant(x, name, **kw)


def check_vs_ref(x, name, what="", **kw):
    y = fq(x, name, **kw)
    r = ref_fq(x, name, **kw)
    assert_same_bits(y, r, f"{name} {kw} {what}", inputs=x)
    return y


# =====================================================================================================================
# Item 3: all 65,536 bf16 and fp16 bit patterns, C == reference bit for bit
# =====================================================================================================================

SWEEP_LAYOUTS = [((256, 256), (None, 32, "tensor")), ((2048, 32), (None, 7)), ((32, 2048), (None, 100))]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ALL_FORMATS)
def test_sweep_all_16bit_patterns(name, dtype):
    x = all_16bit(dtype)
    if info(name).elementwise:
        cases = [((256, 256), None)]
    else:
        cases = [(shape, g) for shape, gs in SWEEP_LAYOUTS for g in gs]
    for shape, g in cases:
        xs = x.reshape(shape)
        y = check_vs_ref(xs, name, f"sweep {shape}", group_size=g)
        # a NaN never becomes a number
        assert bool(torch.isnan(y[torch.isnan(xs)]).all())
        # -0.0 in, -0.0 out (int_asym returns +0.0 by definition: s * (q - z) with q == z)
        neg0 = is_neg_zero(xs) & ~torch.isnan(y)
        if spec_family(name)[0] == "int_asym":
            assert bool((y[neg0] == 0).all())
        else:
            assert bool(is_neg_zero(y[neg0]).all()), f"{name} g={g}: -0.0 not preserved"
        assert bool(is_pos_zero(y[is_pos_zero(xs) & ~torch.isnan(y)]).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ALL_FORMATS)
def test_sweep_all_16bit_patterns_stochastic(name, dtype):
    xs = all_16bit(dtype).reshape(256, 256)
    check_vs_ref(xs, name, "stochastic sweep", rounding="stochastic", seed=0x5EED)


@pytest.mark.parametrize("name", ELEMENT_FORMATS)
def test_sweep_element_formats_saturation_modes(name):
    x = all_16bit(torch.bfloat16).to(F32)
    for sat in saturate_options(name)[1:]:
        check_vs_ref(x, name, "bf16 patterns as f32", saturate=sat)


def _f32_patterns(n_rows, seed):
    """float32 bit patterns: exponents uniform over all 256 codes (NaN payloads, Inf, subnormals and both zeros
    included), random mantissas and signs."""
    g = torch.Generator().manual_seed(seed)
    shape = (n_rows, 128)
    e = torch.randint(0, 256, shape, generator=g, dtype=torch.int64)
    m = torch.randint(0, 2**23, shape, generator=g, dtype=torch.int64)
    m = torch.where(torch.rand(shape, generator=g) < 0.1, torch.zeros_like(m), m)  # exact powers of two, zeros
    sign = torch.randint(0, 2, shape, generator=g, dtype=torch.int64)
    b = (sign << 31) | (e << 23) | m
    return torch.where(b >= 2**31, b - 2**32, b).to(torch.int32).view(F32)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_float32_bit_patterns(name):
    x = _f32_patterns(64, seed=17)
    finite_rows = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # groups without NaN/Inf too
    for xs in (x, finite_rows):
        for gs in (None,) if info(name).elementwise else (None, 3, "row"):
            for rounding in ("rne", "stochastic"):
                check_vs_ref(xs, name, "f32 patterns", group_size=gs, rounding=rounding, seed=31)


@pytest.mark.parametrize("name", ["int4", "int8_asym", "bfp8", "fp8_e5m2", "fp16"])
def test_rows_longer_than_a_work_chunk(name):
    # the CPU kernel splits rows into 2^16-element spans for element formats and per-tensor statistics
    for shape in [(1, 70001), (2, 65537)]:
        x = randn(shape, seed=shape[1]) * 10
        for gs in (None,) if info(name).elementwise else (None, "tensor"):
            for rounding in ("rne", "stochastic"):
                check_vs_ref(x, name, f"{shape}", group_size=gs, rounding=rounding, seed=8)


# =====================================================================================================================
# Item 4: ties under RNE (hand-written tables), and stochastic rounding
# =====================================================================================================================

NZ = -0.0  # written where the spec gives a negative zero
# (format, one group as written, expected output). INT rows are one group (per row); BFP rows are one block (<= 32).
GROUP_TIES = [
    # int4: s = 7/7 = 1, so x/s lands on k + 0.5
    ("int4", [7.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, -0.5, -1.5, -2.5, -6.5, 0.49999997, 0.50000006],
     [7.0, 0.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, NZ, -2.0, -2.0, -6.0, 0.0, 1.0]),
    # int4_full: s = 7.5/7.5 = 1; +amax clamps to 7, -amax rounds to the even -8
    ("int4_full", [7.5, 0.5, 1.5, 2.5, 6.5, -7.5, -0.5, -6.5], [7.0, 0.0, 2.0, 2.0, 6.0, -8.0, NZ, -6.0]),
    # int4_asym: xmin -8, xmax 7 -> s = 1, z = 8; a zero result is +0.0
    ("int4_asym", [-8.0, 7.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 6.5, -7.5],
     [-8.0, 7.0, 0.0, 2.0, 2.0, 0.0, -2.0, -2.0, 6.0, -8.0]),
    # int4_asym with a tie in the zero point: xmin -7.5, xmax 7.5 -> s = 1, z = round(7.5) = 8
    ("int4_asym", [-7.5, 7.5, 7.0, -7.0, 0.5, 3.5], [-8.0, 7.0, 7.0, -7.0, 0.0, 4.0]),
    ("int3_asym", [-3.5, 3.5, 0.5, 1.5, 2.5, -2.5], [-4.0, 3.0, 0.0, 2.0, 2.0, -2.0]),
    ("int8", [127.0, 0.5, 1.5, 2.5, 125.5, 126.5, -126.5, -0.5], [127.0, 0.0, 2.0, 2.0, 126.0, 126.0, -126.0, NZ]),
    ("int8_full", [127.5, -127.5, 0.5, 1.5, -2.5], [127.0, -128.0, 0.0, 2.0, -2.0]),
    ("int8_asym", [-127.5, 127.5, 0.5, 1.5, 126.5], [-128.0, 127.0, 0.0, 2.0, 126.0]),
    # int2: s = amax = 2
    ("int2", [2.0, 1.0, -1.0, 0.9921875, 1.0078125], [2.0, 0.0, NZ, 0.0, 2.0]),
    ("int2_full", [1.5, 0.5, -0.5, -1.5, 1.0, -1.0], [1.0, 0.0, NZ, -2.0, 1.0, -1.0]),
    # bfp4: max 1.0 -> e = 0 (1 + 1e-8 == 1 in binary32), interval 1/8, clamp at 1 - 1/8
    ("bfp4", [1.0, 0.0625, 0.1875, 0.3125, 0.4375, 0.8125, 0.9375, -0.1875, -0.0625],
     [0.875, 0.0, 0.25, 0.25, 0.5, 0.75, 0.875, -0.25, NZ]),
    # bfp4: max 1.5 -> e = 1, interval 1/4
    ("bfp4", [1.5, 0.125, 0.375, 0.625, -0.875, 1.625], [1.5, 0.0, 0.5, 0.5, -1.0, 1.5]),
    # bfp8: max 0.75 -> e = 0, interval 2^-7; 255/256 = 127.5 units -> 128 -> clamped to 127/128
    ("bfp8", [0.75, 2.0**-8, 3 * 2.0**-8, 5 * 2.0**-8, 0.99609375], [0.75, 0.0, 2.0**-6, 2.0**-6, 0.9921875]),
    # bfp8: a power-of-two max is clamped to 2^e - interval (HBFP's clamp)
    ("bfp8", [2.0, 1.0, -2.0], [1.984375, 1.0, -1.984375]),
    # bfp8: the + 1e-8 of the shared exponent: max 1e-9 -> e = -26, interval 2^-33, 1e-9 / 2^-33 = 8.59 -> 9
    ("bfp8", [1e-9], [9 * 2.0**-33]),
    ("bfp2", [1.0, 0.25, 0.75, -0.25], [0.5, 0.0, 0.5, NZ]),
]


@pytest.mark.parametrize("case", range(len(GROUP_TIES)))
def test_group_ties_hand_table(case):
    name, row, expected = GROUP_TIES[case]
    x = t32([row])
    y = fq(x, name)
    assert_same_bits(y, t32([expected]), f"{name} ties", inputs=x)
    assert_same_bits(ref_fq(x, name), t32([expected]), f"reference {name} ties", inputs=x)


# (format, input, expected) element-wise, RNE, default saturation
ELEMENT_TIES = {
    "fp8_e4m3": [(1.0625, 1.0), (1.1875, 1.25), (1.3125, 1.25), (1.4375, 1.5), (1.0625001, 1.125),
                 (1.0624999, 1.0), (17.0, 16.0), (19.0, 20.0), (432.0, 448.0), (416.0, 416.0), (464.0, 448.0),
                 (2.0**-10, 0.0), (3 * 2.0**-10, 2.0**-8), (5 * 2.0**-10, 2.0**-8), (7 * 2.0**-10, 2.0**-7),
                 (15 * 2.0**-10, 2.0**-6), (-1.0625, -1.0), (-2.0**-10, NZ), (-19.0, -20.0)],
    "fp8_e5m2": [(1.125, 1.0), (1.375, 1.5), (1.625, 1.5), (1.875, 2.0), (53248.0, 49152.0), (2.0**-17, 0.0),
                 (3 * 2.0**-17, 2.0**-15), (5 * 2.0**-17, 2.0**-15), (7 * 2.0**-17, 2.0**-14), (-1.125, -1.0),
                 (-2.0**-17, NZ), (61440.0, 57344.0)],
    "fp16": [(1 + 2.0**-11, 1.0), (1 + 3 * 2.0**-11, 1 + 2.0**-9), (2049.0, 2048.0), (2051.0, 2052.0),
             (2.0**-25, 0.0), (3 * 2.0**-25, 2.0**-23), (65519.0, 65504.0), (65520.0, math.inf),
             (-2049.0, -2048.0), (-2.0**-25, NZ)],
    # FORMATS.md section 3's FP4 E2M1 thresholds: |y| <= 0.25 -> 0; < 0.75 -> 0.5; <= 1.25 -> 1; < 1.75 -> 1.5;
    # <= 2.5 -> 2; < 3.5 -> 3; <= 5 -> 4; > 5 -> 6 (saturating)
    "fp4_e2m1": [(0.25, 0.0), (0.2500001, 0.5), (0.7499999, 0.5), (0.75, 1.0), (1.25, 1.0), (1.2500001, 1.5),
                 (1.7499999, 1.5), (1.75, 2.0), (2.5, 2.0), (2.5000002, 3.0), (3.4999998, 3.0), (3.5, 4.0),
                 (5.0, 4.0), (5.0000005, 6.0), (100.0, 6.0), (math.inf, 6.0), (-0.25, NZ), (-3.5, -4.0),
                 (-1e30, -6.0)],
    # fp3_e2m0: grid 0, 1, 2, 4 (M = 0: no subnormal besides 0; FORMATS.md: max 4). Ties as the sources round,
    # round(|x| / 2^(e - M)) half to even: 3 = 1.5 * 2^1 -> 2 * 2^1 = 4 (with no mantissa bits every tie goes up);
    # below 2^emin = 1 the spacing is 1: 0.5 -> 0
    "fp3_e2m0": [(0.25, 0.0), (0.5, 0.0), (0.5000001, 1.0), (1.5, 2.0), (2.9, 2.0), (3.0, 4.0), (2.9999998, 2.0),
                 (6.0, 4.0), (-0.5, NZ), (-3.0, -4.0)],
    "bf16": [(1 + 2.0**-8, 1.0), (1 + 3 * 2.0**-8, 1 + 2.0**-6), (257.0, 256.0), (259.0, 260.0),
             (2.0**-134, 0.0), (3 * 2.0**-134, 2.0**-132), (65520.0, 65536.0), (-257.0, -256.0),
             (-2.0**-134, NZ)],
}


@pytest.mark.parametrize("name", sorted(ELEMENT_TIES))
def test_element_ties_hand_table(name):
    x = t32([v for v, _ in ELEMENT_TIES[name]])
    expected = t32([e for _, e in ELEMENT_TIES[name]])
    assert_same_bits(fq(x, name), expected, f"{name} ties", inputs=x)
    assert_same_bits(ref_fq(x, name), expected, f"reference {name} ties", inputs=x)


_TORCH_GRIDS = {"fp16": torch.float16, "bf16": torch.bfloat16}


def element_grid(name):
    """(codes, values) of the non-negative finite grid, ascending: from the test's decoder for formats with codes,
    from torch's own float16 / bfloat16 for the 16-bit formats."""
    if name in _TORCH_GRIDS:
        pats = torch.arange(0, 0x8000, dtype=torch.int32).to(torch.int16)
        vals = pats.view(_TORCH_GRIDS[name]).to(torch.float64)
        keep = torch.isfinite(vals)
        return pats[keep].to(torch.int64), vals[keep]
    if name in ELEMENT_SPEC and ELEMENT_SPEC[name]["has_codes"]:
        codes, vals = minifloat_grid(ELEMENT_SPEC[name])
        return torch.tensor(codes, dtype=torch.int64), torch.tensor(vals, dtype=torch.float64)
    raise AssertionError(f"no independent grid for {name!r}: add one to element_grid()")


@pytest.mark.parametrize("name", ELEMENT_FORMATS)
def test_element_rne_thresholds_every_grid_interval(name):
    """The FP4 threshold idea on every interval of the grid: the midpoint of adjacent values goes to the one with
    the even code, one binary32 ulp below goes down, one above goes up; negatives mirror. Formats without mantissa
    bits (fp3_e2m0, ...) are the exception above their smallest normal: the sources round |x| / 2^e = 1.5 half to
    even, so every tie there goes up (the codes of both neighbours have significand 1)."""
    codes, grid = element_grid(name)
    lo, hi = grid[:-1], grid[1:]
    mid = (lo + hi) / 2
    mid32 = mid.to(F32)
    assert torch.equal(mid32.to(torch.float64), mid), "midpoints must be exact in binary32"
    spec = ELEMENT_SPEC[name]
    even_hi = ((codes[1:] % 2) == 0) | ((spec["mbits"] == 0) & (lo >= spec["min_normal"]))
    tie_to = torch.where(even_hi, hi, lo)
    below = torch.nextafter(mid32, torch.tensor(-math.inf))
    above = torch.nextafter(mid32, torch.tensor(math.inf))
    x = torch.cat([mid32, below, above])
    expected = torch.cat([tie_to, lo, hi]).to(F32)
    for sign in (1.0, -1.0):
        y = fq(sign * x, name)
        assert_same_bits(y, sign * expected, f"{name} thresholds sign={sign}", inputs=sign * x)


@pytest.mark.parametrize("name", [n for n in INT_FORMATS if spec_family(n)[0] in ("int_sym", "int_full")])
def test_int_sym_ties_every_half_integer(name):
    """Per row, s = 1 exactly (amax = divisor), elements on every k + 0.5 in range: Python's round() is RNE."""
    fam, b = spec_family(name)
    div = int_divisor(name)
    qmin, qmax = (-(2 ** (b - 1) - 1), 2 ** (b - 1) - 1) if fam == "int_sym" else (-(2 ** (b - 1)), 2 ** (b - 1) - 1)
    halves = [k + 0.5 for k in range(qmin, qmax)]
    row = [float(div)] + halves
    expected = [float(min(max(round(div), qmin), qmax))] + [float(round(h)) for h in halves]
    expected = [math.copysign(e, r) if e == 0 else e for e, r in zip(expected, row)]  # -0.5 -> -0.0
    x = t32([row])
    assert_same_bits(fq(x, name), t32([expected]), f"{name} half-integers", inputs=x)


@pytest.mark.parametrize("name", BFP_FORMATS)
def test_bfp_ties_every_half_unit(name):
    """Block max 0.75 -> e = 0, interval 2^-m; elements at (k + 0.5) * interval for k < 2^m - 1 (at most 31)."""
    _, w = spec_family(name)
    m = w - 1
    interval = 2.0**-m
    ks = list(range(0, min(2**m - 1, 31)))
    row = [0.75] + [(k + 0.5) * interval for k in ks][:31]
    expected = [min(float(round(v / interval)) * interval, 1 - interval) for v in row]
    x = t32([row])
    assert_same_bits(fq(x, name), t32([expected]), f"{name} half units", inputs=x)
    assert_same_bits(fq(-x, name), -t32([expected]), f"{name} negative half units", inputs=-x)


# ---- stochastic rounding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_stochastic_equals_reference(name):
    x = randn((6, 150), seed=3) * torch.logspace(-4, 4, 150)
    for seed in (0, 1, 2**63 + 12345, 2**64 - 1):
        for g in (None,) if info(name).elementwise else (None, 7, "tensor"):
            check_vs_ref(x, name, "stochastic", rounding="stochastic", seed=seed, group_size=g)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_stochastic_reproducible_and_thread_independent(name):
    x = randn((256, 256), seed=5)  # 65,536 elements: above the single-thread threshold of the CPU library
    g = None if info(name).elementwise else 64
    with num_threads(1):
        y1 = fq(x, name, rounding="stochastic", seed=42, group_size=g)
    with num_threads(2):
        y2 = fq(x, name, rounding="stochastic", seed=42, group_size=g)
        y3 = fq(x, name, rounding="stochastic", seed=42, group_size=g)
        y4 = fq(x, name, rounding="stochastic", seed=43, group_size=g)
    assert_same_bits(y2, y1, f"{name} threads 1 vs 2")
    assert_same_bits(y3, y2, f"{name} same seed twice")
    differ = (bits(y4) != bits(y2)).float().mean().item()
    assert differ > 0.001, f"{name}: seeds 42 and 43 give the same rounding ({differ:.4%} differ)"


def test_rne_thread_independent():
    for name in ("int4", "int4_asym", "bfp8", "fp8_e4m3"):
        x = randn((512, 300), seed=9)
        with num_threads(1):
            y1 = fq(x, name, group_size=None if info(name).elementwise else "tensor")
        with num_threads(2):
            y2 = fq(x, name, group_size=None if info(name).elementwise else "tensor")
        assert_same_bits(y2, y1, f"{name} threads 1 vs 2 per tensor")


def test_stochastic_seed_none_uses_torch_generator():
    x = randn((16, 64), seed=1)
    torch.manual_seed(123)
    a = fq(x, "int4", rounding="stochastic")
    torch.manual_seed(123)
    b = fq(x, "int4", rounding="stochastic")
    assert_same_bits(a, b, "seed None under manual_seed")
    assert_same_bits(fq(x, "int4", rounding="rne"), fq(x, "int4", seed=7), "seed ignored under RNE")


def _unbiased_inputs(name, n_rows=3200, seed=0):
    """x (n_rows x 32, float32) and a bool of the positions whose error is measured: values whose rounding is never
    clamped, so that stochastic rounding must be exactly unbiased there. Column 0 pins each group's scale."""
    fam, b = spec_family(name)
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n_rows, 32, generator=g, dtype=torch.float64) * 2 - 1  # (-1, 1)
    measured = torch.ones(n_rows, 32, dtype=torch.bool)
    if fam == "float":
        e = torch.randint(-4, 5, (n_rows, 32), generator=g).to(torch.float64)
        x = torch.sign(u) * (1 + u.abs()) * torch.pow(2.0, e)  # normal range of every element format, no overflow
        return x.to(F32), measured
    measured[:, 0] = False
    if fam in ("int_sym", "int_full"):
        amax = 4.0
        qmax = 2 ** (b - 1) - 1
        inner = amax * qmax / int_divisor(name)  # |x| / s <= qmax: never clamped
        x = u * inner * 0.999
        x[:, 0] = amax
    elif fam == "int_asym":
        a = 4.0
        maxq = 2**b - 1
        x = u * a * (1 - 2.0 / maxq) * 0.999  # inside [s * -z, s * (maxq - z)] with z = round(maxq / 2)
        x[::2, 0], x[1::2, 0] = a, -a
        x[::2, 1], x[1::2, 1] = -a, a  # xmin = -a, xmax = a in every row
        measured[:, 1] = False
    else:  # bfp: block max 0.75 -> e = 0, interval 2^-m, max 1 - 2^-m >= 0.5
        x = u * 0.5
        x[:, 0] = 0.75
    return x.to(F32), measured


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_stochastic_unbiased(name):
    """Mean error within 3 sigma of 0 over ~1e5 values, where RNE of the same values is not a test of anything
    (the values are continuous) but a biased stochastic rounding (e.g. floor, or u compared the wrong way) is."""
    x, measured = _unbiased_inputs(name)
    gs = None if info(name).elementwise else 32
    y = fq(x, name, rounding="stochastic", seed=2024, group_size=gs)
    err = (y.to(torch.float64) - x.to(torch.float64))[measured]
    n = err.numel()
    assert n >= 90000
    mean, sd = err.mean().item(), err.std().item()
    assert sd > 0
    assert abs(mean) <= 3 * sd / math.sqrt(n), f"{name}: mean error {mean:.3e}, 3 sigma {3 * sd / math.sqrt(n):.3e}"
    # and the rounding is to a neighbour: |error| < one step, checked against RNE's error bound (half a step)
    y_rne = fq(x, name, group_size=gs)
    step_bound = 2 * (y_rne.to(torch.float64) - x.to(torch.float64)).abs()[measured].max().item()
    assert err.abs().max().item() <= step_bound * (1 + 1e-6) + 1e-30


# A value a quarter step above a grid point: stochastic must go up with probability 1/4.
QUARTER_CASES = [
    ("int8", [127.0, 10.25], 1),  # s = 1
    ("int4_asym", [-8.0, 7.0, 3.25], 2),  # s = 1, z = 8
    ("bfp8", [0.75, 10.25 * 2.0**-7], 1),  # interval 2^-7
    ("fp8_e4m3", [1.03125], 0),  # 1 + a quarter of 0.125
    ("fp16", [1 + 2.0**-12], 0),
    ("bf16", [1 + 2.0**-9], 0),
    ("fp8_e5m2", [1.0625], 0),
]


@pytest.mark.parametrize("name,row,col", QUARTER_CASES)
def test_stochastic_probability_quarter(name, row, col):
    n = 100000
    x = t32(row).repeat(n, 1)
    y = fq(x, name, rounding="stochastic", seed=99)[:, col].to(torch.float64)
    v = float(t32(row)[col])
    y_rne = fq(x[:1], name)[0, col].item()  # a quarter step above: RNE goes down
    assert y_rne < v
    ups = (y > v).to(torch.float64)
    assert bool(((y == y_rne) | (y > v)).all()), f"{name}: values other than the two neighbours"
    p = ups.mean().item()
    assert abs(p - 0.25) <= 3 * math.sqrt(0.25 * 0.75 / n), f"{name}: P(up) = {p}, expected 0.25"


# =====================================================================================================================
# Item 5: zero and tiny blocks
# =====================================================================================================================


def _tiny_rows():
    rows = torch.zeros(8, 64, dtype=F32)
    rows[1] = -0.0
    rows[2, ::2] = -0.0
    rows[3, 5] = F32_MAX_SUBNORMAL
    rows[3, 9] = -F32_MAX_SUBNORMAL / 3
    rows[3, 20:30] = 1e-42
    rows[4, 0] = 1e-40
    rows[4, 1] = -1e-40
    rows[4, 40] = -0.0
    rows[5, 7] = 1e-45  # the smallest binary32 subnormal
    rows[5, 8:12] = -0.0
    rows[6, 3] = -1e-45
    rows[7] = randn(64, seed=7)  # a normal row beside them
    return rows


@pytest.mark.parametrize("name", GROUP_FORMATS)
@pytest.mark.parametrize("gs", [None, 32, 16, "row", "tensor"])
def test_zero_and_tiny_blocks(name, gs):
    fam, b = spec_family(name)
    x = _tiny_rows()
    if gs == "tensor":
        x = x[:7]  # the whole tensor one tiny group
    y = check_vs_ref(x, name, "tiny", group_size=gs)
    assert bool(torch.isfinite(y).all()), f"{name} g={gs}: NaN/Inf from a zero or tiny block"
    zero_in = x == 0
    assert bool((y[zero_in] == 0).all()), "a zero input must stay zero"
    if fam == "int_asym":
        # all-zero groups: xmin = -1, xmax = 1 (GPTQ), and zero is on the grid: +0.0
        assert bool(is_pos_zero(y[:3]).all())
    else:
        # symmetric grids keep the sign of zero (documented: signed zeros)
        assert torch.equal(torch.signbit(y[zero_in]), torch.signbit(x[zero_in]))
    # tiny values never blow up: |y| stays within twice the group max (every group here has amax <= 2^-126)
    assert bool((y[:7].abs() <= 2 * F32_MAX_SUBNORMAL).all())
    if fam == "bfp":
        # shared exponent e = ceil(log2(amax + 1e-8)) = -26 for every tiny block: interval >= 2^-41 and all of
        # these values round to (signed) zero
        assert bool((y[:7] == 0).all())
        assert torch.equal(torch.signbit(y[:7]), torch.signbit(x[:7]))


@pytest.mark.parametrize("name", BFP_FORMATS)
def test_bfp_tiny_exponent_clamps(name):
    """HBFP's + 1e-8 floors the shared exponent at -26: 2^-30 sits on the grid 2^(-26-m) for m >= 4, and the
    rest of the block (1e-40) flushes to zero. Never a wrapped (huge) exponent."""
    _, w = spec_family(name)
    m = w - 1
    x = t32([[2.0**-30, 1e-40, -1e-40, 0.0]])
    y = fq(x, name)
    interval = 2.0 ** (-26 - m)
    expected_first = min(round(2.0**-30 / interval) * interval, 2.0**-26 - interval)
    assert_same_bits(y, t32([[expected_first, 0.0, NZ, 0.0]]), f"{name} tiny exponent", inputs=x)


# =====================================================================================================================
# Item 6: overflow
# =====================================================================================================================

# name: (max normal, saturates by default, overflow value without saturation); hand-typed
OVERFLOW_SPEC = {
    "fp8_e4m3": (448.0, True, math.nan),
    "fp8_e5m2": (57344.0, True, math.inf),
    "fp16": (65504.0, False, math.inf),
    "bf16": (3.3895313892515355e38, False, math.inf),
    # minifloats: every code finite, always saturating (saturate=False is refused)
    "fp4_e2m1": (6.0, True, None),
    "fp5_e2m2": (7.0, True, None),
    "fp6_e3m2": (28.0, True, None),
    "fp3_e2m0": (4.0, True, None),
}
# 0.9 * max (as binary32) rounded to the grid, hand-computed (fp4_e2m1: 5.4 > 5 -> 6; fp5_e2m2: 6.3 on the unit grid
# of [4, 8) -> 6; fp6_e3m2: 25.2 on the step-4 grid of [16, 32) -> 24; fp3_e2m0: 3.6 > 3 -> 4)
NINE_TENTHS = {"fp8_e4m3": 416.0, "fp8_e5m2": 49152.0, "fp16": 58944.0, "bf16": 3.0572243903053065e38,
               "fp4_e2m1": 6.0, "fp5_e2m2": 6.0, "fp6_e3m2": 24.0, "fp3_e2m0": 4.0}


@pytest.mark.parametrize("name", sorted(OVERFLOW_SPEC))
@pytest.mark.parametrize("saturate", [None, True, False])
def test_element_overflow(name, saturate):
    mx, sat_default, over = OVERFLOW_SPEC[name]
    if over is None and saturate is False:
        with pytest.raises(ValueError, match="saturate=False"):
            fq(t32([1.0]), name, saturate=False)
        return
    sat = sat_default if saturate is None else saturate
    big = [mx * k for k in (1.1, 2.0, 10.0)] + [FLT_MAX, math.inf]
    big = [v for v in big if v > mx]
    x = t32([0.9 * mx, mx] + big)
    expected = [NINE_TENTHS[name], mx] + [mx if sat else over] * len(big)
    y = fq(x, name, saturate=saturate)
    assert_same_bits(y, t32(expected), f"{name} saturate={saturate}", inputs=x)
    assert_same_bits(fq(-x, name, saturate=saturate), -t32(expected), f"{name} negative", inputs=-x)
    if not OVERFLOW_SPEC[name][2] == math.inf:
        assert not bool(torch.isinf(y).any()), f"{name} has no Inf"
    check_vs_ref(torch.cat([x, -x]), name, "overflow", saturate=saturate)


def test_e4m3_never_inf():
    x = torch.cat([all_16bit(torch.bfloat16).to(F32), t32([math.inf, -math.inf, FLT_MAX, -FLT_MAX])])
    for sat in (None, True, False):
        assert not bool(torch.isinf(fq(x, "fp8_e4m3", saturate=sat)).any())


def test_e5m2_ieee_overflow_boundary():
    # max + half an ulp of the top binade (61440) rounds up (to the even 2^16) and overflows; just below stays
    below = torch.nextafter(t32([61440.0]), t32([0.0]))
    assert fq(below, "fp8_e5m2", saturate=False).item() == 57344.0
    assert fq(t32([61440.0]), "fp8_e5m2", saturate=False).item() == math.inf
    assert fq(t32([61440.0]), "fp8_e5m2").item() == 57344.0
    assert fq(t32([65520.0]), "fp16").item() == math.inf
    assert fq(t32([65520.0]), "fp16", saturate=True).item() == 65504.0


GROUP_OVERFLOW_ROWS = [
    [FLT_MAX, 0.0, 1.0, -1.0],
    [FLT_MAX, -FLT_MAX, 1e38, -3e38],
    [-FLT_MAX, 1.0, 2.0, 3.0],
    [FLT_MAX, FLT_MAX, FLT_MAX, FLT_MAX],
    [3e38, 2e38, -1e38, 1e-30],
    [FLT_MAX * 0.9, FLT_MAX * 0.5, 0.0, -0.0],
]


@pytest.mark.parametrize("name", GROUP_FORMATS)
def test_group_overflow(name):
    fam, b = spec_family(name)
    x = t32(GROUP_OVERFLOW_ROWS)
    y = check_vs_ref(x, name, "overflow")
    assert not bool(torch.isinf(y).any()), f"{name}: Inf from a finite group"
    # the int_asym range xmax - xmin as binary32 computes it (FORMATS.md 1: xmin <= 0 <= xmax)
    span_overflows = torch.isinf(x.clamp(min=0).amax(1) - x.clamp(max=0).amin(1))
    for r in range(x.shape[0]):
        if fam == "int_asym" and bool(span_overflows[r]):
            # documented: an int_asym range xmax - xmin that overflows binary32 makes the group NaN
            assert bool(torch.isnan(y[r]).all()), f"{name} row {r}: expected the NaN policy"
        else:
            assert bool(torch.isfinite(y[r]).all()), f"{name} row {r}: {y[r].tolist()}"
            assert bool((torch.sign(y[r]) * torch.sign(x[r]) >= 0).all()), f"{name}: sign flipped {y[r].tolist()}"


@pytest.mark.parametrize("name", BFP_FORMATS)
def test_bfp_flt_max_exponent_does_not_wrap(name):
    # e = ceil(log2(FLT_MAX)) = 128 (not bit-limited): the block max is clamped to 2^128 - 2^(128-m)
    _, w = spec_family(name)
    m = w - 1
    x = t32([[FLT_MAX, -FLT_MAX, 1.0]])
    top = float((2**m - 1) * 2 ** (128 - m))
    assert_same_bits(fq(x, name), t32([[top, -top, 0.0]]), f"{name} FLT_MAX block", inputs=x)


def test_int_flt_max_hand_values():
    x = t32([[FLT_MAX, -FLT_MAX]])
    assert_same_bits(fq(x, "int4"), x, "int4 +-FLT_MAX stays")
    # int4_full: s = FLT_MAX / 7.5; +amax -> 7 s; -amax -> -8 s overflows and is clamped to -FLT_MAX
    s = t32([FLT_MAX]) / 7.5
    assert_same_bits(fq(x, "int4_full"), torch.cat([7 * s, t32([-FLT_MAX])]).reshape(1, 2), "int4_full FLT_MAX")
    assert bool(torch.isnan(fq(x, "int4_asym")).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", GROUP_FORMATS)
def test_group_formats_never_overflow_the_storage_dtype(name, dtype):
    """Item 6, "no Inf for formats without Inf", for half-precision tensors: a group whose max magnitude is the
    dtype's largest finite value must come back finite. int{b}_full maps -amax to -2^(b-1) * s = -1.0667 amax
    (FORMATS.md 1) and int{b}_asym can land on -(z * s) > amax; stored in fp16/bf16 that must saturate at the
    dtype's max, not become -Inf. NaN only where the documented int_asym policy applies (xmax - xmin overflows
    binary32)."""
    mx = torch.finfo(dtype).max
    x = torch.tensor([[mx, -mx, 1.0, 0.5], [-mx, 0.25, 0.0, 2.0], [mx, 0.0, -1.0, 3.0], [-mx, 2.0, -mx, 1.0]],
                     dtype=dtype)
    y = fq(x, name)
    xf = x.float()
    nan_rows = torch.zeros(4, dtype=torch.bool)
    if spec_family(name)[0] == "int_asym":
        nan_rows = torch.isinf(xf.clamp(min=0).amax(1) - xf.clamp(max=0).amin(1))
    assert bool(torch.isnan(y[nan_rows]).all())
    ok = y[~nan_rows]
    assert not bool(torch.isinf(ok).any()), (
        f"{name} on {dtype}: finite input, Inf output: {y.tolist()}")
    assert bool((ok.abs() <= mx).all())


# =====================================================================================================================
# Item 7: NaN and Inf at each position of one block
# =====================================================================================================================


def _poison_layout(name, gs, G=16):
    """(x, pos, unit): x with one special per probe, the probes' (row, col), and a function giving the bool mask
    of the group ('unit') that a position belongs to."""
    fam = spec_family(name)[0]
    if fam == "float":
        rows, cols = 2 * G, 3 * G
    elif gs == "row" or (gs is None and fam not in ("bfp", "scaled")):
        rows, cols = 2 * G, G  # each even row a poisoned group (row), odd rows clean
    elif gs == "tensor":
        rows, cols = 2, G
    else:
        G = gs if gs is not None else info(name).default_group
        rows, cols = 2 * G, 3 * G
    x = randn((rows, cols), seed=11)
    return x, G


@pytest.mark.parametrize("name,gs", [(n, g) for n in ALL_FORMATS for g in (None, 8, "row", "tensor")
                                     if g is None or not info(n).elementwise])
@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_inf_each_position(name, gs, special):
    fam = spec_family(name)[0]
    x, G = _poison_layout(name, gs)
    rows, cols = x.shape
    clean = fq(x, name, group_size=gs)
    # NVFP4's tensor scale comes from the whole tensor: one special anywhere makes every output NaN
    if (gs == "tensor" and fam != "float") or info(name).default_scale_mode == "e4m3":
        for p in range(x.numel()):
            xp = x.clone().view(-1)
            xp[p] = special
            y = fq(xp.view(rows, cols), name, group_size=gs)
            assert bool(torch.isnan(y).all()), f"{name} tensor group: a special at {p} must make it NaN"
        return
    # one special per even row, at column (block 1, position r // 2); odd rows untouched
    xp = x.clone()
    per_row = gs == "row" or (gs is None and fam not in ("bfp", "float", "scaled"))
    poisoned = torch.zeros_like(x, dtype=torch.bool)
    for r in range(0, rows, 2):
        p = r // 2
        if fam == "float":
            xp[r, G + p] = special
            poisoned[r, G + p] = True
        elif per_row:
            xp[r, p % cols] = special
            poisoned[r, :] = True
        else:
            g = G if gs is None else gs
            c = g + p % g
            xp[r, c] = special
            poisoned[r, g:2 * g] = True
    y = fq(xp, name, group_size=gs)
    assert_same_bits(y[~poisoned], clean[~poisoned], f"{name} g={gs}: neighbours of a {special} changed")
    if fam == "float":
        got = y[poisoned]
        spec = ELEMENT_SPEC[name]
        mx, sat, over = OVERFLOW_SPEC.get(name) or (spec["max"], spec["saturates"],
                                                    math.inf if spec["has_inf"] else math.nan)
        if math.isnan(special):
            assert bool(torch.isnan(got).all())
        else:
            exp = math.copysign(mx, special) if sat else (math.copysign(over, special) if not math.isnan(over)
                                                          else math.nan)
            assert_same_bits(got, torch.full_like(got, exp), f"{name}: {special} element")
    else:
        assert bool(torch.isnan(y[poisoned]).all()), f"{name} g={gs}: group with {special} must be all NaN"
    assert_same_bits(y, ref_fq(xp, name, group_size=gs), f"{name} g={gs} vs reference")


@pytest.mark.parametrize("name", GROUP_FORMATS)
def test_nan_never_becomes_finite_random(name):
    x = randn((64, 96), seed=4)
    g = torch.Generator().manual_seed(1)
    nanpos = torch.rand(64, 96, generator=g) < 0.01
    x[nanpos] = math.nan
    for gs in (None, 5, 32, "row"):
        y = check_vs_ref(x, name, "random NaNs", group_size=gs)
        assert bool(torch.isnan(y[nanpos]).all())


# =====================================================================================================================
# Item 8: quality floors and ceilings
# =====================================================================================================================


def _groups64(x, name, gs):
    fam = spec_family(name)[0]
    if gs is None:
        gs = 32 if fam == "bfp" else "row"
    if gs == "tensor":
        return x.reshape(1, -1)
    if gs == "row":
        return x
    return x.reshape(-1, gs)


def predicted_sqnr_db(x, name, gs):
    """SQNR of the uniform-noise model: each element's error uniform over one step of its grid, the step from the
    spec's scale (FORMATS.md 1-3): noise = sum(step^2 / 12)."""
    fam, b = spec_family(name)
    x = x.to(torch.float64)
    if fam == "float":
        # values beyond max saturate: their error is |x| - max, not a step's noise (fp8_e1m6's max is 3.97)
        spec = ELEMENT_SPEC[name]
        a = x.abs()
        e = torch.floor(torch.log2(a)).clamp(min=spec["emin"])
        clipped = a > spec["max"]
        step_noise = torch.pow(2.0, e - spec["mbits"]) ** 2 / 12
        noise = step_noise[~clipped].sum() + ((a - spec["max"]) ** 2)[clipped].sum()
    elif fam == "scaled":
        # the element grid's steps at x / scale: E8M0 2^(floor(log2 amax) - emax_elem), NVFP4 about amax / 6
        spec, meta = scaled_elem_spec(name), SCALED_SPEC[name]
        xg = _groups64(x, name, gs if gs is not None else meta["block"])
        amax = xg.abs().amax(1, keepdim=True)
        if meta["mode"] == "floor":
            scale = torch.pow(2.0, torch.floor(torch.log2(amax)) - meta["emax_elem"])
        else:
            scale = amax / spec["max"]
        a = xg.abs() / scale
        e = torch.floor(torch.log2(a)).clamp(min=spec["emin"])
        clipped = a > spec["max"]
        step_noise = (torch.pow(2.0, e - spec["mbits"]) * scale) ** 2 / 12
        noise = step_noise[~clipped].sum() + (((a - spec["max"]) * scale) ** 2)[clipped].sum()
    else:
        xg = _groups64(x, name, gs)
        amax = xg.abs().amax(1)
        if fam in ("int_sym", "int_full"):
            step = amax / int_divisor(name)
        elif fam == "int_asym":
            step = (xg.amax(1).clamp(min=0) - xg.amin(1).clamp(max=0)) / int_divisor(name)
        else:
            step = torch.pow(2.0, torch.ceil(torch.log2(amax)) - (b - 1))
        noise = (step**2 / 12 * xg.shape[1]).sum()
    return 10 * math.log10((x**2).sum().item() / noise.item())


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_sqnr_within_model_band(name):
    """Floor and ceiling: measured SQNR within 0.75 dB of the uniform-noise model (3 dB at 2 bits, where the
    model is rough, and 1.5 dB for minifloats without mantissa bits, whose one step per binade is far from
    uniform noise). One missing bit is -6 dB; a quantizer that does nothing is +inf."""
    fam, b = spec_family(name)
    tol = 3.0 if b <= 2 else (1.5 if fam == "float" and ELEMENT_SPEC[name]["mbits"] == 0 else 0.75)
    if fam == "scaled" and SCALED_SPEC[name]["mode"] == "e4m3":
        tol = 1.5  # NVFP4 maps each block max to about 6: the largest of 16 elements has almost no error
    for seed in (0, 1, 2):
        x = randn((32, 512), seed=100 + seed)
        for gs in (None,) if fam == "float" else (None, 32, "tensor"):
            got = sqnr_db(x, fq(x, name, group_size=gs))
            want = predicted_sqnr_db(x, name, gs)
            assert want - tol <= got <= want + tol, f"{name} g={gs} seed={seed}: {got:.2f} dB, model {want:.2f}"


# Hand-typed bands for anchor formats (randn, 32 x 512, several seeds), from 6.02 dB per bit and measurement.
SQNR_BANDS = [
    ("int8", None, 41.0, 44.0),  # per row
    ("int8", 32, 44.0, 47.0),
    ("int4", None, 16.5, 18.5),
    ("int4", 32, 19.3, 21.3),
    ("int4_asym", 32, 20.8, 22.8),
    ("int4_full", 32, 19.5, 21.5),
    ("int2", 32, 2.5, 4.5),
    ("bfp8", None, 40.5, 43.0),
    ("bfp4", None, 16.5, 18.7),
    ("bfp16", None, 88.5, 91.0),
    ("fp8_e4m3", None, 30.5, 32.5),
    ("fp8_e5m2", None, 24.5, 26.5),
    ("bf16", None, 54.5, 56.5),
    ("fp16", None, 72.5, 74.5),
]


@pytest.mark.parametrize("name,gs,lo,hi", SQNR_BANDS)
def test_sqnr_anchor_bands(name, gs, lo, hi):
    for seed in (0, 1, 2, 3):
        x = randn((32, 512), seed=seed)
        got = sqnr_db(x, fq(x, name, group_size=gs))
        assert lo <= got <= hi, f"{name} g={gs} seed={seed}: {got:.2f} dB not in [{lo}, {hi}]"


def test_sqnr_helper():
    x = t32([3.0, 4.0])
    assert sqnr_db(x, x) == math.inf
    assert abs(sqnr_db(x, t32([3.0, 4.5])) - 20 * math.log10(5 / 0.5)) < 1e-12


# =====================================================================================================================
# Item 9: odd row lengths
# =====================================================================================================================

ODD_LENGTHS = (1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023, 4097)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_odd_row_lengths(name):
    gss = (None,) if info(name).elementwise else (None, 1, 3, 16, 32, "row", "tensor")
    for cols in ODD_LENGTHS:
        x = randn((2, cols), seed=cols) * torch.logspace(-3, 3, cols)
        x[0, cols // 2] = 0.0
        for gs in gss:
            check_vs_ref(x, name, f"cols={cols}", group_size=gs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", ALL_FORMATS)
def test_odd_row_lengths_half_dtypes(name, dtype):
    gss = (None,) if info(name).elementwise else (None, 3, "tensor")
    for cols in (1, 17, 129):
        x = randn((3, cols), seed=cols, dtype=dtype)
        for gs in gss:
            y = check_vs_ref(x, name, f"cols={cols}", group_size=gs)
            assert y.dtype == dtype


if given is not None:

    @st.composite
    def _fq_case(draw):
        name = draw(st.sampled_from(ALL_FORMATS))
        ndim = draw(st.integers(1, 3))
        shape = tuple(draw(st.lists(st.integers(1, 40), min_size=ndim, max_size=ndim)))
        dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
        if info(name).elementwise:
            gs = None
            sat = draw(st.sampled_from(saturate_options(name)))
        else:
            gs = draw(st.one_of(st.none(), st.integers(1, 70), st.sampled_from(["row", "tensor"])))
            sat = None
        rounding = draw(st.sampled_from(["rne", "stochastic"]))
        seed = draw(st.integers(0, 2**64 - 1))
        scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]))
        data_seed = draw(st.integers(0, 2**31 - 1))
        masked = draw(st.sampled_from([None, True, False]))
        return name, shape, dtype, gs, sat, rounding, seed, scale, data_seed, masked

    @settings(max_examples=80)
    @given(_fq_case())
    def test_random_cases_equal_reference(case):
        name, shape, dtype, gs, sat, rounding, seed, scale, data_seed, masked = case
        x = randn(shape, seed=data_seed, scale=scale, dtype=dtype)
        kw = dict(group_size=gs, rounding=rounding, seed=seed, saturate=sat)
        if masked is not None:
            g = torch.Generator().manual_seed(data_seed + 1)
            kw.update(mask=torch.rand(shape, generator=g) < 0.6, sparsify_first=masked)
        y = fq(x, name, **kw)
        assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
        assert_same_bits(y, ref_fq(x, name, **kw), f"{name} {shape} {dtype} {kw}", inputs=x)


# =====================================================================================================================
# Item 10: views
# =====================================================================================================================


def _views():
    base = randn((12, 40), seed=21)
    big = randn((1000,), seed=22)
    cube = randn((4, 6, 10), seed=23)
    return {
        "transposed": base.t(),
        "sliced": base[2:9, 5:37],
        "cols_sliced": base[:, 3:20],
        "strided": base[:, ::2],
        "row_strided": base[::3],
        "expanded_rows": base[3:4].expand(5, -1),
        "expanded_cols": base[:, :1].expand(-1, 16),
        "offset": big[17:17 + 480].view(12, 40),
        "offset_sliced": big[5:5 + 480].view(12, 40)[1:, 2:],
        "permuted3d": cube.permute(1, 0, 2),
        "transposed3d": cube.transpose(1, 2),
        "unsqueezed": base.unsqueeze(1)[:, :, 1:],
        "single_row_strided": base[5:6, ::3],
        "column": base[:, 7:8],
    }


VIEWS = _views()


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("name", ALL_FORMATS)
def test_views_equal_contiguous(name, view):
    v = VIEWS[view]
    before = v.clone()
    gss = (None,) if info(name).elementwise else (None, 3, "tensor")
    for gs in gss:
        for rounding in ("rne", "stochastic"):
            y = fq(v, name, group_size=gs, rounding=rounding, seed=77)
            assert y.is_contiguous() and y.shape == v.shape
            assert_same_bits(y, fq(v.contiguous(), name, group_size=gs, rounding=rounding, seed=77),
                             f"{name} {view} g={gs} {rounding}")
    assert_same_bits(v, before, "input modified")


@pytest.mark.parametrize("name", ["int4", "int4_asym", "bfp8", "fp8_e4m3"])
@pytest.mark.parametrize("first", [True, False])
def test_views_with_mask_views(name, first):
    base = randn((16, 64), seed=31)
    mbase = torch.rand(64, 16, generator=torch.Generator().manual_seed(2)) < 0.5
    x, m = base[:, ::2], mbase.t()[:, 1::2]
    assert not x.is_contiguous() and not m.is_contiguous()
    y = fq(x, name, mask=m, sparsify_first=first)
    assert_same_bits(y, fq(x.contiguous(), name, mask=m.contiguous(), sparsify_first=first), f"{name} mask view")
    assert_same_bits(y, ref_fq(x, name, mask=m, sparsify_first=first), f"{name} mask view vs reference")


@pytest.mark.parametrize("name", ["int4", "int4_asym", "bfp8", "fp16"])
def test_row_strided_inputs_and_masks(name):
    base = randn((10, 64), seed=32)
    mbase = torch.rand(10, 64, generator=torch.Generator().manual_seed(5)) < 0.5
    x, m = base[:, 3:40], mbase[:, 10:47]  # both passed to C with a row stride of 64, at different offsets
    cases = [(x, m), (x, m.contiguous()), (x.contiguous(), m), (base[2:7, 5:21], mbase[:5, ::4])]
    for xv, mv in cases:
        for first in (True, False):
            for gs in (None,) if info(name).elementwise else (None, 4):
                y = fq(xv, name, mask=mv, sparsify_first=first, group_size=gs, rounding="stochastic", seed=3)
                assert_same_bits(y, fq(xv.contiguous(), name, mask=mv.contiguous(), sparsify_first=first,
                                       group_size=gs, rounding="stochastic", seed=3), f"{name} strided mask")
                assert_same_bits(y, ref_fq(xv, name, mask=mv, sparsify_first=first, group_size=gs,
                                           rounding="stochastic", seed=3), f"{name} strided mask vs reference")


# =====================================================================================================================
# Item 11: empty and 0-d tensors
# =====================================================================================================================


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_empty_tensors(name):
    for shape in [(0,), (0, 5), (5, 0), (2, 0, 3), (0, 0)]:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.empty(shape, dtype=dtype)
            for rounding in ("rne", "stochastic"):
                y = fq(x, name, rounding=rounding)
                assert y.shape == x.shape and y.dtype == dtype
            y = fq(x, name, mask=torch.empty(shape, dtype=torch.bool))
            assert y.shape == x.shape


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_zero_dim_tensors(name):
    for v in (3.0, -0.3, 0.0, -0.0, 1e-40, 70000.0, math.nan):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            x = torch.tensor(v, dtype=dtype)
            y = fq(x, name)
            assert y.shape == () and y.dtype == dtype
            assert_same_bits(y, ref_fq(x, name), f"{name} 0-d {v} {dtype}")
    # a 0-d tensor is one group: symmetric int and bfp keep a lone value's sign
    assert fq(torch.tensor(-0.3), name).item() <= 0


# =====================================================================================================================
# Item 13: wrong dtypes, devices and arguments, caught before any native call
# =====================================================================================================================


@pytest.fixture
def no_native_calls(monkeypatch):
    """Fails the test if anything reaches the native library."""
    from qsparse import _lib

    calls = []

    def spy(self, name, *args):
        calls.append(name)
        raise AssertionError(f"native call {name} reached with a bad argument")

    monkeypatch.setattr(_lib._Library, "call", spy)
    yield calls
    assert not calls


BAD_DTYPES = [torch.float64, torch.int32, torch.int64, torch.int8, torch.uint8, torch.bool, torch.complex64]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
def test_bad_dtype_rejected_before_native_call(dtype, no_native_calls):
    x = torch.ones(4, 8).to(dtype)
    with pytest.raises(TypeError, match=r"\bx\b"):
        qsparse.fake_quant(x, "int4")
    with pytest.raises(TypeError, match="scores"):
        qsparse.nm_mask(x, 2, 4)
    with pytest.raises(TypeError, match=r"\bw\b"):
        qsparse.magnitude_mask(x, 0.5)


def test_non_tensor_inputs(no_native_calls):
    import numpy as np

    for bad in (np.ones((2, 4), dtype=np.float32), [[1.0, 2.0]], 3.0, None):
        with pytest.raises(TypeError, match=r"\bx\b"):
            qsparse.fake_quant(bad, "int4")


def test_sparse_layout_rejected(no_native_calls):
    x = torch.eye(4).to_sparse()
    with pytest.raises(TypeError, match="layout|dtype"):
        qsparse.fake_quant(x, "int4")


@pytest.mark.parametrize("bad_mask,exc", [
    (torch.ones(4, 8), TypeError),
    (torch.ones(4, 8, dtype=torch.uint8), TypeError),
    (torch.ones(4, 8, dtype=torch.int64), TypeError),
    (torch.ones(4, 7, dtype=torch.bool), ValueError),
    (torch.ones(8, 4, dtype=torch.bool), ValueError),
    (torch.ones(32, dtype=torch.bool), ValueError),
    (torch.ones(1, 8, dtype=torch.bool), ValueError),  # no broadcasting
    ([[True] * 8] * 4, TypeError),
    (torch.ones(4, 8, dtype=torch.bool, device="meta"), ValueError),  # two devices
])
def test_bad_mask(bad_mask, exc, no_native_calls):
    with pytest.raises(exc, match="mask"):
        qsparse.fake_quant(torch.ones(4, 8), "int4", mask=bad_mask)


@pytest.mark.parametrize("kw,exc,param", [
    (dict(group_size=0), ValueError, "group_size"),
    (dict(group_size=-2), ValueError, "group_size"),
    (dict(group_size=3.0), TypeError, "group_size"),
    (dict(group_size="rows"), ValueError, "group_size"),
    (dict(rounding="round_up"), ValueError, "rounding"),
    (dict(rounding=0), (ValueError, TypeError), "rounding"),
    (dict(rounding="stochastic", seed=-1), ValueError, "seed"),
    (dict(rounding="stochastic", seed=2**64), ValueError, "seed"),
    (dict(rounding="stochastic", seed=1.0), TypeError, "seed"),
    (dict(rounding="stochastic", seed="1"), TypeError, "seed"),
    (dict(rounding="stochastic", seed=True), TypeError, "seed"),
    (dict(seed=-5), ValueError, "seed"),
    (dict(saturate=True), ValueError, "saturate"),
])
def test_bad_arguments_name_the_parameter(kw, exc, param, no_native_calls):
    with pytest.raises(exc, match=param):
        qsparse.fake_quant(torch.ones(4, 8), "int4", **kw)


def test_bad_element_arguments(no_native_calls):
    with pytest.raises(TypeError, match="saturate"):
        qsparse.fake_quant(torch.ones(4, 8), "fp8_e5m2", saturate=0)
    with pytest.raises(ValueError, match="group_size"):
        qsparse.fake_quant(torch.ones(4, 8), "fp16", group_size=4)
    with pytest.raises(ValueError, match="group_size"):
        qsparse.fake_quant(torch.ones(4, 8), "fp8_e5m2", group_size=4, scale_mode="none")


def test_extreme_valid_seeds_accepted():
    x = randn((4, 8), seed=0)
    for seed in (0, 2**63 - 1, 2**63, 2**64 - 1):
        assert_same_bits(fq(x, "int4", rounding="stochastic", seed=seed),
                         ref_fq(x, "int4", rounding="stochastic", seed=seed), f"seed {seed}")


@pytest.mark.parametrize("gs", [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**80])
def test_huge_group_size(gs):
    """Any int G >= cols is one group per row (the docstring); one that does not fit int64 must be either that or
    a ValueError/TypeError naming group_size (functional.py: every argument is checked before any native call),
    never an error from the op boundary."""
    x = randn((4, 64), seed=0)
    try:
        y = fq(x, "int4", group_size=gs)
    except (ValueError, TypeError) as e:
        assert "group_size" in str(e)
    else:
        assert_same_bits(y, fq(x, "int4", group_size="row"), f"group_size={gs}")


def test_torch_thread_count_above_library_limit(monkeypatch):
    """torch accepts any intra-op thread count; qsparse passes torch.get_num_threads() to the CPU library, whose
    limit is QS_MAX_THREADS (4096). A larger torch setting must not make every call fail (qsparse.h: results do not
    depend on the thread count)."""
    x = randn((4, 64), seed=0)
    expected = (fq(x, "int4"), qsparse.nm_mask(x, 2, 4), qsparse.magnitude_mask(x, 0.5))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 5000)
    assert_same_bits(fq(x, "int4"), expected[0], "fake_quant with 5000 torch threads")
    assert torch.equal(qsparse.nm_mask(x, 2, 4), expected[1])
    assert torch.equal(qsparse.magnitude_mask(x, 0.5), expected[2])


# =====================================================================================================================
# Masks in fake quantization
# =====================================================================================================================


@pytest.mark.parametrize("name", ALL_FORMATS)
@pytest.mark.parametrize("first", [True, False], ids=["sparsify_first", "quantize_first"])
def test_mask_semantics_vs_reference(name, first):
    x = randn((8, 96), seed=41) * torch.logspace(-2, 2, 96)
    x[0, :5] = -0.0
    x[1, 3] = math.nan  # a masked NaN below
    x[2, 7] = -math.inf
    x[3, 11] = 1e30
    m = torch.rand(8, 96, generator=torch.Generator().manual_seed(3)) < 0.5
    m[1, 3] = False
    m[2, 7] = False
    m[3, 11] = False
    m[0, :5] = False
    gss = (None,) if info(name).elementwise else (None, 16, "row", "tensor")
    for gs in gss:
        for rounding in ("rne", "stochastic"):
            y = check_vs_ref(x, name, "mask", group_size=gs, rounding=rounding, seed=5, mask=m,
                             sparsify_first=first)
            assert bool(is_pos_zero(y[~m]).all()), f"{name}: masked positions must be exactly +0.0"
            if first and not info(name).elementwise:
                # statistics never see masked values: no NaN anywhere (the only specials are masked)
                assert not bool(torch.isnan(y).any())


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_mask_all_true_and_all_false(name):
    x = randn((4, 64), seed=42)
    for first in (True, False):
        y = fq(x, name, mask=torch.ones(4, 64, dtype=torch.bool), sparsify_first=first)
        assert_same_bits(y, fq(x, name), f"{name} all-true mask")
        y = fq(x, name, mask=torch.zeros(4, 64, dtype=torch.bool), sparsify_first=first)
        assert_same_bits(y, torch.zeros(4, 64), f"{name} all-false mask")


def test_mask_before_after_hand_case():
    x = t32([[100.0, 1.0, 0.5, -0.25]])
    m = torch.tensor([[False, True, True, True]])
    # sparsify first: s = 1/7 from the kept values; 0.5 * 7 = 3.5 -> 4 -> 4/7
    s = t32([1.0]) / 7
    exp_first = torch.cat([t32([0.0, 1.0]), torch.round(t32([0.5, -0.25]) / s) * s]).reshape(1, 4)
    assert_same_bits(fq(x, "int4", mask=m), exp_first, "mask before")
    # quantize first: s = 100/7, the kept values round to (signed) zero
    assert_same_bits(fq(x, "int4", mask=m, sparsify_first=False), t32([[0.0, 0.0, 0.0, NZ]]), "mask after")
    # a masked NaN: ignored before, poisons the group after (masked position still +0.0)
    x = t32([[math.nan, 1.0, -1.0]])
    m = torch.tensor([[False, True, True]])
    assert_same_bits(fq(x, "int4", mask=m), t32([[0.0, 1.0, -1.0]]), "masked NaN, mask first")
    assert_same_bits(fq(x, "int4", mask=m, sparsify_first=False), t32([[0.0, math.nan, math.nan]]),
                     "masked NaN, quantize first")


@pytest.mark.parametrize("name", GROUP_FORMATS)
def test_masked_zeros_stay_zero_after_sparsify_first(name):
    # FORMATS.md 9: "masked zeros stay 0 under every format"; also an unmasked exact 0 stays 0
    x = randn((8, 64), seed=43) + 3.0  # all positive: asym xmin is clipped at 0
    m = torch.rand(8, 64, generator=torch.Generator().manual_seed(4)) < 0.5
    x[~m] = 0.0
    y = fq(x, name, group_size=16)
    assert bool((y[~m] == 0).all())


# =====================================================================================================================
# Item 14: 64-bit sizes
# =====================================================================================================================


@pytest.mark.large
def test_more_than_2_31_elements():
    rows, cols = 2**21 + 1, 1024  # 2^31 + 1024 elements, 4.3 GB of bf16 in, 4.3 GB out
    x = torch.zeros(rows, cols, dtype=torch.bfloat16)
    head = randn((2, cols), seed=1, dtype=torch.bfloat16)
    tail = randn((2, cols), seed=2, dtype=torch.bfloat16) * 100
    x[:2] = head
    x[-2:] = tail
    assert x.numel() > 2**31
    timings = {}
    for name, gs in (("bfp8", None), ("int4_asym", 128), ("int8", "row")):
        t0 = time.perf_counter()
        y = fq(x, name, group_size=gs)
        timings[name] = time.perf_counter() - t0
        assert_same_bits(y[:2], fq(head, name, group_size=gs), f"{name} first groups")
        assert_same_bits(y[-2:], fq(tail, name, group_size=gs), f"{name} last groups")
        assert bool((y[2:-2:4096] == 0).all())
        del y
    t0 = time.perf_counter()
    m = qsparse.nm_mask(x, 2, 4)
    timings["nm_mask 2:4"] = time.perf_counter() - t0
    assert torch.equal(m[:2], qsparse.nm_mask(head, 2, 4))
    assert torch.equal(m[-2:], qsparse.nm_mask(tail, 2, 4))
    del m
    print("large test timings (s):", {k: round(v, 1) for k, v in timings.items()})
