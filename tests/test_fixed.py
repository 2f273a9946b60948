"""llm-mixed-q's fixed point (its `integer` quantizer): fixed{w}_f{f}, x_hat = clamp(round(x * 2^f), -2^(w-1),
2^(w-1) - 1) / 2^f, element-wise, round half to even (torch.round).

Oracles: qsparse/reference.py (fixed_fake_quant, float64 from the spec) for the bit-exact sweeps; `source_form`
below, the source's formula (ChengZhang-98/llm-mixed-q src/llm_mixed_q/models/quantize/quantizers/integer.py:
x.mul(2**f), round, clamp, div(2**f)) evaluated by torch in the input's own dtype, as the source runs; golden values
worked out by hand from that formula.
"""
from __future__ import annotations

import pytest
import torch

import qsparse
from qsparse import formats
from qsparse import reference as ref
from qsparse.formats import Format
from helpers import FIXED_FORMATS, all_16bit, assert_same_bits, randn

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
NAN, INF = float("nan"), float("inf")
# (w, f) pairs of the sweeps: the narrowest and widest rows, f = 0, f > w, f < 0, llm-mixed-q's 8/4 and 16/8
PAIRS = [(2, 0), (3, -2), (4, 1), (8, 4), (8, 0), (8, 12), (16, 8), (16, 14), (16, 32), (5, -16)]


def name_of(w, f):
    return f"fixed{w}_f{f}" if f >= 0 else f"fixed{w}_fm{-f}"


def source_form(x, w, f):
    """The source's integer_quantizer (is_signed=True) in x's dtype."""
    return torch.clamp(torch.round(x.mul(2**f)), -(2 ** (w - 1)), 2 ** (w - 1) - 1).div(2**f)


def t32(values):
    return torch.tensor(values, dtype=F32)


# ---- names, the table, describe ---------------------------------------------------------------------------------

def test_table_rows():
    assert FIXED_FORMATS == tuple(f"fixed{w}_f0" for w in range(2, 17))
    for w in range(2, 17):
        info = formats.get(f"fixed{w}_f0")
        assert (info.family, info.bits, info.qmin, info.qmax) == ("llmq", w, -(2 ** (w - 1)), 2 ** (w - 1) - 1)
        assert info.elementwise and not info.has_inf and not info.has_nan and info.fixed_point


@pytest.mark.parametrize("name,bits,frac,canonical", [
    ("integer", 8, 4, "fixed8_f4"), ("integer", 16, 8, "fixed16_f8"), ("Integer", 4, 0, "fixed4_f0"),
    ("fixed", 2, -3, "fixed2_fm3"), ("fixed_point", 12, 20, "fixed12_f20"),
    ("fixed8_f4", None, None, "fixed8_f4"), ("fixed8_f-2", None, None, "fixed8_fm2"),
    ("fixed8_fm2", 8, -2, "fixed8_fm2"),
])
def test_names(name, bits, frac, canonical):
    assert formats.parse(name, bits=bits, frac_width=frac) == canonical
    assert Format(canonical).name == canonical


def test_llmq_config_loads():
    # a quantizer config as llm-mixed-q writes it (name, width, frac_width)
    assert formats.llmq_format({"name": "integer", "width": 8, "frac_width": 4}) == Format("fixed8_f4")
    assert formats.llmq_format({"name": "integer", "width": 16, "frac_width": 8, "is_signed": True}).name == \
        "fixed16_f8"
    assert formats.llmq_format({"name": "block_fp", "width": 8}) == Format("bfp8", compat="llm-mixed-q")
    assert formats.llmq_format({"name": "log", "width": 4}) == Format("log4")


