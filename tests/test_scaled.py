"""Block-scaled formats: OCP MX (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8), NVFP4 and the
minifloats with a per-group scale (FORMATS.md sections 3-5).

Oracles: qsparse/reference.py (pure torch, torchao's to_mx / nvfp4_quantize arithmetic written from the spec) for
bit-exact sweeps, and values worked out by hand from the sources' formulas (independent of both).
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import formats
from qsparse import reference as ref
from helpers import assert_same_bits, batch_layouts, fq, randn

F32 = torch.float32
MX = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8")
SCALED_ROWS = MX + ("nvfp4",)
MODES = ("floor", "ceil", "even", "rceil", "e4m3", "e4m3_block", "amax")
SCALABLE_ELEMENTS = ("fp4_e2m1", "fp3_e2m0", "fp5_e2m2", "fp6_e3m2", "fp8_e4m3", "fp8_e5m2", "fp8_e1m6")


def t32(values):
    return torch.tensor(values, dtype=F32)


def wide_range(shape, seed, dtype=F32):
    """randn scaled per row by powers of two from 2^-140 to 2^120, with zeros, ties and exact grid values mixed
    in: every exponent clamp and subnormal path of the scales gets exercised."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    rows = x.shape[0]
    exps = torch.randint(-140, 120, (rows, 1), generator=g).to(torch.float64)
    x = x * torch.pow(2.0, exps)
    flat = x.view(-1)
    n = flat.numel()
    idx = torch.randperm(n, generator=g)
    flat[idx[: n // 10]] = 0.0
    flat[idx[n // 10: n // 5]] = torch.round(flat[idx[n // 10: n // 5]] * 4) / 4  # near-ties at small scales
    return x.to(F32).to(dtype)


def check(x, name, **kw):
    y = fq(x, name, **kw)
    r = ref.fake_quant(x, name, **kw)
    assert_same_bits(y, r, f"{name} {kw}", inputs=x)
    return y


# ---- C == reference, bit for bit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SCALED_ROWS)
def test_scaled_rows_match_reference(name, mode, dtype):
    x = wide_range((24, 100), seed=hash((name, mode)) % 1000, dtype=dtype)
    if dtype == torch.float16:
        x = torch.nan_to_num(x, posinf=0.0, neginf=0.0)
    for g in (None, 7, 16, 32, "row", "tensor"):
        check(x, name, group_size=g, scale_mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SCALABLE_ELEMENTS)
def test_scaled_minifloats_match_reference(name, mode):
    x = randn((16, 96), seed=5) * 3.7
    for g in (8, 32, "row", "tensor"):
        check(x, name, group_size=g, scale_mode=mode)
    y = check(x, name, group_size=32)  # a group size alone: a binary32 amax scale
    assert torch.equal(y, fq(x, name, group_size=32, scale_mode="amax"))


@pytest.mark.parametrize("name", SCALED_ROWS)
def test_scaled_stochastic_and_masks_match_reference(name):
    x = randn((8, 64), seed=11) * 10
    mask = torch.rand((8, 64), generator=torch.Generator().manual_seed(3)) > 0.4
    check(x, name, rounding="stochastic", seed=1234)
    for first in (True, False):
        check(x, name, mask=mask, sparsify_first=first)
    y = fq(x, name, mask=mask)
    assert (y[~mask] == 0).all()


@pytest.mark.parametrize("name", SCALED_ROWS)
def test_scaled_thread_count_does_not_matter(name):
    x = randn((64, 1000), seed=2)
    with torch.inference_mode():
        old = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            a = fq(x, name)
            torch.set_num_threads(2)
            b = fq(x, name)
        finally:
            torch.set_num_threads(old)
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("dtype", [F32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name,kw", [("nvfp4", {}), ("nvfp4", {"scale_mode": "e4m3_block"}),
                                     ("fp4_e2m1", {"group_size": 16}), ("fp8_e4m3", {"group_size": 32})])
def test_small_groups_across_batches_and_chunks(name, kw, dtype):
    # the kernel computes the constants of up to 64 small groups before their outputs: rows of 150 groups and a
    # shorter last one, 40 rows (two work chunks of 2^16 elements, split inside a row), zero and tiny blocks
    x = wide_range((40, 16 * 150 + 9), seed=31, dtype=dtype)
    x[3, 16 * 70: 16 * 72] = 0.0
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            check(x, name, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [F32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("name,kw,group", [("nvfp4", {}, 16), ("nvfp4", {"scale_mode": "e4m3_block"}, 16),
                                           ("mxfp4", {}, 32), ("mxfp8_e4m3", {"scale_mode": "rceil"}, 32),
                                           ("mxint8", {}, 32), ("fp4_e2m1", {"group_size": 16}, 16),
                                           ("nvfp4", {"compat": "fpquant"}, 16), ("mxfp4", {"compat": "fpquant"}, 32)])
def test_small_groups_in_runs_across_rows_and_views(name, kw, group, dtype):
    # groups of up to 32 are quantized in runs of consecutive groups (across rows when the tensor is contiguous
    # and its rows hold whole groups, else within a row)
    for label, x in batch_layouts(dtype, group, seed=group):
        assert_same_bits(fq(x, name, **kw), ref.fake_quant(x, name, **kw), f"{name} {kw} {label}", inputs=x)


def _fake_quant_in_place(x, name, **kw):
    """The C kernel with y == x (the ops always write a new tensor): a copy of x quantized where it lies."""
    import ctypes

    from qsparse import _lib, ops
    from qsparse.formats import Format
    from qsparse.functional import op_args

    a = op_args(Format(name, **kw))
    p = ops._params(a[0], a[1], a[2], 0, a[3], a[4], a[5], a[6])
    y = x.clone()
    rows, cols = y.shape
    _lib.cpu().call("qs_fake_quant_cpu", ctypes.byref(p), ops.dtype_code(y.dtype), rows, cols, y.data_ptr(), cols,
                    y.data_ptr(), cols, None, 0, ops.MASK_NONE, 1)
    return y


@pytest.mark.parametrize("dtype", [F32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("name,kw,group", [("nvfp4", {}, 16), ("nvfp4", {"scale_mode": "e4m3_block"}, 16),
                                           ("mxfp4", {}, 32), ("mxfp8_e4m3", {"scale_mode": "rceil"}, 32),
                                           ("fp4_e2m1", {"group_size": 16}, 16)])
def test_groups_not_quantized_in_runs_in_place(name, kw, group, dtype):
    # a run computes every group as a quantized one and then replaces those that are not (a zero scale: signed
    # zeros; a NaN or Inf, or an exponent past E8M0: NaN) from their outputs alone, since y may be x
    for label, x in batch_layouts(dtype, group, seed=3 * group):
        if label == "row-strided view":
            continue
        expected = ref.fake_quant(x, name, **kw)
        assert_same_bits(_fake_quant_in_place(x, name, **kw), expected, f"{name} {kw} {label} in place", inputs=x)
    # NVFP4 with its tensor scale: blocks whose scale ts * bs underflows to 0 although their elements do not (a
    # subnormal tensor scale), with both signs; their outputs are signed zeros
    if name == "nvfp4" and not kw and dtype == F32:
        g = torch.Generator().manual_seed(5)
        x = torch.randint(1, 4, (6, 8 * group), generator=g).double() * 2.0 ** -149
        x = x * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)
        x[0, :group] = 2.0 ** -133  # the tensor max: ts = 2^-133 / 2688, subnormal
        x = x.to(F32)
        expected = ref.fake_quant(x, name)
        zero_blocks = (expected.view(-1, group) == 0).all(1) & (x.view(-1, group) != 0).all(1)
        assert zero_blocks.sum() > 40, "the case needs blocks of nonzero elements with a zero scale"
        assert (torch.signbit(expected) == torch.signbit(x)).all()
        assert_same_bits(fq(x, name), expected, "nvfp4 zero-scale blocks", inputs=x)
        assert_same_bits(_fake_quant_in_place(x, name), expected, "nvfp4 zero-scale blocks in place", inputs=x)


# ---- values worked out by hand from the sources' formulas ---------------------------------------------------------


def test_mxfp4_floor_by_hand():
    # amax 6: E = floor(log2 6) - 2 = 0, scale 1; E2M1 thresholds of FORMATS.md section 3
    x = t32([[6.0, 5.0, 2.6, 0.3, -0.25, -1.25, 1.75, 0.0]])
    y = fq(x, "mxfp4", group_size=8)
    assert y.tolist() == [[6.0, 4.0, 3.0, 0.5, -0.0, -1.0, 2.0, 0.0]]
    # amax 7: E = 0 too; 7 saturates to 6
    assert fq(t32([[7.0, 1.0]]), "mxfp4").tolist() == [[6.0, 1.0]]
    # amax 0.75: floor(log2 0.75) = -1, E = -3, scale 1/8: 0.75 * 8 = 6, 0.1 * 8 = 0.8 -> 1 -> 0.125
    assert fq(t32([[0.75, 0.1]]), "mxfp4").tolist() == [[0.75, 0.125]]


def test_mx_scale_modes_by_hand():
    x = t32([[7.0, 1.0]])
    # ceil: E = ceil(log2 7) - 2 = 1, scale 2: 3.5 ties to 4 (even mantissa) -> 8; 0.5 -> 0.5 -> 1
    assert fq(x, "mxfp4", scale_mode="ceil").tolist() == [[8.0, 1.0]]
    # rceil: 7 * (1/6) = 1.1667 rounds up to 2^1: the same scale
    assert fq(x, "mxfp4", scale_mode="rceil").tolist() == [[8.0, 1.0]]
    # even: 7 = 1.75 * 2^2 rounds to 2.0 * 2^2 at one mantissa bit, E = 3 - 2 = 1
    assert fq(x, "mxfp4", scale_mode="even").tolist() == [[8.0, 1.0]]
    # even, 6.5 = 1.625 * 2^2 stays in its binade: E = 0, 6.5 saturates to 6
    assert fq(t32([[6.5, 1.0]]), "mxfp4", scale_mode="even").tolist() == [[6.0, 1.0]]
    # rceil at an exact power: 6 * fl32(1/6) = 1.0000000298 rounds to exactly 1.0 in binary32: E = 0, scale 1,
    # so 0.4 -> 0.5 as with floor (7 * fl32(1/6) = 1.1666667 had a mantissa and went up)
    assert fq(t32([[6.0, 0.4]]), "mxfp4", scale_mode="rceil").tolist() == [[6.0, 0.5]]
    # 12 * fl32(1/6) = 2.0000000596 rounds to 2.0: E = 1, scale 2: 0.4 -> 0.2 -> 0 (below E2M1's 0.25 threshold)
    assert fq(t32([[12.0, 0.4]]), "mxfp4", scale_mode="rceil").tolist() == [[12.0, 0.0]]
    assert fq(t32([[6.0, 0.4]]), "mxfp4", scale_mode="floor").tolist() == [[6.0, 0.5]]


def test_mxfp8_and_mxint8_by_hand():
    # mxfp8_e4m3, amax 1: E = 0 - 8, scale 2^-8: 0.3 * 256 = 76.8, spacing 8 in [64, 128) -> 80 -> 0.3125
    assert fq(t32([[1.0, 0.3]]), "mxfp8_e4m3").tolist() == [[1.0, 0.3125]]
    # mxfp8_e5m2, amax 1: E = 0 - 15: 0.3 * 2^15 = 9830.4, spacing 2048 in [8192, 16384) -> 10240 -> 0.3125
    assert fq(t32([[1.0, 0.3]]), "mxfp8_e5m2").tolist() == [[1.0, 0.3125]]
    # mxint8, amax 1: E = 0, k = round(x * 64): 0.3 -> 19.2 -> 19 -> 0.296875
    assert fq(t32([[1.0, 0.3]]), "mxint8").tolist() == [[1.0, 0.296875]]
    # amax 3: E = 1, k = round(x * 32): 0.3 -> 9.6 -> 10 -> 0.3125; 3 -> 96 -> 3
    assert fq(t32([[3.0, 0.3]]), "mxint8").tolist() == [[3.0, 0.3125]]
    # amax 3.99: E = 1, 3.99 * 32 = 127.68 -> k saturates at 127 -> 3.96875
    assert fq(t32([[3.99]]), "mxint8").tolist() == [[3.96875]]


def test_mx_exponent_clamps_by_hand():
    # amax 2^-140: floor(log2) = -127 for binary32 subnormals, E = -127 - 2 -> clamped to -127; 2^-140 / 2^-127 =
    # 2^-13 rounds to 0 in E2M1
    tiny = 2.0**-140
    assert fq(t32([[tiny]]), "mxfp4").tolist() == [[0.0]]
    # amax 2^-125: E = -125 - 2 = -127, 2^-125 / 2^-127 = 4 -> exact
    assert fq(t32([[2.0**-125]]), "mxfp4").tolist() == [[2.0**-125]]
    # amax 1.5 * 2^127 with E8M0 floor: E = 127 - 2 = 125, 1.5 * 2^2 = 6 is on the grid
    big = 1.5 * 2.0**127
    assert fq(t32([[big]]), "mxfp4").tolist() == [[big]]
    # mxfp8_e4m3 ceil: E = 128 - 8 = 120, no NaN
    assert math.isfinite(fq(t32([[big]]), "mxfp8_e4m3", scale_mode="ceil").item())
    # rceil: 1.5 * 2^127 * fl32(1/6) rounds to exactly 2^125 in binary32: E = 125, finite
    assert math.isfinite(fq(t32([[big]]), "mxfp4", scale_mode="rceil").item())


def test_nvfp4_by_hand():
    # no tensor scale: amax 7 -> 7/6 = 1.1667 -> E4M3 1.125; 7 / 1.125 = 6.22 -> 6 -> 6.75; 1 / 1.125 -> 1 -> 1.125
    x = t32([[7.0, 1.0] + [0.0] * 14])
    y = fq(x, "nvfp4", scale_mode="e4m3_block")
    assert y[0, :2].tolist() == [6.75, 1.125]
    # with the tensor scale: amax_t = 2688 gives s_t = 1, the same block scales; the 2688 block is exact
    x2 = t32([[7.0, 1.0] + [0.0] * 14 + [2688.0] + [0.0] * 15])
    y2 = fq(x2, "nvfp4")
    assert y2[0, :2].tolist() == [6.75, 1.125] and y2[0, 16].item() == 2688.0
    # block scales below 2^-6 clamp up to it: amax 0.03 without a tensor scale: 0.005 -> 2^-6; 0.03 / 2^-6 = 1.92
    # -> 2 -> 0.03125
    assert fq(t32([[0.03]]), "nvfp4", scale_mode="e4m3_block").tolist() == [[0.03125]]
    # and above 448: amax 6000 -> 1000 -> 448: 6000 / 448 = 13.4 saturates at 6 -> 2688
    assert fq(t32([[6000.0]]), "nvfp4", scale_mode="e4m3_block").tolist() == [[2688.0]]


def test_scaled_minifloat_by_hand():
    # fp4_e2m1 with a binary32 scale amax / 6: [3, 1] -> s = 0.5 -> [6, 2] -> [3, 1]; 0.6 -> 1.2 -> 1 -> 0.5
    assert fq(t32([[3.0, 1.0, 0.6]]), "fp4_e2m1", group_size=3).tolist() == [[3.0, 1.0, 0.5]]
    # fp3_e2m0 (no mantissa bits, no subnormals): 0, 1, 2, 4
    d = formats.describe("fp3_e2m0")
    assert d.grid == (0.0, 1.0, 2.0, 4.0)


# ---- special values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCALED_ROWS)
def test_scaled_special_blocks(name):
    g = formats.get(name).default_group
    x = torch.ones((1, 3 * g))
    x[0, :g] = 0.0  # an all-zero block stays zero
    x[0, g] = float("nan")  # a NaN block is NaN
    x[0, 2 * g + 1] = 3.0
    y = fq(x, name)
    if name == "nvfp4":  # the NaN also poisons the tensor scale: every block is NaN
        assert torch.isnan(y).all()
        y = fq(x, name, scale_mode="e4m3_block")
    assert (y[0, :g] == 0).all()
    assert torch.isnan(y[0, g:2 * g]).all() and torch.isfinite(y[0, 2 * g:]).all()
    # an all-zero tensor gives zeros (torchao's NVFP4 divides 0 by 0 here and returns NaN)
    assert (fq(torch.zeros(2, 2 * g), name) == 0).all()
    inf = torch.ones(1, g)
    inf[0, 3] = float("inf")
    assert torch.isnan(fq(inf, name)).all()


def test_f16_outputs_stay_finite():
    # NVFP4 block scales round up by up to 1/16: a block at the float16 max must not become Inf
    x = torch.full((1, 16), 65504.0, dtype=torch.float16)
    x[0, 1] = 60000.0
    for name in SCALED_ROWS:
        assert torch.isfinite(fq(x, name)).all(), name


# ---- formats, options, errors -------------------------------------------------------------------------------------


def test_describe_bits_per_element():
    assert formats.describe("mxfp4").bits_per_element == 4.25
    assert formats.describe("mxfp8_e4m3").bits_per_element == 8.25
    assert formats.describe("mxint8").bits_per_element == 8.25
    d = formats.describe("nvfp4")
    assert d.bits_per_element == 4.5 and d.tensor_scale_bits == 32
    assert formats.describe("nvfp4", scale_mode="e4m3_block").tensor_scale_bits == 0
    assert formats.describe("fp4_e2m1", 128).bits_per_element == 4.125
    assert formats.describe("fp4_e2m1").bits_per_element == 4
    assert formats.describe("mxfp4").grid == (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    assert formats.describe("mxint8").grid == tuple(k / 64 for k in range(128))
    assert formats.describe("mxfp6_e3m2").max == 28.0 and formats.describe("mxfp6_e2m3").max == 7.5
    assert formats.describe("mxfp8_e5m2").max == 57344.0 and not formats.describe("mxfp8_e5m2").has_inf


def test_aliases():
    assert formats.parse("nvfp") == "nvfp4" and formats.parse("mxfp") == "mxfp4"
    assert formats.parse("MXFP8") == "mxfp8_e4m3"


@pytest.mark.parametrize("kw, match", [
    (dict(fmt="int4", scale_mode="floor"), "scale_mode"),
    (dict(fmt="bfp8", scale_mode="amax"), "scale_mode"),
    (dict(fmt="mxfp4", scale_mode="none"), "scale_mode='none'"),
    (dict(fmt="mxfp4", scale_mode="round"), "scale_mode='round'"),
    (dict(fmt="fp16", scale_mode="floor"), "8 bits or fewer"),
    (dict(fmt="fp16", group_size=32), "element-wise"),
    (dict(fmt="mxfp4", saturate=False), "saturate=False"),
    (dict(fmt="fp8_e5m2", group_size=32, saturate=False), "saturate=False"),
    (dict(fmt="fp4_e2m1", scale_mode="none", group_size=32), "scale_mode='none'"),
])
def test_bad_options_raise_before_any_call(kw, match):
    fmt = kw.pop("fmt")
    with pytest.raises(ValueError, match=match):
        qsparse.fake_quant(torch.ones(2, 32), fmt, **kw)


def test_format_round_trip_with_scale_mode():
    f = qsparse.Format("mxfp4", scale_mode="rceil", group_size=64)
    assert qsparse.Format.from_dict(f.to_dict()) == f
    assert f.effective_scale_mode == "rceil"
    assert qsparse.Format("fp4_e2m1").effective_scale_mode == "none"
    assert qsparse.Format("fp4_e2m1", group_size=16).effective_scale_mode == "amax"
    assert qsparse.Format("nvfp4").effective_scale_mode == "e4m3"


def test_gradient_is_straight_through():
    x = randn((4, 32), seed=1).requires_grad_()
    qsparse.fake_quant(x, "mxfp4").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
