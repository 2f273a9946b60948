"""Lookup-grid formats (ANT, BitMoD: FORMATS.md section 7), the compat profiles and the rounding modes half_away and
ties_lower.

Oracles: qsparse/reference.py (written from the spec) for bit-exact sweeps; BitMoD's own functions transcribed
below from yc2367/BitMoD-HPCA-25 bitmod_quant/quant_utils/quant_weight.py (quant_int, quant_int_asym, quant_mx,
quant_datatype, search_datatype: the same torch operations in the same dtypes) for the `bitmod` profile; values worked
out by hand for ties, extra values and the microxcaling log2 rounding.
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import formats
from qsparse import reference as ref
from helpers import LUT_FORMATS, assert_same_bits, batch_layouts, randn

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


def t32(values):
    return torch.tensor(values, dtype=F32)


def outliers(shape, seed, dtype=F32):
    """randn with a few large outliers per row and some exact zeros: groups whose best grid differs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    x = x * torch.where(torch.rand(shape, generator=g) < 0.05, 8.0, 1.0)
    x[torch.rand(shape, generator=g) < 0.05] = 0.0
    return (x * 0.02).to(dtype)


# ---- BitMoD's functions, transcribed (the profile's oracle) ----------------------------------------------------------

def bitmod_thresholds(x, values, mid):
    """The threshold loop both of BitMoD's quantizers use: value i where mid[i-1] < x <= mid[i]."""
    q = torch.zeros_like(x)
    for i, data in enumerate(values):
        if i == 0:
            q += torch.where(x <= mid[i], data, 0)
        elif i == len(values) - 1:
            q += torch.where(x > mid[i - 1], data, 0)
        else:
            q += torch.where((mid[i - 1] < x) & (x <= mid[i]), data, 0)
    return q