@pytest.mark.parametrize("call,match", [
    (lambda: formats.parse("integer", bits=8), "frac_width="),
    (lambda: formats.parse("integer", frac_width=4), "bits="),
    (lambda: formats.parse("integer", bits=17, frac_width=0), r"width=17 is not supported; allowed: 2 to 16"),
    (lambda: formats.parse("integer", bits=1, frac_width=0), r"width=1 is not supported"),
    (lambda: formats.parse("integer", bits=8, frac_width=33), r"frac_width=33 is not supported; allowed: -16 to 32"),
    (lambda: formats.parse("fixed8_fm17"), r"frac_width=-17"),
    (lambda: formats.parse("fixed32_f0"), r"width=32"),
    (lambda: formats.parse("fixed8_f4", frac_width=3), "disagrees"),
    (lambda: formats.parse("fixed8_f4", bits=4), "disagrees"),
    (lambda: formats.parse("int4", frac_width=3), "frac_width applies"),
    (lambda: formats.llmq_format({"name": "integer", "width": 8}), "frac_width"),
    (lambda: formats.llmq_format({"name": "integer", "width": 8, "frac_width": 4, "is_signed": False}),
     "is_signed"),
    (lambda: formats.llmq_format({"name": "integer", "width": 8, "frac_width": 4, "bias": 1}), "unknown keys"),
    (lambda: Format("fixed8_f4", group_size=32), "element-wise"),
    (lambda: Format("fixed8_f4", rounding="stochastic"), "rounding"),
    (lambda: Format("fixed8_f4", observer="mse"), "observer"),
])
def test_errors_name_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_describe():
    d = formats.describe("fixed4_f1")
    assert d.grid == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)  # k / 2, k = 0 .. 7
    assert (d.max, d.lowest, d.min_normal, d.min_subnormal) == (3.5, -4.0, 0.5, 0.5)
    assert (d.element_bits, d.overhead_bits, d.bits_per_element, d.scale_mode) == (4, 0.0, 4.0, "default")
    assert not d.has_inf and not d.has_nan
    d = formats.describe("fixed8_fm2")  # k * 4, k = -128 .. 127
    assert (d.max, d.lowest, d.min_subnormal, d.bits_per_element) == (508.0, -512.0, 4.0, 8.0)
    assert d.grid[:3] == (0.0, 4.0, 8.0) and len(d.grid) == 128
    d = formats.describe("fixed16_f8")
    assert (d.max, d.lowest, d.min_subnormal, d.bits_per_element, d.grid) == (32767 / 256, -128.0, 2.0**-8, 16.0,
                                                                              None)
    assert formats.describe("fixed8_f4", compat="llm-mixed-q").notes == ()  # the source's arithmetic already


# ---- values -------------------------------------------------------------------------------------------------------

# Worked out by hand from the source's formula: (w, f, x, x_hat).
GOLDEN = [
    (4, 1, 0.25, 0.0),     # 0.5 -> 0 (tie to even)
    (4, 1, 0.75, 1.0),     # 1.5 -> 2
    (4, 1, 1.25, 1.0),     # 2.5 -> 2
    (4, 1, 3.6, 3.5),      # 7.2 -> 7 = the clamp 2^3 - 1
    (4, 1, 100.0, 3.5),
    (4, 1, -5.0, -4.0),    # -10 -> clamp -8
    (4, 1, -3.9, -4.0),    # -7.8 -> -8
    (4, 1, -0.3, -0.5),    # -0.6 -> -1
    (4, 1, -0.2, -0.0),    # -0.4 -> -0.0 (torch.round keeps the sign)
    (8, 4, 1.03125, 1.0),  # 16.5 -> 16
    (8, 4, 1.09375, 1.125),  # 17.5 -> 18
    (8, 4, 7.96875, 7.9375),  # 127.5 -> 128 -> clamp 127
    (8, 4, -8.03125, -8.0),  # -128.5 -> -128
    (8, 0, 2.5, 2.0), (8, 0, 3.5, 4.0), (8, 0, -126.5, -126.0),
    (2, 0, 0.5, 0.0), (2, 0, 0.51, 1.0), (2, 0, 1.7, 1.0), (2, 0, -1.7, -2.0), (2, 0, -9.0, -2.0),
    (8, -2, 6.0, 8.0),     # 1.5 -> 2, times 4
    (8, -2, 2.0, 0.0),     # 0.5 -> 0
    (8, -2, 1000.0, 508.0),  # 250 -> 127
    (16, 8, 200.0, 32767 / 256),
    (16, 8, -200.0, -128.0),
    (16, 8, 0.001953125, 0.0),  # 0.5 -> 0
    (16, 8, 0.005859375, 0.0078125),  # 1.5 -> 2
]


