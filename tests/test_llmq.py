"""llm-mixed-q's formats (FORMATS.md sections 3 and 6: log{w}, bl{w}, dmf*, bmf*) and the llm-mixed-q profile of the
minifloats (its minifloat_ieee) and of bfp{w} (its MSFP block_fp).

Oracles: qsparse/reference.py (llmq_fake_quant, a vectorized torch transcription of FORMATS.md and of the source's
binary32 formulas) for the bit-exact sweeps; spec constants and golden values worked out by hand below from the
formulas of ChengZhang-98/llm-mixed-q src/llm_mixed_q/models/quantize/quantizers/{log,block_log,minifloat,
block_minifloat,block_fp}.py; value grids written from the spec in this file.
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import formats
from qsparse import reference as ref
from qsparse.formats import Format
from helpers import LLMQ_FORMATS as _LLMQ, all_16bit, assert_same_bits, randn, sqnr_db

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
LLMQ_FORMATS = list(_LLMQ)
LOG_ROWS = [n for n in LLMQ_FORMATS if n.startswith(("log", "bl"))]
MINI_ROWS = [n for n in LLMQ_FORMATS if n.startswith(("dmf", "bmf"))]
BLOCK_ROWS = [n for n in LLMQ_FORMATS if n.startswith(("bl", "bmf"))]
ELEMENT_ROWS = [n for n in LLMQ_FORMATS if n.startswith(("log", "dmf"))]
# the profile's other formats: minifloats element-wise, bfp as MSFP
PROFILE_ONLY = ["fp4_e2m1", "fp5_e2m2", "fp6_e3m2", "fp8_e4m3", "fp8_e5m2", "fp3_e1m1", "bfp4", "bfp8", "bfp16"]


def t32(values):
    return torch.tensor(values, dtype=F32)


def spec(name):
    """(kind, block, E, M, w) from the name, by FORMATS.md's naming (not from the table)."""
    if name.startswith(("log", "bl")):
        w = int(name.lstrip("blog"))
        return "log", name.startswith("bl"), w - 1, 0, w
    w, em = name[3:].split("_e")
    e, m = em.split("m")
    return name[:3], name.startswith("bmf"), int(e), int(m), int(w)


def spec_grid(name):
    """The non-negative values FORMATS.md gives (element rows with their bias; block rows in units of the block
    scale: bl 2^(top - bias), bmf 2^-bias), from exponent and mantissa fields."""
    kind, block, e, m, w = spec(name)
    if kind == "log":
        top = 2 ** (w - 1) - 1
        bias = top if block else 2 ** (w - 2) - 1  # bl: in units of 2^(top - bias): exponents -top .. 0
        return sorted({2.0 ** (f - bias) for f in range(top + 1)})
    top, bias = 2**e - 1, (0 if block else 2 ** (e - 1) - 1)
    vals = {0.0}
    for f in range(top + 1):
        for k in range(2**m):
            if kind == "dmf":
                vals.add(2.0 ** (f - bias) * k / 2**m)
            elif f == 0:
                vals.add(2.0 ** (1 - bias) * k / 2**m)  # the lowest binade is subnormal
            else:
                vals.add(2.0 ** (f - bias) * (1 + k / 2**m))
    return sorted(vals)


def fq(x, name, **kw):
    return qsparse.fake_quant(x, name, **kw)


# ---- item 1: registry constants --------------------------------------------------------------------------------

