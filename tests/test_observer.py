"""The mse observer (FORMATS.md section 1: GPTQ's shrink search), for INT formats and scales that are not powers of
two.

Oracles: qsparse/reference.py's transcription of the search (bit for bit), and the search's defining property
checked with a float64 metric written here: the chosen range is never worse than min/max (p = 1 is a candidate).
"""
from __future__ import annotations

import pytest
import torch

import qsparse
from qsparse import reference as ref
from helpers import assert_same_bits, fq

CASES = [("int4", 32, None), ("int4", "row", None), ("int4_asym", 32, None), ("int3_full", 16, None),
         ("int8", "tensor", None), ("fp4_e2m1", 32, "amax"), ("nvfp4", None, None), ("nvfp4", None, "e4m3_block"),
         ("mxfp4", 32, "amax")]


def heavy_tailed(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    return x * torch.exp(torch.randn(shape, generator=g))  # log-normal magnitudes: outliers in most groups


def metric(y, x, group):
    """sum |y - x|^2.4 per group, float64."""
    d = (y.double() - x.double()).abs().pow(2.4)
    return d.reshape(-1, group).sum(1) if isinstance(group, int) else d.sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("fmt,group,mode", CASES)
def test_mse_matches_reference(fmt, group, mode, dtype):
    x = heavy_tailed((12, 96), seed=1).to(dtype)
    kw = dict(group_size=group, scale_mode=mode, observer="mse")
    assert_same_bits(fq(x, fmt, **kw), ref.fake_quant(x, fmt, **kw), f"{fmt} {kw}", inputs=x)


def test_mse_with_masks_and_stochastic_rounding_matches_reference():
    x = heavy_tailed((8, 64), seed=2)
    mask = torch.rand(8, 64, generator=torch.Generator().manual_seed(0)) > 0.5
    for first in (True, False):
        kw = dict(group_size=16, observer="mse", mask=mask, sparsify_first=first)
        assert_same_bits(fq(x, "int4_asym", **kw), ref.fake_quant(x, "int4_asym", **kw), f"mask first={first}")
    kw = dict(group_size=16, observer="mse", rounding="stochastic", seed=5)
    assert_same_bits(fq(x, "int4", **kw), ref.fake_quant(x, "int4", **kw), "stochastic")


@pytest.mark.parametrize("fmt", ["int4", "int4_asym", "int3"])
def test_mse_never_worse_than_minmax(fmt):
    x = heavy_tailed((64, 128), seed=3)
    e_mse = metric(fq(x, fmt, group_size=32, observer="mse"), x, 32)
    e_minmax = metric(fq(x, fmt, group_size=32), x, 32)
    assert (e_mse <= e_minmax * (1 + 1e-12)).all()
    assert (e_mse < e_minmax).float().mean() > 0.3  # and it finds a better range for many outlier-heavy groups


def test_mse_special_groups_and_errors():
    x = torch.zeros(2, 32)
    x[1, 3] = float("nan")
    y = qsparse.fake_quant(x, "int4", group_size=16, observer="mse")
    assert (y[0] == 0).all() and torch.isnan(y[1, :16]).all() and (y[1, 16:] == 0).all()
    for fmt, kw in (("bfp8", {}), ("mxfp4", {}), ("fp8_e4m3", {}), ("int4", dict(observer="median"))):
        with pytest.raises(ValueError, match="observer"):
            qsparse.fake_quant(x, fmt, **({"observer": "mse"} | kw))
    f = qsparse.Format("int4", group_size=32, observer="mse")
    assert qsparse.Format.from_dict(f.to_dict()) == f