@pytest.mark.parametrize("w,f,x,expected", GOLDEN)
def test_golden_values(w, f, x, expected):
    y = qsparse.fake_quant(t32([x]), name_of(w, f))
    assert_same_bits(y, t32([expected]), f"{name_of(w, f)}({x})")
    assert_same_bits(source_form(t32([x]), w, f), t32([expected]), "the source's formula")


@pytest.mark.parametrize("dtype", [F32, F16, BF16])
def test_nan_inf_and_signed_zeros(dtype):
    # as the source: NaN stays NaN (torch.clamp propagates it), +-Inf clamp to the grid's ends, zeros keep their sign
    x = torch.tensor([NAN, INF, -INF, 0.0, -0.0, 1.0], dtype=dtype)
    y = qsparse.fake_quant(x, "fixed8_f4")
    expected = torch.tensor([NAN, 127 / 16, -8.0, 0.0, -0.0, 1.0], dtype=dtype)
    assert_same_bits(y, expected, "specials")
    assert_same_bits(source_form(x, 8, 4), expected, "the source")
    # one NaN does not touch its neighbours (no groups)
    x = randn((3, 40), 1, dtype)
    x[1, 7] = NAN
    y = qsparse.fake_quant(x, "fixed8_f4")
    clean = qsparse.fake_quant(torch.where(torch.isnan(x), torch.zeros((), dtype=dtype), x), "fixed8_f4")
    nan = torch.isnan(y)
    assert nan.sum() == 1 and nan[1, 7]
    assert_same_bits(y[~nan], clean[~nan], "neighbours")


@pytest.mark.parametrize("dtype", [F16, BF16])
@pytest.mark.parametrize("w,f", PAIRS)
def test_all_16bit_patterns(w, f, dtype):
    name = name_of(w, f)
    x = all_16bit(dtype)
    y = qsparse.fake_quant(x, name)
    assert_same_bits(y, ref.fixed_fake_quant(x, name), f"{name} all {dtype} patterns", inputs=x)
    # the source in the input's own dtype: the same bits, except fp16 grids beyond 65504 (5, -16 here), where the
    # source's division overflows to Inf and qsparse clamps to the dtype's max (as its integer grids do)
    src = source_form(x, w, f)
    if dtype == F16 and 2.0 ** (w - 1 - f) > 65504:
        over = torch.isinf(src)  # (Inf inputs too: they clamp to the grid's end, which overflows)
        assert over.any()
        assert (y[over].abs() == 65504).all()
        src = torch.where(over, y, src)
    assert_same_bits(y, src, f"{name} vs the source's formula in {dtype}", inputs=x)


@pytest.mark.parametrize("w,f", PAIRS)
def test_float32_against_reference_and_source(w, f):
    name = name_of(w, f)
    scale = 2.0 ** (w - 1 - f)  # around the grid's range, beyond it and far below its step
    x = torch.cat([randn((4096,), 3, scale=scale), randn((1024,), 4, scale=scale * 8),
                   randn((1024,), 5, scale=2.0**-f / 4), t32([3.4e38, -3.4e38, 1e-45, -1e-45, 2.0**-f / 2])])
    y = qsparse.fake_quant(x, name)
    assert_same_bits(y, ref.fixed_fake_quant(x, name), f"{name} float32")
    assert_same_bits(y, source_form(x, w, f), f"{name} float32 vs the source")


def test_every_value_is_on_the_grid():
    x = randn((2000,), 7, scale=8.0)
    y = qsparse.fake_quant(x, "fixed6_f2")
    k = y * 4
    assert torch.equal(k, torch.round(k)) and k.min() >= -32 and k.max() <= 31
    assert torch.equal(qsparse.fake_quant(y, "fixed6_f2"), y)  # idempotent


# ---- shapes, views, masks, threads ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cols", [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023, 4097])
def test_odd_sizes(cols):
    x = randn((3, cols), cols, scale=4.0)
    assert_same_bits(qsparse.fake_quant(x, "fixed8_f4"), ref.fixed_fake_quant(x, "fixed8_f4"), f"cols {cols}")