# Typed by hand from FORMATS.md sections 3 and 6: (bias, max, smallest nonzero magnitude, default block, bits/elem).
HAND = {
    "log2": (0, 2.0, 1.0, None, 2.0),
    "log4": (3, 16.0, 0.125, None, 4.0),
    "log8": (63, 2.0**64, 2.0**-63, None, 8.0),
    "bl4": (0, 1.0, 2.0**-7, 16, 4.5),
    "bl8": (0, 1.0, 2.0**-127, 16, 8.5),
    "dmf8_e4m3": (7, 224.0, 2.0**-10, None, 8.0),  # 2^8 * 7/8; 2^-7 / 8
    "dmf4_e2m1": (1, 2.0, 0.25, None, 4.0),  # 2^2 * 1/2; 2^-1 / 2
    "bmf5_e2m2": (0, 14.0, 0.5, 16, 5.5),  # units of 2^-bias: 2^3 * 1.75; subnormal 2^(1-2)
    "bmf8_e4m3": (0, 2.0**15 * 1.875, 2.0**-2, 16, 8.5),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_constants(name):
    bias, mx, mn, block, bpe = HAND[name]
    f = formats.get(name)
    assert f.family == "llmq"
    assert f.bias == bias and f.max_normal == mx and f.min_subnormal == mn
    assert f.default_group == block
    d = formats.describe(name)
    assert d.bits_per_element == bpe and d.max == mx
    assert d.grid[-1] == mx and min(v for v in d.grid if v > 0) == mn


@pytest.mark.parametrize("name", LLMQ_FORMATS)
def test_table_matches_spec(name):
    kind, block, e, m, w = spec(name)
    f = formats.get(name)
    assert (f.bits, f.ebits) == (w, e) and (kind == "log") == f.log and (kind == "dmf") == f.denorm
    assert f.block_bias == block and (f.default_group == 16) == block and f.elementwise == (not block)
    assert list(formats.describe(name).grid) == spec_grid(name)
    assert f.max_normal == spec_grid(name)[-1]


# ---- item 2: every value of the grid maps to itself -------------------------------------------------------------


def absorbs_1e9(v):
    """For a power of two v: ceil(binary32 log2(binary32(v + 1e-9))) == log2 v (the source adds 1e-9 before its
    log2, which the sum or the log2's rounding may absorb)."""
    lg = torch.log2((t32(v) + t32(1e-9)).double()).float()
    return bool(torch.ceil(lg) == math.log2(v))


def dmf_image(name):
    """The values dmf actually returns (|x| > 1e-8: smaller ones are zeros): e = ceil(log2(|x| + 1e-9)) puts a power
    of two 2^k in the binade of exponent k, where the mantissa cannot reach 1, unless k is below the lowest binade or
    the 1e-9 lifts it into the next one."""
    _, _, e, m, _ = spec(name)
    emin = -(2 ** (e - 1) - 1)
    return [v for v in spec_grid(name) if v == 0 or v > 1e-8 and (
        v < 2.0**emin or v / 2.0 ** math.ceil(math.log2(v)) < 1 or not absorbs_1e9(v))]


@pytest.mark.parametrize("name", ELEMENT_ROWS)
def test_element_grid_fixed_points(name):
    g = t32(dmf_image(name) if name.startswith("dmf") else spec_grid(name))
    x = torch.cat([g, -g])
    assert_same_bits(fq(x, name), x, name, x)
    if name.startswith("dmf"):
        # the source's quirk: a power of two 2^k above the lowest binade becomes 2^k * (1 - 2^-M)
        _, _, e, m, _ = spec(name)
        emin, emax = -(2 ** (e - 1) - 1), 2**e - 1 - (2 ** (e - 1) - 1)
        p = t32([2.0**k for k in range(emin, emax + 1) if absorbs_1e9(2.0**k)])
        assert_same_bits(fq(p, name), p * (1 - 2.0**-m), name, p)


@pytest.mark.parametrize("name", BLOCK_ROWS)
def test_block_grid_fixed_points(name):
    kind, _, e, m, w = spec(name)
    grid = spec_grid(name)
    if kind == "log":
        # a block whose max is 2^k has bias top - k: exponents k - top .. k, every power of two there representable
        top = 2 ** (w - 1) - 1
        # (bias >= 0: the block max is at most 2^top)
        rows = [[2.0**k, (-1) ** j * 2.0**k * v] for k in (0, min(5, top), -3) for j, v in enumerate(grid)]
    else:
        # a block whose max is 2^b has bias b (floor(log2 max)): values v * 2^-b up to 2^b are representable
        top = 2**e - 1
        b = top // 2
        # (values <= 1e-8 are zeros by the source's isclose threshold)
        rows = [[2.0**b, (-1) ** j * v * 2.0**-b] for j, v in enumerate(grid)
                if v * 2.0**-b <= 2.0**b and (v == 0 or v * 2.0**-b > 1e-8)]
    x = t32(rows)
    assert_same_bits(fq(x, name, group_size=2), x, name, x)


# ---- item 3: every 16-bit pattern, kernel == reference -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [BF16, F16])
@pytest.mark.parametrize("compat", [None, "llm-mixed-q"])
@pytest.mark.parametrize("name", LLMQ_FORMATS + PROFILE_ONLY)
def test_all_16bit_patterns(name, compat, dtype):
    if compat is None and name in PROFILE_ONLY:
        pytest.skip("qsparse's own definition: covered by test_fake_quant.py")
    x = all_16bit(dtype)
    block = formats.get(name).family == "bfp" or name in BLOCK_ROWS
    x = x.reshape(-1, 16) if block else x.reshape(256, 256)
    y = fq(x, name, compat=compat)
    assert_same_bits(y, ref.fake_quant(x, name, compat=compat), f"{name} {compat} {dtype}", x)
    finite = torch.isfinite(x)
    if not block and compat is None:
        assert not torch.isnan(y[~torch.isnan(x)]).any(), "NaN from a non-NaN input"
        assert torch.isfinite(y[finite]).all()


@pytest.mark.parametrize("compat", [None, "llm-mixed-q"])
@pytest.mark.parametrize("name", LLMQ_FORMATS + PROFILE_ONLY)
def test_randn_float32_and_tiny(name, compat):
    if compat is None and name in PROFILE_ONLY:
        pytest.skip("covered by test_fake_quant.py")
    for seed, scale in ((0, 1.0), (1, 1e-3), (2, 1e3), (3, 1e-30)):
        x = randn((8, 96), seed, scale=scale)
        x[0, :5] = t32([0.0, -0.0, 1e-9, -1e-8, 1.0000001e-8])
        assert_same_bits(fq(x, name, compat=compat), ref.fake_quant(x, name, compat=compat), f"{name} {seed}", x)


@pytest.mark.parametrize("compat", [None, "llm-mixed-q"])
@pytest.mark.parametrize("name", ["log4", "bl8", "dmf8_e4m3", "bmf6_e3m2", "fp8_e4m3", "fp4_e2m1"])
def test_float32_at_the_exponent_thresholds(name, compat):
    """From 16,384 elements on, the kernel takes each element's exponent from a table of the points where the
    rounded log2 steps (qs_lq_ilog2), not from a log2 per element; the tests above reach it only with 16-bit
    inputs. Here float32 values at and beside each power of two and each 2^(k + 1/2) (where the log formats'
    rounding steps), less the offset the formula adds before its log2 (none; the minifloats' 1e-9; log4's
    0.1 * 2^-3), and randn at scales from 1e-9 to 1e4, against the reference."""
    if compat is None and name in PROFILE_ONLY:
        pytest.skip("qsparse's own definition: covered by test_fake_quant.py")
    edges = []
    for k in range(-34, 20):
        for step in (2.0 ** k, 2.0 ** (k + 0.5)):
            for offset in (0.0, 1e-9, 0.1 * 2.0 ** -3):
                b = (t32([step]) - t32([offset])).view(torch.int32)
                edges.append((b + torch.arange(-3, 4, dtype=torch.int32)).view(torch.float32))
    edges = torch.cat(edges)
    parts = [edges, -edges] + [randn((4096,), seed, scale=scale) for seed, scale in
                               enumerate((1e-9, 1e-5, 1.0, 1e4))]
    x = torch.cat(parts)
    x = torch.cat([x, randn((16384 - x.numel() % 16384,), 9)]).reshape(-1, 16)
    assert x.numel() >= 16384
    assert_same_bits(fq(x, name, compat=compat), ref.fake_quant(x, name, compat=compat), f"{name} {compat}", x)


# ---- golden values typed by hand from the sources' formulas ------------------------------------------------------

GOLDEN = [
    # log4: bias 3, exponents -3..4, c = 0.1 * 2^-3 = 0.0125; e = round(log2(|x| + c)), x_hat = sign(x + c) * 2^e
    ("log4", None, None, [0.0, -0.0125, 3.0, 2.8, -100.0, -0.01, 0.3],
     [0.125, 0.0, 4.0, 2.0, -16.0, 0.125, 0.25]),
    # dmf8_e4m3: bias 7, e = ceil(log2(|x| + 1e-9)) in [-7, 8], mi = round(|x| / 2^e * 8) <= 7
    ("dmf8_e4m3", None, None, [0.3, 300.0, 1.125, 1.375, -0.6, 1e-9, -0.0, math.inf],
     [0.3125, 224.0, 1.0, 1.5, -0.625, 0.0, -0.0, 224.0]),
    ("dmf8_e4m3", None, "llm-mixed-q", [0.3, 300.0, 1e-9, -1e-8, -0.0, math.inf],
     [0.3125, 224.0, 1e-9, -1e-8, 0.0, math.nan]),
    # minifloat_ieee E4M3 (profile of fp8_e4m3): max 2^8 * 1.875 = 480; 1.97 rounds to mantissa 8, clamped to 7
    ("fp8_e4m3", None, "llm-mixed-q", [1.0625, 1.1875, 1.97, 500.0, 1e6, -3.0, 2.0**-8],
     [1.0, 1.25, 1.875, 480.0, 480.0, -3.0, 2.0**-8]),
    # fp8_e4m3 without the profile (OCP): 1.97 -> 2.0, 500 -> 448
    ("fp8_e4m3", None, None, [1.97, 500.0], [2.0, 448.0]),
    # bmf5_e2m2, one block: bias = floor(log2 6) = 2, exponents -2..1: 6 -> 2 * 1.75; 0.3 in the subnormal binade
    # (2^-2, mantissa round(1.2 * 4 / 2) = 2 -> 2/4 * 2 = 1)
    ("bmf5_e2m2", 4, None, [6.0, 1.0, 0.3, -0.7], [3.5, 1.0, 0.25, -0.75]),
    # bl4, one block: bias = 7 - ceil(log2 3) = 5, exponents -5..2, c = 2^-5 * 0.1
    ("bl4", 3, None, [3.0, 0.2, -0.05], [4.0, 0.25, -0.0625]),
    # MSFP bfp4 (profile): E = ceil(log2 0.5) = -1, mi = round((|x| + 1e-9) * 2 * 8) <= 7; 1e-9 passes through,
    # -0 becomes +0; qsparse's HBFP bfp4 gives 0 and -0 there
    ("bfp4", 4, "llm-mixed-q", [0.5, 0.3, 1e-9, -0.0], [0.4375, 0.3125, 1e-9, 0.0]),
    ("bfp4", 4, None, [0.5, 0.3, 1e-9, -0.0], [0.4375, 0.3125, 0.0, -0.0]),
]


@pytest.mark.parametrize("name,group,compat,x,expected", GOLDEN)
def test_golden_values(name, group, compat, x, expected):
    kw = {"compat": compat} if compat else {}
    if group is not None:
        kw["group_size"] = group
    y = fq(t32([x]), name, **kw)[0]
    assert_same_bits(y, t32(expected), f"{name} {compat}", t32(x))


# ---- items 5-7: zero and tiny blocks, overflow, NaN and Inf ---------------------------------------------------------


@pytest.mark.parametrize("name", BLOCK_ROWS)
def test_zero_and_tiny_blocks(name):
    x = torch.zeros(4, 16)
    x[0, 3] = -0.0
    x[1] = 1e-40
    x[2] = -3e-39
    x[3, ::2] = -0.0
    y = fq(x, name)
    assert not torch.isnan(y).any() and torch.isfinite(y).all()
    assert_same_bits(y, ref.fake_quant(x, name), name, x)
    if name.startswith("bmf"):  # zeros (and values <= 1e-8) stay signed zeros
        assert_same_bits(y, torch.where(torch.signbit(x), -0.0, 0.0), name, x)
    else:  # a block of zeros: bias 255, 2^-255 = +0 in binary32
        assert (y[0] == 0).all() and not torch.signbit(y[0]).any()


@pytest.mark.parametrize("name", LLMQ_FORMATS)
def test_overflow_saturates(name):
    mx = formats.get(name).max_normal
    big = t32([0.9, 1.0, 1.1, 2.0, 10.0]) * mx if mx < 3e37 else t32([3e38, 3.4e38])
    x = torch.cat([big, t32([3.4028234663852886e38, math.inf])])
    x = torch.stack([x, -x])
    group = {"group_size": x.shape[1]} if name in BLOCK_ROWS else {}
    y = fq(x, name, **group)
    if name in BLOCK_ROWS:  # an Inf in the block: a NaN block (qsparse's policy)
        assert torch.isnan(y).all()
        y = fq(x[:, :-1], name, **group)
        x = x[:, :-1]
    assert torch.isfinite(y).all()
    assert_same_bits(y, ref.fake_quant(x, name, **group), name, x)
    assert (y.abs().amax(dim=1) <= (mx if name not in BLOCK_ROWS else math.inf)).all()


@pytest.mark.parametrize("compat", [None, "llm-mixed-q"])
@pytest.mark.parametrize("name", BLOCK_ROWS + ["bfp8"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_inf_in_one_block(name, bad, compat):
    if compat is None and name == "bfp8":
        return
    x = randn((1, 48), 5)
    clean = fq(x, name, compat=compat, group_size=16)
    for pos in (16, 20, 31):
        xb = x.clone()
        xb[0, pos] = bad
        y = fq(xb, name, compat=compat, group_size=16)
        assert_same_bits(y[:, :16], clean[:, :16], f"{name} block before")
        assert_same_bits(y[:, 32:], clean[:, 32:], f"{name} block after")
        assert_same_bits(y, ref.fake_quant(xb, name, group_size=16, compat=compat), name, xb)
        assert torch.isnan(y[0, pos]) or not math.isnan(bad) and compat is not None
        if compat is None or math.isnan(bad):
            assert torch.isnan(y[0, 16:32]).all(), "documented: the block becomes NaN"


@pytest.mark.parametrize("name", ELEMENT_ROWS)
def test_element_nan_inf(name):
    x = t32([1.0, math.nan, math.inf, -math.inf, 0.5])
    y = fq(x, name)
    mx = formats.get(name).max_normal
    assert torch.isnan(y[1]) and y[2] == mx and y[3] == -mx
    assert_same_bits(y, ref.fake_quant(x, name), name, x)


# ---- item 8: quality floors and ceilings ----------------------------------------------------------------------------


def _floor_ceiling(name):
    """SQNR bounds on randn: about 6 dB per mantissa bit (plus the implicit one for bmf), log formats 9-14 dB
    (relative error of rounding the exponent: at best 2^(1/2) steps); never above 6 dB per bit + 12."""
    kind, block, e, m, w = spec(name)
    if kind == "log":
        return (3.0 if w <= 3 else 9.0), 16.0
    floor = 6.0 * (m + (kind == "bmf")) - 4.0 if w > 3 else 1.0
    if e == 1:  # exponents 0..1 (bias 0): randn clips above 2 or 4
        floor = min(floor, 8.0)
    return max(floor, 1.0), 6.02 * w + 12


@pytest.mark.parametrize("name", LLMQ_FORMATS)
def test_sqnr_bounds(name):
    lo, hi = _floor_ceiling(name)
    for seed in range(3):
        x = randn((64, 256), seed)
        s = sqnr_db(x, fq(x, name))
        assert lo <= s <= hi, f"{name} seed {seed}: {s:.2f} dB outside [{lo}, {hi}]"


# ---- items 9-10: odd sizes and views ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["log4", "bl8", "dmf6_e3m2", "bmf5_e2m2", "bmf8_e4m3", "bl3"])
def test_odd_sizes(name):
    for cols in (1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023, 4097):
        x = randn((3, cols), cols)
        for g in ((None, 7, "row", "tensor") if name in BLOCK_ROWS else (None,)):
            assert_same_bits(fq(x, name, group_size=g), ref.fake_quant(x, name, group_size=g), f"{name} {cols} {g}")
        assert_same_bits(fq(x, "bfp6", compat="llm-mixed-q"), ref.fake_quant(x, "bfp6", compat="llm-mixed-q"))


@pytest.mark.parametrize("name", ["log5", "bl4", "dmf8_e4m3", "bmf6_e2m3"])
def test_views(name):
    base = randn((40, 64), 9)
    for v in (base.t(), base[3:30:2, 5:50], base[:, ::2], base[0:1].expand(8, 64), base.view(-1)[7:7 + 640].view(10, 64)):
        assert_same_bits(fq(v, name), fq(v.contiguous(), name), name)


def test_masks_before_and_after():
    x = randn((4, 64), 3)
    m = torch.rand(4, 64, generator=torch.Generator().manual_seed(1)) < 0.5
    for name in ("bl4", "bmf5_e2m2", "dmf5_e2m2", "log4"):
        for first in (True, False):
            y = fq(x, name, mask=m, sparsify_first=first)
            assert_same_bits(y, ref.fake_quant(x, name, mask=m, sparsify_first=first), name)
            assert (y[~m] == 0).all()


def test_thread_counts_agree():
    x = randn((257, 300), 4)
    from helpers import num_threads
    outs = []
    for n in (1, 2, 8):
        with num_threads(n):
            outs.append(fq(x, "bmf8_e4m3"))
    for o in outs[1:]:
        assert_same_bits(o, outs[0])


# ---- names, aliases and errors ---------------------------------------------------------------------------------------

SEED_NAMES = [
    # (name, bits, canonical)
    ("log", 4, "log4"), ("log", 8, "log8"), ("bl", 8, "bl8"), ("block_log", 4, "bl4"),
    ("dmf", 8, "dmf8_e4m3"), ("minifloat_denorm", 5, "dmf5_e2m2"), ("bmf", 5, "bmf5_e2m2"),
    ("block_minifloat", 8, "bmf8_e4m3"), ("minifloat", 8, "fp8_e4m3"), ("minifloat", 4, "fp4_e2m1"),
    ("bfp", 8, "bfp8"), ("block_fp", 4, "bfp4"), ("int", 4, "int4"), ("int_asym", 3, "int3_asym"),
    ("mixed_ant", 3, "mixed_ant3"), ("mixed_er", None, "mixed_er4"), ("mixed_ea", 3, "mixed_ea3"),
    ("mixed_bitmod", 4, "mixed_bitmod4"), ("mx_fp", 3, "mx_fp3"), ("mx_fp", 4, "mx_fp4"),
    ("fp5_e2m2", None, "fp5_e2m2"), ("fp5_e3m1", None, "fp5_e3m1"), ("fp6_e2m3", None, "fp6_e2m3"),
    ("fp6_e3m2", None, "fp6_e3m2"), ("mx_fp3", None, "mx_fp3"), ("mx_fp4", None, "mx_fp4"),
    ("nvfp", None, "nvfp4"), ("nvfp4", None, "nvfp4"), ("mxfp", None, "mxfp4"), ("mxfp4", None, "mxfp4"),
    ("int4", None, "int4"), ("int8_asym", None, "int8_asym"), ("dmf8", None, "dmf8_e4m3"),
    ("bmf5", None, "bmf5_e2m2"), ("DMF8", None, "dmf8_e4m3"),
]


@pytest.mark.parametrize("name,bits,canonical", SEED_NAMES)
def test_seed_names(name, bits, canonical):
    assert formats.parse(name, bits=bits) == canonical


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="fraction width"):
        formats.parse("integer", bits=8)
    with pytest.raises(ValueError, match="rounding"):
        Format("log4", rounding="stochastic")
    with pytest.raises(ValueError, match="rounding"):
        Format("fp8_e4m3", compat="llm-mixed-q", rounding="half_away")
    with pytest.raises(ValueError, match="element-wise"):
        Format("dmf8_e4m3", group_size=16)
    with pytest.raises(ValueError, match="llm-mixed-q"):
        Format("int4", compat="llm-mixed-q")
    with pytest.raises(ValueError, match="llm-mixed-q"):
        Format("fp4_e2m1", group_size=32, compat="llm-mixed-q")
    with pytest.raises(ValueError, match="saturate"):
        Format("fp8_e5m2", compat="llm-mixed-q", saturate=False)
    with pytest.raises(ValueError, match="observer"):
        Format("bl4", observer="mse")
    with pytest.raises(ValueError, match="3 to 8 bits"):
        formats.parse("dmf", bits=9)
    with pytest.raises(ValueError):
        formats.parse("log", bits=9)


def test_format_round_trip_and_gradient():
    f = Format("bmf5", group_size=32, compat="llm-mixed-q")
    assert f.name == "bmf5_e2m2" and Format.from_dict(f.to_dict()) == f
    x = randn((2, 32), 1).requires_grad_()
    qsparse.fake_quant(x, "bl4").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


# ---- item 17: CUDA == CPU (skips without a GPU and the CUDA library) -------------------------------------------------


def _cuda_missing():
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    try:
        qsparse._lib.cuda()
    except qsparse.QsparseError as e:
        return f"the qsparse CUDA library is not available: {e}"
    return None


@pytest.mark.cuda
@pytest.mark.skipif(_cuda_missing() is not None, reason=str(_cuda_missing()))
@pytest.mark.parametrize("compat", [None, "llm-mixed-q"])
@pytest.mark.parametrize("name", LLMQ_FORMATS + PROFILE_ONLY)
def test_cuda_matches_cpu(name, compat):
    if compat is None and name in PROFILE_ONLY:
        pytest.skip("covered by test_cuda.py")
    block = formats.get(name).family == "bfp" or name in BLOCK_ROWS
    for dtype in (BF16, F16):
        x = all_16bit(dtype).reshape(-1, 16) if block else all_16bit(dtype).reshape(256, 256)
        assert_same_bits(fq(x.cuda(), name, compat=compat).cpu(), fq(x, name, compat=compat), f"{name} {dtype}")
    x = randn((33, 1031), 2)
    x[0, :4] = t32([0.0, -0.0, 1e-9, math.inf])
    groups = (None, 7, 64, 2048, "row", "tensor") if block else (None,)
    for g in groups:
        m = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.6
        for mask in (None, m):
            got = fq(x.cuda(), name, compat=compat, group_size=g, mask=None if mask is None else mask.cuda()).cpu()
            assert_same_bits(got, fq(x, name, compat=compat, group_size=g, mask=mask), f"{name} group={g}")


# ---- the profile's remaining source behaviours: zero blocks, half-precision arithmetic, 2-D weight blocks --------
# Golden values typed by hand from block_log.py / block_minifloat.py / block_fp.py (the zero-block replacement),
# minifloat.py / log.py / block_fp.py run in the input's dtype (each torch op rounded to binary16 / bfloat16) and
# utils.py's _block_2d_weight (F.unfold tiles of block_size [a, b]).

P = "llm-mixed-q"


def test_zero_block_takes_the_smallest_nonzero_block_max():
    # bl4: top 7. The zero block takes max 0.5 (the smallest nonzero block max): bias = 7 - ceil(log2 0.5) = 8,
    # exponents -8..-1; each 0 gives sign(0 + c) * 2^clamp(round(log2 c)) = +2^-8 (c = 0.1 * 2^-8)
    x = torch.zeros(3, 16)
    x[1] = 0.5
    x[2] = 3.0
    x[0, 5] = -0.0
    y = fq(x, "bl4", compat=P)
    assert_same_bits(y[0], torch.full((16,), 2.0**-8), "bl4 zero block", x[0])
    assert_same_bits(y, ref.fake_quant(x, "bl4", compat=P), "bl4 zero block", x)
    # qsparse's own definition keeps bias 255 for it: +0
    assert (fq(x, "bl4")[0] == 0).all()


def test_all_zero_tensor_takes_max_one():
    # every block max 0: per_block_max = ones, bias = 7 - 0 = 7, zeros -> 2^-7 (bl4); 2^-3 (bl3: top 3)
    for name, g, value in (("bl4", None, 2.0**-7), ("bl3", 8, 2.0**-3), ("bl4", "tensor", 2.0**-7),
                           ("bl4", "row", 2.0**-7)):
        y = fq(torch.zeros(2, 16), name, compat=P, group_size=g)
        assert_same_bits(y, torch.full((2, 16), value), f"{name} {g}")
        # binary16 input: the same value (2^-7, 2^-3 are binary16 numbers)
        y16 = fq(torch.zeros(2, 16, dtype=F16), name, compat=P, group_size=g)
        assert_same_bits(y16, torch.full((2, 16), value, dtype=F16), f"{name} {g} f16")


def test_zero_block_with_a_nan_block_is_nan():
    # torch's min over the nonzero block maxima propagates a NaN block max: the zero block's bias is NaN, and
    # every output of it NaN (bl: 2^NaN; bmf and MSFP: NaN times the blend's 0)
    x = torch.zeros(2, 16)
    x[1, 0] = math.nan
    x[1, 1] = 1.0
    for name in ("bl4", "bmf5_e2m2", "bfp8"):
        g = 16 if name == "bfp8" else None
        y = fq(x, name, compat=P, group_size=g)
        assert torch.isnan(y).all(), name
        assert_same_bits(y, ref.fake_quant(x, name, compat=P, group_size=g), name, x)
    # bmf and MSFP zero blocks with a finite replacement stay zeros (the blend passes x = 0 through)
    x[1, 0] = 0.25
    for name in ("bmf5_e2m2", "bfp8"):
        g = 16 if name == "bfp8" else None
        assert_same_bits(fq(x, name, compat=P, group_size=g)[0], torch.zeros(16), name)


@pytest.mark.parametrize("dtype", [F32, F16, BF16])
@pytest.mark.parametrize("name", ["bl4", "bl6", "bmf5_e2m2", "bmf8_e4m3", "bfp4", "bfp8"])
def test_zero_blocks_random_masks_and_groups(name, dtype):
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(12, 70, generator=gen) * 3).to(dtype)
    x[2] = 0.0
    x[5, 16:48] = -0.0
    x[7, 64:] = 0.0
    m = torch.rand(x.shape, generator=gen) < 0.7
    for g in (None, 16, 32, 7, "row", "tensor"):
        for mask, first in ((None, True), (m, True), (m, False)):
            got = fq(x, name, compat=P, group_size=g, mask=mask, sparsify_first=first)
            want = ref.fake_quant(x, name, compat=P, group_size=g, mask=mask, sparsify_first=first)
            assert_same_bits(got, want, f"{name} {dtype} group={g} mask={mask is not None} first={first}", x)


# (name, dtype, x, the profile's output in that dtype, the output of the same values in binary32 arithmetic)
HALF_GOLDEN = [
    # fp8_e4m3 (minifloat_ieee, bias 7): 15.9921875 = 16 (1 - 2^-11). binary32: floor(log2) = 3, mantissa
    # 15.99 / 8 * 8 - 8 = 7.99 -> 8, clamped to 7: 15. binary16: log2 = 3.9993 rounds to 4.0, e = 4,
    # 15.99 / 16 = 0.99951 (exact), * 8 = 7.996, - 8 = -0.0039 -> 0: 16
    ("fp8_e4m3", F16, [15.9921875], [16.0], [15.0]),
    # bl4, one block [16.125, 0 x 15] in bfloat16: log2 16.125 = 4.0112 rounds to 4.0 in bfloat16, bias 7 - 4 = 3
    # (binary32: 7 - 5 = 2); 16.125 -> 2^4 both ways, each 0 -> +2^-bias: 0.125 (binary32: 0.25)
    ("bl4", BF16, [16.125] + [0.0] * 15, [16.0] + [0.125] * 15, [16.0] + [0.25] * 15),
    # MSFP bfp8 in binary16: E = ceil(log2 40000) = 16, 2^16 = Inf in binary16: mantissa |x| / Inf = 0,
    # sign * Inf * 0 = NaN for the whole block (binary32: 40000 / 2^16 * 128 = 78.1 -> 78: 39936, and each
    # 1.0 / 2^16 * 128 = 0.002 -> 0)
    ("bfp8", F16, [40000.0] + [1.0] * 15, [math.nan] * 16, [39936.0] + [0.0] * 15),
    # log6 (bias 15, exponents -15..16) in binary16: round(log2 60000) = 16, 2^16 = Inf in binary16
    # (binary32 arithmetic gives 65536, stored clamped to the binary16 max 65504)
    ("log6", F16, [60000.0], [math.inf], [65504.0]),
    # the blend's isclose(x, 0) in bfloat16: atol 1e-8 rounds to 1.00117e-8 (0x322c) in x's dtype, so x = that
    # value passes through unquantized; in binary32 it is above 1e-8 and quantized (dmf8_e4m3: e = -7, 0)
    ("dmf8_e4m3", BF16, [1.0011717677116394e-08], [1.0011717677116394e-08], [0.0]),
    # log4 (bias 3, c = 0.1 * 2^-3 = 0.0125, a Python float that torch casts to the tensor's dtype first):
    # bfloat16(0.0125) = 0.01251220703125, so x = -0.01251220703125 gives x + c = 0, sign 0, output 0; in binary32
    # x + c = -1.2e-5 < 0 and e = clamp(round(log2 0.025), -3, 4) = -3: -0.125
    ("log4", BF16, [-0.01251220703125], [0.0], [-0.125]),
    # float16(0.0125) = 0.0124969482421875: x = -0.0124969482421875 gives 0 (binary32: x + c = 3e-6 > 0, +0.125)
    ("log4", F16, [-0.0124969482421875], [0.0], [0.125]),
]


@pytest.mark.parametrize("name,dtype,x,half,single", HALF_GOLDEN)
def test_half_precision_arithmetic_golden(name, dtype, x, half, single):
    g = 16 if name.startswith("bfp") else None
    xt = torch.tensor([x], dtype=dtype)
    assert_same_bits(fq(xt, name, compat=P, group_size=g)[0], torch.tensor(half, dtype=dtype), f"{name} {dtype}", xt)
    # the same values in binary32 arithmetic (a float32 input), stored in the dtype
    y32 = fq(xt.float(), name, compat=P, group_size=g)[0]
    y32 = torch.clamp(y32, -ref.DTYPE_MAX[dtype], ref.DTYPE_MAX[dtype]).to(dtype)
    assert_same_bits(y32, torch.tensor(single, dtype=dtype), f"{name} binary32", xt)


def test_block_shape_2d_tiles_golden():
    # bl4 with 2 x 2 tiles of a 3 x 3 weight (padded to 4 x 4 with zeros): tile maxima 4, 1, 0.5 and (bottom
    # right) 0 -> the smallest nonzero, 0.5. bias = 7 - ceil(log2 max): 5, 7, 8, 8
    x = t32([[4.0, 0.3, 1.0], [0.5, 3.0, 0.0], [0.5, 0.25, 0.0]])
    y = qsparse.fake_quant(x, "bl4", compat=P, block_shape=(2, 2))
    want = t32([[4.0, 0.25, 1.0], [0.5, 4.0, 2.0**-7], [0.5, 0.25, 2.0**-8]])
    assert_same_bits(y, want, "bl4 2x2", x)
    assert_same_bits(y, ref.fake_quant(x, "bl4", compat=P, block_shape=(2, 2)), "bl4 2x2 ref", x)


@pytest.mark.parametrize("dtype", [F32, BF16])
@pytest.mark.parametrize("name", ["bl5", "bmf6_e3m2", "bfp6"])
def test_block_shape_matches_unfold_reference(name, dtype):
    gen = torch.Generator().manual_seed(9)
    x = (torch.randn(37, 45, generator=gen) * 2).to(dtype)
    x[:8, :8] = 0.0
    m = torch.rand(x.shape, generator=gen) < 0.8
    for bs in ((4, 4), (1, 16), (16, 1), (8, -1), (-1, 5), (64, 64), (3, 7)):
        for mask in (None, m):
            got = qsparse.fake_quant(x, name, compat=P, block_shape=bs, mask=mask)
            want = ref.fake_quant(x, name, compat=P, block_shape=bs, mask=mask)
            assert_same_bits(got, want, f"{name} {dtype} {bs}", x)
    # (1, b) is group_size=b, except that the source's F.fold returns a -0.0 output as +0.0
    assert_same_bits(qsparse.fake_quant(x, name, compat=P, block_shape=(1, 16)),
                     qsparse.fake_quant(x, name, compat=P, group_size=16) + 0.0, name, x)


def test_block_shape_errors():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="llm-mixed-q"):
        qsparse.fake_quant(x, "bl4", block_shape=(2, 2))
    with pytest.raises(ValueError, match="block format"):
        qsparse.fake_quant(x, "fp8_e4m3", compat=P, block_shape=(2, 2))
    with pytest.raises(ValueError, match="2-D"):
        qsparse.fake_quant(torch.randn(2, 4, 8), "bl4", compat=P, block_shape=(2, 2))
    with pytest.raises(ValueError, match="neither group_size"):
        qsparse.fake_quant(x, "bl4", compat=P, block_shape=(2, 2), group_size=4)
    with pytest.raises(ValueError, match="two ints"):
        qsparse.fake_quant(x, "bl4", compat=P, block_shape=(0, 2))
