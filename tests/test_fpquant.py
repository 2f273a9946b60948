"""compat="fpquant": IST-DASLab/FP-Quant's MXFP4 and NVFP4 quantizers (inference_lib/src/fp_quant/module/triton/
mxfp4.py and nvfp4.py, without their Hadamard rotation; FORMATS.md sections 4-5).

Oracles: qsparse/reference.py (fpquant_fake_quant: the same formulas in torch binary32 operations, the E4M3 block
scale through torch's float8_e4m3fn cast) for the sweeps; golden values worked out by hand from FP-Quant's
formulas (the binary32 roundings noted beside them).
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import reference as ref
from qsparse.formats import Format
from helpers import all_16bit, assert_same_bits, randn

F32 = torch.float32
THIRD = 0.3333333432674408  # binary32(2^-2 / 0.75): the mxfp4 scale of a block with max in [1, 2)


def t32(v):
    return torch.tensor(v, dtype=F32)


def test_mxfp4_golden():
    x = torch.zeros(1, 32)
    x[0, :6] = t32([1.0, 0.25, -0.3, 0.0, 2.5 * THIRD, 1.75])
    # max 1.75 -> e = 0, s = 1/3; 1.0 / s = 3.0 -> 3; 0.25 / s = 0.75, a tie: toward zero -> 0.5 (RNE: 1);
    # -0.3 / s = -0.9 -> -1; +0 -> -0 (sign of y > 0); 2.5 s / s = 2.5, a tie -> 2; 1.75 / s = 5.25 -> 6
    expected = torch.full((1, 32), -0.0)
    expected[0, :6] = t32([1.0, 0.1666666716337204, -THIRD, -0.0, 2 * THIRD, 2.0])
    assert_same_bits(qsparse.fake_quant(x, "mxfp4", compat="fpquant"), expected, "mxfp4 fpquant", x)
    # qsparse's default (OCP floor scale 2^(0 - 2), RNE): 0.25 / 0.25 = 1 exactly, 1.75 / 0.25 = 7 -> 6 (saturates)
    y = qsparse.fake_quant(x, "mxfp4")
    assert y[0, 1] == 0.25 and y[0, 5] == 1.5 and not torch.signbit(y[0, 3])


def test_nvfp4_golden():
    x = torch.zeros(1, 32)
    x[0, 0] = 6.0  # tensor max 6: g = 2688 / 6 = 448; this block: S = e4m3(448 * 6 / 6) = 448
    x[0, 16:20] = t32([0.5, 0.3, 0.125, -0.1875])  # S = e4m3(448 * 0.5 / 6 = 37.33) = 36
    y = qsparse.fake_quant(x, "nvfp4", compat="fpquant")
    # y = x * 448 / 36: 6.22 -> 6, 3.73 -> 4, 1.56 -> 1.5, -2.33 -> -2; output q * 36 / 448
    assert_same_bits(y[0, 16:20], t32([0.4821428656578064, 0.3214285671710968, 0.1205357164144516,
                                       -0.1607142835855484]), "nvfp4 fpquant", x[0, 16:20])
    assert y[0, 0] == 6.0 and torch.signbit(y[0, 1]) and torch.signbit(y[0, 20])  # +0 -> -0


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_all_16bit_patterns(name, dtype):
    x = all_16bit(dtype).reshape(-1, 32)
    for xs in (x, x[torch.isfinite(x).all(dim=1)]):  # with and without NaN/Inf (nvfp4: a NaN tensor is all NaN)
        assert_same_bits(qsparse.fake_quant(xs, name, compat="fpquant"), ref.fake_quant(xs, name, compat="fpquant"),
                         f"{name} {dtype}", xs)


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_random_tiny_zero_and_odd(name):
    for seed, scale, cols in ((0, 1.0, 64), (1, 1e-20, 48), (2, 1e20, 33), (3, 1.0, 7), (4, 1e-3, 4097)):
        x = randn((5, cols), seed, scale=scale)
        x[1] = 0.0
        x[2, ::3] = -0.0
        x[3, :5] = t32([1e-40, -1e-45, 3e38, -1.0, 0.0])
        for g in (None, 16, "row", "tensor"):
            y = qsparse.fake_quant(x, name, compat="fpquant", group_size=g)
            assert_same_bits(y, ref.fake_quant(x, name, compat="fpquant", group_size=g), f"{name} {seed} {g}", x)
            assert torch.isfinite(y).all()
    z = torch.zeros(2, 32)
    assert (qsparse.fake_quant(z, "nvfp4", compat="fpquant") == 0).all()  # documented: zeros, not FP-Quant's 0/0


def test_nan_block_and_mask():
    x = randn((2, 64), 7)
    m = torch.rand(2, 64, generator=torch.Generator().manual_seed(2)) < 0.5
    for first in (True, False):
        y = qsparse.fake_quant(x, "mxfp4", compat="fpquant", mask=m, sparsify_first=first)
        assert_same_bits(y, ref.fake_quant(x, "mxfp4", compat="fpquant", mask=m, sparsify_first=first), "mask")
    xb = x.clone()
    xb[0, 40] = math.nan
    y = qsparse.fake_quant(xb, "mxfp4", compat="fpquant")
    clean = qsparse.fake_quant(x, "mxfp4", compat="fpquant")
    assert torch.isnan(y[0, 32:]).all() and torch.equal(y[0, :32], clean[0, :32]) and torch.equal(y[1], clean[1])


def test_errors():
    with pytest.raises(ValueError, match="fpquant"):
        Format("mxfp8_e4m3", compat="fpquant")
    with pytest.raises(ValueError, match="fpquant"):
        Format("mxfp4", scale_mode="rceil", compat="fpquant")
    with pytest.raises(ValueError, match="rounding"):
        Format("nvfp4", compat="fpquant", rounding="stochastic")
    assert Format.from_dict(Format("nvfp4", compat="fpquant").to_dict()) == Format("nvfp4", compat="fpquant")