def test_views_and_empty():
    base = randn((40, 70), 11, scale=4.0)
    for v in (base.t(), base[3:17, 5:60], base[::2, ::3], base[:1].expand(5, 70), base.view(-1)[13:13 + 700]):
        assert_same_bits(qsparse.fake_quant(v, "fixed8_f4"), qsparse.fake_quant(v.contiguous(), "fixed8_f4"),
                         "view")
    for e in (torch.empty(0, 5), torch.empty(3, 0), torch.tensor(1.3)):
        y = qsparse.fake_quant(e, "fixed8_f4")
        assert y.shape == e.shape and y.dtype == e.dtype
    assert qsparse.fake_quant(torch.tensor(1.3), "fixed8_f4").item() == 1.3125  # 20.8 -> 21


@pytest.mark.parametrize("first", [True, False])
def test_masks(first):
    x = randn((6, 50), 12, scale=4.0)
    mask = torch.rand(6, 50, generator=torch.Generator().manual_seed(0)) > 0.5
    y = qsparse.fake_quant(x, "fixed8_f4", mask=mask, sparsify_first=first)
    assert_same_bits(y, ref.fixed_fake_quant(x, "fixed8_f4", mask=mask, sparsify_first=first), "masked")
    assert (y[~mask] == 0).all() and not torch.signbit(y[~mask]).any()


def test_thread_counts_agree():
    x = randn((64, 1000), 13, scale=8.0)
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 8):
            torch.set_num_threads(n)
            outs.append(qsparse.fake_quant(x, "fixed8_f4"))
    finally:
        torch.set_num_threads(old)
    for o in outs[1:]:
        assert_same_bits(o, outs[0], "threads")


def test_compat_profile_is_the_same_arithmetic():
    x = torch.cat([randn((500,), 14, scale=4.0), t32([1e-9, -1e-9, -0.0, NAN, INF])])
    assert_same_bits(qsparse.fake_quant(x, "fixed8_f4", compat="llm-mixed-q"), qsparse.fake_quant(x, "fixed8_f4"),
                     "profile")


def test_format_round_trip_and_gradient():
    f = Format("fixed8_fm2")
    assert Format.from_dict(f.to_dict()) == f and f.to_dict() == {"name": "fixed8_fm2"}
    x = randn((4, 8), 15, scale=4.0).requires_grad_()
    qsparse.fake_quant(x, "fixed8_f4").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight-through, as the source's STE


def _cuda_missing():
    try:
        from qsparse import _lib
        return not (torch.cuda.is_available() and _lib.cuda_available())
    except Exception:
        return True


@pytest.mark.skipif(_cuda_missing(), reason="needs a CUDA device and the CUDA library")
@pytest.mark.parametrize("dtype", [F32, F16, BF16])
@pytest.mark.parametrize("w,f", PAIRS)
def test_cuda_matches_cpu(w, f, dtype):
    x = all_16bit(dtype) if dtype != F32 else randn((70000,), 16, scale=2.0 ** (w - 1 - f))
    x = x.reshape(-1, 256)
    cpu = qsparse.fake_quant(x, name_of(w, f))
    assert_same_bits(qsparse.fake_quant(x.cuda(), name_of(w, f)).cpu(), cpu, f"{name_of(w, f)} cuda")


def test_gptq_on_the_grid_and_below_rtn():
    from qsparse import algorithms
    g = torch.Generator().manual_seed(0)
    W, X = torch.randn(16, 256, generator=g), torch.randn(2048, 256, generator=g)
    H = 2 * X.T @ X / X.shape[0]
    Q = algorithms.gptq(W, H, "fixed8_f5").weight
    k = Q * 32
    assert torch.equal(k, torch.round(k)) and k.min() >= -128 and k.max() <= 127
    err = lambda q: ((W - q) @ X.T).pow(2).sum().item()  # noqa: E731
    assert err(Q) <= err(qsparse.fake_quant(W, "fixed8_f5"))


def test_bfplinear_takes_fixed_point():
    layer = qsparse.BFPLinear.from_linear(torch.nn.Linear(64, 32), weight="fixed8_f4", activation="fixed16_f8")
    x = randn((3, 64), 17)
    w = qsparse.fake_quant(layer.weight.detach(), "fixed8_f4")
    expected = torch.nn.functional.linear(qsparse.fake_quant(x, "fixed16_f8"), w, layer.bias.detach())
    assert torch.equal(layer(x).detach(), expected)