def bitmod_quant_datatype(w, values, group_size):
    """quant_datatype(w_fp16, datatype, group_size): binary16 throughout, thresholds at the midpoints."""
    mid = [(values[i] + values[i + 1]) / 2 for i in range(len(values) - 1)]
    K, C = w.shape
    w_new = w.unsqueeze(-1).reshape(K, C // group_size, group_size).to(torch.float16)
    rmax = torch.amax(w_new.abs(), dim=-1, keepdim=True)
    qmax = max(abs(v) for v in values)
    scale = (rmax / qmax).clamp(min=1e-5, max=1e4)
    x = w_new / scale
    q = bitmod_thresholds(x, values, mid)
    return (q * scale).reshape(K, C)


def bitmod_search_datatype(w, grids, group_size):
    """search_datatype: the first grid with a strictly smaller binary16 mean squared error, from 1e3."""
    K, C = w.shape
    w3 = w.to(torch.float16).reshape(K, C // group_size, group_size)
    q = torch.zeros_like(w3)
    error = torch.full([K, C // group_size], 1e3, dtype=w3.dtype)
    choice = torch.full([K, C // group_size], 255, dtype=torch.uint8)
    for c, values in enumerate(grids):
        wq = bitmod_quant_datatype(w3.reshape(K, C), values, group_size).reshape(K, C // group_size, group_size)
        err = (wq - w3).pow(2).mean(-1)
        upd = torch.lt(err, error)
        error[upd] = err[upd]
        q[upd] = wq[upd]
        choice[upd] = c
    return q.reshape(K, C), choice


def bitmod_quant_mx(w, values, group_size=32):
    """quant_mx: E = floor(log2 amax) in binary32, x / 2^E / (1 / (qmax / 2)), output in binary16."""
    mid = [(values[i] + values[i + 1]) / 2 for i in range(len(values) - 1)]
    K, C = w.shape
    w_new = w.unsqueeze(-1).reshape(K, C // group_size, group_size).to(torch.float32)
    shared_exp, _ = torch.max(w_new.abs(), dim=-1, keepdim=True)
    shared_exp = torch.floor(torch.log2(shared_exp))
    w_new = w_new / (2**shared_exp)
    qmax = max(abs(v) for v in values)
    scale = 1 / (qmax / 2)
    x = w_new / scale
    q = bitmod_thresholds(x, values, mid)
    return (q * scale * (2**shared_exp)).reshape(K, C).to(torch.float16)


def bitmod_quant_int(w, bits, group_size, asym):
    K, C = w.shape
    w_new = w.unsqueeze(-1).reshape(K, C // group_size, group_size).to(torch.float16)
    if asym:
        rmin = torch.amin(w_new, dim=-1, keepdim=True)
        rmax = torch.amax(w_new, dim=-1, keepdim=True)
        qmin, qmax = 0, 2**bits - 1
        scale = ((rmax - rmin) / (qmax - qmin)).clamp(min=1e-5, max=1e4)
        zp = torch.round(-rmin / scale).clamp(min=qmin, max=qmax)
        q = torch.clamp(torch.round(w_new / scale) + zp, min=qmin, max=qmax)
        return ((q - zp) * scale).reshape(K, C)
    rmax = torch.amax(w_new.abs(), dim=-1, keepdim=True)
    qmax = 2 ** (bits - 1) - 1
    scale = (rmax / qmax).clamp(min=1e-5, max=1e4)
    return (torch.clamp(torch.round(w_new / scale), min=-qmax, max=qmax) * scale).reshape(K, C)


# ---- the table ----------------------------------------------------------------------------------------------------

def test_lut_rows_carry_the_spec_grids():
    assert set(LUT_FORMATS) == set(ref.LUT_FORMATS)
    for name in LUT_FORMATS:
        info = formats.get(name)
        names, _, pow2 = ref.LUT_FORMATS[name]
        assert [g[0] for g in info.grids] == names, name
        for (gname, values) in info.grids:
            assert list(values) == ref.BITMOD_GRIDS[gname], (name, gname)
        assert info.candidates == len(names)
        assert info.default_group == (32 if pow2 else 128)
        assert info.bits == (3 if name.endswith("3") or name.startswith("fp3") else 4)


@pytest.mark.parametrize("name,group,bpe", [
    ("mixed_bitmod4", 128, 4 + (16 + 2) / 128), ("mixed_bitmod3", 128, 3 + 18 / 128), ("mixed_ant4", 128, 4 + 17 / 128),
    ("mixed_er4", 64, 4 + 17 / 64), ("flint4", 128, 4 + 16 / 128), ("fp4_ea_pos", None, 4.125), ("mx_fp4", None, 4.25),
    ("mx_fp3", 32, 3.25)])
def test_describe_counts_scale_and_metadata(name, group, bpe):
    d = formats.describe(name, group)
    assert d.bits_per_element == pytest.approx(bpe, abs=1e-12)
    assert d.metadata_bits == (2 if "bitmod" in name else 1 if name.startswith("mixed") else 0)
    assert d.grid == tuple(sorted({abs(v) for v in ref.BITMOD_GRIDS[ref.LUT_FORMATS[name][0][0]]}))


# ---- C == reference, bit for bit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, BF16, F16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("name", LUT_FORMATS)
def test_lut_formats_match_reference(name, dtype):
    x = outliers((12, 300), seed=len(name) * 7 + dtype.itemsize, dtype=dtype)
    for group in (None, 7, 32, 128, "row"):
        y = qsparse.fake_quant(x, name, group_size=group)
        assert_same_bits(y, ref.fake_quant(x, name, group_size=group), f"{name} g={group}", inputs=x)
        if formats.get(name).candidates > 1:
            c = qsparse.group_choices(x, name, group_size=group)
            _, rc = ref.lut_fake_quant(x, name, group, return_choice=True)
            assert torch.equal(c, rc), f"{name} g={group}: choices"


@pytest.mark.parametrize("dtype", [F32, BF16, F16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("name,group", [("mx_fp4", 32), ("mx_fp3", 32), ("flint4", 128), ("fp4_er_pos", 16),
                                        ("fp3_ea_neg", 64), ("mx_int4", 32)])
def test_single_grids_in_runs_across_rows_and_views(name, group, dtype):
    # single grids take runs of consecutive groups together (across rows when the tensor is contiguous and its
    # rows hold whole groups, else within a row)
    for label, x in batch_layouts(dtype, group, seed=group + 1):
        y = qsparse.fake_quant(x, name, group_size=group)
        assert_same_bits(y, ref.fake_quant(x, name, group_size=group), f"{name} g={group} {label}", inputs=x)


@pytest.mark.parametrize("name", ["mixed_bitmod4", "mixed_ant3", "fp4_er_neg", "mx_fp4"])
@pytest.mark.parametrize("first", [True, False])
def test_lut_masks_and_threads(name, first):
    x = outliers((16, 256), seed=3)
    mask = torch.rand(16, 256, generator=torch.Generator().manual_seed(4)) < 0.5
    y = qsparse.fake_quant(x, name, mask=mask, sparsify_first=first)
    assert_same_bits(y, ref.fake_quant(x, name, mask=mask, sparsify_first=first), name, inputs=x)
    assert bool((y[~mask] == 0).all())
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1 = qsparse.fake_quant(x, name, mask=mask, sparsify_first=first)
    finally:
        torch.set_num_threads(old)
    assert_same_bits(y1, y, "1 thread")


@pytest.mark.parametrize("name", ["mixed_bitmod4", "mixed_ant4", "mixed_er3", "mx_fp4", "flint4"])
def test_lut_long_masked_groups_and_tiny_maxima(name):
    # groups longer than the kernel's buffer (loaded in chunks, once per grid) with a mask; and groups whose max is
    # a few binary32 subnormal steps, where amax / max|grid| underflows to 0 for some grids of a mixed format and
    # not for others
    x = outliers((6, 700), seed=11)
    mask = torch.rand(6, 700, generator=torch.Generator().manual_seed(12)) < 0.6
    for first in (True, False):
        y = qsparse.fake_quant(x, name, group_size="row", mask=mask, sparsify_first=first)
        assert_same_bits(y, ref.fake_quant(x, name, group_size="row", mask=mask, sparsify_first=first), name,
                         inputs=x)
    tiny = 2.0 ** -149
    x = torch.tensor([[k * tiny, -tiny, 3 * tiny, 0.0] * 8 for k in (1, 2, 3, 5, 8, 12, 15, 16, 17, 24, 31, 33)])
    y = qsparse.fake_quant(x, name, group_size=32)
    assert_same_bits(y, ref.fake_quant(x, name, group_size=32), f"{name} subnormal maxima", inputs=x)


def test_lut_special_groups():
    x = torch.zeros(3, 256)
    x[1, 5] = math.nan
    x[2, 130] = math.inf
    x[2, 0] = 1.0
    for name in ("mixed_bitmod4", "flint4", "mx_fp3"):
        y = qsparse.fake_quant(x, name)
        assert bool((y[0] == 0).all()) and not bool(torch.signbit(y[0]).any()), name
        g = formats.get(name).default_group
        assert bool(torch.isnan(y[1, :g]).all()) and bool((y[1, g:] == 0).all()), name
        assert_same_bits(y, ref.fake_quant(x, name), name)


# ---- hand-worked values ------------------------------------------------------------------------------------------------

def test_fp4_ties_go_to_the_lower_value():
    # amax 12 on BitMoD's fp4 grid (fp4_er_pos's max is also 12): scale 1, y = x; ties at the midpoints go down
    x = t32([[12.0, 2.5, -2.5, 5.0, -5.0, 7.0, -7.0, 0.5, -0.5, 9.0, -10.0, 11.0, -11.0, 1.5, -1.5, 0.0]])
    exp_er_pos = [12, 2, -3, 4, -6, 6, -8, 0, -1, 8, -12, 10, -12, 1, -2, 0]
    exp_er_neg = [12, 2, -3, 4, -6, 6, -8, 0, -1, 8, -10, 12, -12, 1, -2, 0]
    assert qsparse.fake_quant(x, "fp4_er_pos", group_size=16).tolist()[0] == exp_er_pos
    assert qsparse.fake_quant(x, "fp4_er_neg", group_size=16).tolist()[0] == exp_er_neg
    # ea_pos: max 16 -> with amax 16, 14 is the tie between 12 and 16; the negative side ends at -12
    y = qsparse.fake_quant(t32([[16.0, 14.0, -14.0, 15.0, 10.0, -20.0 / 1.25]]), "fp4_ea_pos", group_size=6)
    assert y.tolist()[0] == [16.0, 12.0, -12.0, 16.0, 8.0, -12.0]


@pytest.mark.parametrize("name", ["flint4", "fp4_er_pos", "fp4_ea_neg", "mixed_bitmod4", "mixed_ant3", "mx_fp4"])
@pytest.mark.parametrize("dtype", [F32, BF16], ids=["f32", "bf16"])
def test_grid_zero_is_positive_zero(name, dtype):
    # the grid's 0 is +0 (BitMoD's grid value times the scale): -0 and negative values that round to 0 give +0
    x = torch.tensor([[8.0, -0.0, -1e-3, -1e-30, 1e-3, 0.0, -5.0, 5.0] * 4], dtype=dtype)
    y = qsparse.fake_quant(x, name, group_size=32)[0]
    zeros = y.view(4, 8)[:, 1:6]
    assert bool((zeros == 0).all()) and not bool(torch.signbit(zeros).any()), (name, y[:8].tolist())
    assert bool((y.view(4, 8)[:, 6] < 0).all()) and bool((y.view(4, 8)[:, 7] > 0).all()), name


def test_mixed_takes_the_grid_with_the_smallest_error():
    # one group where +10 is the only good value (er_pos), one where -16 is (ea_neg); scale amax / max|grid|
    g1 = [10.0, 10.0, 10.0, 12.0, 1.0, 0.0, 0.0, 0.0]
    g2 = [-16.0, -16.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    x = t32([g1 + g2])
    y = qsparse.fake_quant(x, "mixed_bitmod4", group_size=8)
    c = qsparse.group_choices(x, "mixed_bitmod4", group_size=8)
    assert c.tolist() == [[0, 3]]
    assert y.tolist()[0] == g1 + g2  # both groups land exactly on their grid
    names = [n for n, _ in formats.get("mixed_bitmod4").grids]
    assert [names[i] for i in c[0].tolist()] == ["fp4_er_pos", "fp4_ea_neg"]


@pytest.mark.parametrize("name", ["mixed_bitmod4", "mixed_ant4", "mixed_er3", "mixed_ea4", "mixed_ant3"])
def test_mixed_error_is_no_worse_than_any_single_grid(name):
    # float64 metric written here: per group, the chosen grid's squared error is the minimum over the grids
    x = outliers((32, 512), seed=11)
    y = qsparse.fake_quant(x, name).double()
    grids = [g for g, _ in formats.get(name).grids]
    err = ((y - x.double()) ** 2).reshape(32, 4, 128).sum(-1)
    singles = []
    for g in grids:
        ys = ref._lut_block(x.reshape(-1, 128), [ref.BITMOD_GRIDS[g]], False, False, 3e38)[0].double()
        singles.append(((ys - x.double().reshape(-1, 128)) ** 2).sum(-1).reshape(32, 4))
    best = torch.stack(singles).amin(0)
    assert torch.allclose(err, best, rtol=1e-5, atol=0)
    counts = torch.bincount(qsparse.group_choices(x, name).flatten(), minlength=len(grids))
    assert (counts > 0).sum() >= 2, f"{name}: every group took the same grid ({counts.tolist()})"


# ---- the bitmod profile against BitMoD's own code -----------------------------------------------------------------------

BITMOD_ELEMENT = {"fp3_e2m0": ref.BITMOD_GRIDS["fp3"], "fp4_e2m1": ref.BITMOD_GRIDS["fp4"],
                  # typed from quant_weight.py: FP5_E2M2, FP6_E2M3 (positive halves)
                  "fp5_e2m2": [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28],
                  "fp6_e2m3": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 26, 28, 30,
                               32, 36, 40, 44, 48, 52, 56, 60]}


def _mirror(pos):
    pos = [float(v) for v in pos]
    return pos if pos[0] < 0 else [-v for v in reversed(pos[1:])] + pos


@pytest.mark.parametrize("name", sorted(BITMOD_ELEMENT))
def test_bitmod_profile_minifloats_match_bitmod(name):
    w = outliers((16, 256), seed=5, dtype=F16)
    expected = bitmod_quant_datatype(w, _mirror(BITMOD_ELEMENT[name]), 128)
    y = qsparse.fake_quant(w, name, group_size=128, compat="bitmod")
    assert_same_bits(y, expected, name, inputs=w)
    assert ref.minifloat_units(name) == _mirror(BITMOD_ELEMENT[name])


@pytest.mark.parametrize("name", ["mixed_bitmod4", "mixed_bitmod3", "mixed_er4", "mixed_ea3", "mixed_ant4",
                                  "mixed_ant3", "fp4_er_pos", "fp3_ea_neg", "flint4"])
def test_bitmod_profile_grids_match_bitmod(name):
    w = outliers((16, 512), seed=6, dtype=F16)
    grids = [ref.BITMOD_GRIDS[g] for g in ref.LUT_FORMATS[name][0]]
    y = qsparse.fake_quant(w, name, compat="bitmod")
    if len(grids) == 1:
        assert_same_bits(y, bitmod_quant_datatype(w, grids[0], 128), name, inputs=w)
        return
    expected, choice = bitmod_search_datatype(w, grids, 128)
    assert_same_bits(y, expected, name, inputs=w)
    assert torch.equal(qsparse.group_choices(w, name, compat="bitmod"), choice)


@pytest.mark.parametrize("name,grid", [("mx_fp4", "fp4"), ("mx_fp3", "fp3"), ("mx_int4", "int4"), ("mx_int3", "int3")])
def test_bitmod_profile_mx_matches_bitmod(name, grid):
    w = outliers((16, 256), seed=7, dtype=F16)
    y = qsparse.fake_quant(w, name, compat="bitmod")
    assert_same_bits(y, bitmod_quant_mx(w, ref.BITMOD_GRIDS[grid]), name, inputs=w)


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("asym", [False, True])
def test_bitmod_profile_int_matches_bitmod(bits, asym):
    w = outliers((16, 256), seed=8, dtype=F16)
    name = f"int{bits}" + ("_asym" if asym else "")
    y = qsparse.fake_quant(w, name, group_size=128, compat="bitmod")
    assert_same_bits(y, bitmod_quant_int(w, bits, 128, asym), name, inputs=w)
    assert_same_bits(y, ref.fake_quant(w, name, group_size=128, compat="bitmod"), name)


def test_bitmod_profile_quirks():
    # a group of tiny values: the scale clamps at binary16(1e-5), so they round to 0 (qsparse's default keeps them)
    w = torch.full((1, 128), 3e-6, dtype=F16)
    assert bool((qsparse.fake_quant(w, "fp4_e2m1", group_size=128, compat="bitmod") == 0).all())
    assert bool((qsparse.fake_quant(w, "fp4_e2m1", group_size=128) != 0).all())
    # int4_asym: BitMoD does not clip min/max at 0, so an all-positive group loses exact zero
    w = torch.linspace(1.0, 2.0, 128, dtype=F16)[None]
    assert bitmod_quant_int(w, 4, 128, True)[0, 0] == qsparse.fake_quant(w, "int4_asym", group_size=128,
                                                                          compat="bitmod")[0, 0]
    # errors of 1e3 or more (here: binary16 squares overflow to Inf): no grid is chosen, BitMoD outputs zeros
    w = (torch.randn(1, 128, generator=torch.Generator().manual_seed(0)) * 20000).clamp(-60000, 60000).to(F16)
    expected, choice = bitmod_search_datatype(w, [ref.BITMOD_GRIDS[g] for g in ref.LUT_FORMATS["mixed_er4"][0]], 128)
    assert choice.item() == 255 and bool((expected == 0).all())
    assert_same_bits(qsparse.fake_quant(w, "mixed_er4", compat="bitmod"), expected, "no choice")
    assert qsparse.group_choices(w, "mixed_er4", compat="bitmod").item() == 255


# ---- microxcaling ----------------------------------------------------------------------------------------------------

def test_microxcaling_log2_and_half_away():
    assert qsparse.Format("mxfp4", compat="microxcaling").rounding == "half_away"
    # amax = 8 (1 - 2^-24): log2 rounds to 3.0 in binary32, so microxcaling's E = 3 - 2 = 1 (scale 2) and the
    # value becomes 4 * 2 = 8; the exact floor gives E = 0 and saturation at 6
    a = 8.0 * (1 - 2.0**-24)
    x = torch.zeros(1, 32)
    x[0, 0] = a
    assert qsparse.fake_quant(x, "mxfp4")[0, 0].item() == 6.0
    assert qsparse.fake_quant(x, "mxfp4", compat="microxcaling")[0, 0].item() == 8.0
    # just below 2 the binary32 log2 does not round up (ulp(1) / 2 is larger than the gap)
    x[0, 0] = 2.0 * (1 - 2.0**-24)
    assert qsparse.fake_quant(x, "mxfp4", compat="microxcaling")[0, 0].item() == \
        qsparse.fake_quant(x, "mxfp4")[0, 0].item()
    # half away: 2.5 in a block with max 6 (scale 1) goes to 3; RNE gives 2
    x = torch.zeros(1, 32)
    x[0, :2] = t32([6.0, 2.5])
    assert qsparse.fake_quant(x, "mxfp4", compat="microxcaling")[0, 1].item() == 3.0
    assert qsparse.fake_quant(x, "mxfp4")[0, 1].item() == 2.0


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "mxfp6_e2m3", "mxint8"])
def test_microxcaling_matches_reference(name):
    g = torch.Generator().manual_seed(9)
    # block maxima right below powers of two, where the binary32 log2 rounds up
    x = torch.randn(64, 64, generator=g)
    k = torch.randint(-20, 20, (64, 2), generator=g).to(torch.float64)
    x[:, ::32] = (2.0 ** k * (1 - 2.0**-24 * torch.randint(1, 4, (64, 2), generator=g))).float() * 40
    for rounding in (None, "rne"):
        y = qsparse.fake_quant(x, name, compat="microxcaling", rounding=rounding)
        r = ref.fake_quant(x, name, compat="microxcaling", rounding=rounding or "half_away")
        assert_same_bits(y, r, f"{name} {rounding}", inputs=x)


# ---- rounding modes ---------------------------------------------------------------------------------------------------

def test_int_rounding_modes_by_hand():
    # int4 with amax 7: scale 1, so x / s = x
    x = t32([[7.0, 2.5, -2.5, 3.5, -3.5, 0.5, -0.5, 1.2]])
    assert qsparse.fake_quant(x, "int4", rounding="half_away").tolist()[0] == [7, 3, -3, 4, -4, 1, -1, 1]
    assert qsparse.fake_quant(x, "int4", rounding="ties_lower").tolist()[0] == [7, 2, -3, 3, -4, 0, -1, 1]
    assert qsparse.fake_quant(x, "int4").tolist()[0] == [7, 2, -2, 4, -4, 0, -0.0, 1]
    # microxcaling's floor(|v| + 0.5) sums in binary32: 0.5 - 2^-25 rounds to 1 (exact arithmetic would give 0)
    x = t32([[7.0, 0.5 - 2.0**-25]])
    assert qsparse.fake_quant(x, "int4", rounding="half_away")[0, 1].item() == 1.0


def test_float_rounding_modes_by_hand():
    # fp4_e2m1 element-wise: 2.5 and 5 are ties (grid 2, 3 and 4, 6); 0.25 a subnormal tie (0, 0.5)
    x = t32([2.5, -2.5, 5.0, -5.0, 0.25, -0.25, 0.75, -0.75])
    assert qsparse.fake_quant(x, "fp4_e2m1").tolist() == [2, -2, 4, -4, 0, -0.0, 1, -1]
    assert qsparse.fake_quant(x, "fp4_e2m1", rounding="half_away").tolist() == [3, -3, 6, -6, 0.5, -0.5, 1, -1]
    assert qsparse.fake_quant(x, "fp4_e2m1", rounding="ties_lower").tolist() == [2, -3, 4, -6, 0, -0.5, 0.5, -1]


@pytest.mark.parametrize("rounding", ["half_away", "ties_lower"])
@pytest.mark.parametrize("name,group", [("int4", 32), ("int3_full", "row"), ("int4_asym", 16), ("bfp6", None),
                                        ("fp4_e2m1", None), ("fp8_e4m3", None), ("bf16", None), ("fp6_e3m2", 32),
                                        ("mxfp4", None), ("nvfp4", None), ("mxint8", None)])
def test_rounding_modes_match_reference(name, group, rounding):
    x = randn((16, 96), seed=13) * 3
    x = torch.where(torch.rand(16, 96, generator=torch.Generator().manual_seed(1)) < 0.3, torch.round(x * 4) / 4, x)
    for dtype in (F32, BF16):
        xd = x.to(dtype)
        y = qsparse.fake_quant(xd, name, group_size=group, rounding=rounding)
        assert_same_bits(y, ref.fake_quant(xd, name, group_size=group, rounding=rounding), f"{name} {rounding}",
                         inputs=xd)


# ---- names and validation -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,bits,canonical", [
    ("mixed_bitmod", 3, "mixed_bitmod3"), ("mixed_bitmod", None, "mixed_bitmod4"), ("mixed_ant", 3, "mixed_ant3"),
    ("mixed_er", 4, "mixed_er4"), ("mixed_ea", None, "mixed_ea4"), ("mx_fp4", None, "mx_fp4"), ("mx_fp", 3, "mx_fp3"),
    ("int", 4, "int4"), ("int_asym", 3, "int3_asym"), ("int4_asym", None, "int4_asym"), ("fp5_e2m2", None, "fp5_e2m2"),
    ("fp5_e3m1", None, "fp5_e3m1"), ("fp6_e2m3", None, "fp6_e2m3"), ("fp6_e3m2", None, "fp6_e3m2"),
    ("fp4", None, "fp4_e2m1"), ("fp", 3, "fp3_e2m0"), ("nvfp", None, "nvfp4"), ("mxfp", None, "mxfp4"),
    ("bfp", 8, "bfp8"), ("int4", 4, "int4")])
def test_seed_names(name, bits, canonical):
    assert formats.parse(name, bits=bits) == canonical


@pytest.mark.parametrize("call,match", [
    (lambda: formats.parse("mixed_ant", bits=5), "no 5-bit variant"),
    (lambda: formats.parse("int4", bits=3), "disagrees"),
    (lambda: formats.parse("int"), "needs its bit width"),
    (lambda: formats.parse("integer", bits=8), "fraction width"),  # llm-mixed-q fixed point needs frac_width
    (lambda: qsparse.Format("mixed_bitmod4", rounding="stochastic"), "own rule"),
    (lambda: qsparse.Format("mixed_ant4", group_size="tensor"), "not group_size='tensor'"),
    (lambda: qsparse.Format("flint4", scale_mode="floor"), "scale_mode"),
    (lambda: qsparse.Format("flint4", observer="mse"), "observer='mse'"),
    (lambda: qsparse.Format("flint4", saturate=True), "saturate"),
    (lambda: qsparse.Format("bfp8", compat="bitmod"), "does not apply"),
    (lambda: qsparse.Format("fp8_e4m3", group_size=32, compat="bitmod"), "does not apply"),
    (lambda: qsparse.Format("nvfp4", compat="microxcaling"), "does not apply"),
    (lambda: qsparse.Format("int4", compat="hbfp"), "does not apply"),
    (lambda: qsparse.Format("int4", compat="bitmod", rounding="stochastic"), "own rule"),
    (lambda: qsparse.Format("int4", compat="nope"), "not supported"),
    (lambda: qsparse.Format("int4", rounding="up"), "not supported"),
    (lambda: qsparse.group_choices(torch.ones(2, 8), "int4"), "lookup-grid"),
])
def test_bad_options_raise_before_native_calls(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_profiles_set_default_rounding_and_round_trip():
    f = qsparse.Format("bfp8", compat="hbfp")
    assert f.rounding == "stochastic" and f.to_dict() == {"name": "bfp8", "compat": "hbfp"}
    assert qsparse.Format.from_dict(f.to_dict()) == f
    f = qsparse.Format("mxfp4", compat="torchao")
    assert f.rounding == "rne" and f.compat_code == 0
    x = randn((4, 64), seed=1)
    assert_same_bits(qsparse.fake_quant(x, f), qsparse.fake_quant(x, "mxfp4"), "torchao = default")


def test_lut_gradient_is_straight_through():
    x = outliers((4, 128), seed=2).requires_grad_()
    qsparse.fake_quant(x, "mixed_bitmod4").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
