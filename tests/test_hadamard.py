"""The Walsh-Hadamard transform (FORMATS.md section 8) and fake quantization with a Hadamard rotation.

Oracles: a float64 Sylvester-matrix product built in the test (independent of the butterfly code), the binary32
butterfly transcription in qsparse/reference.py (bit for bit), and the transform's algebra (orthonormal, symmetric,
its own inverse).
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import reference as ref
from helpers import assert_same_bits, randn

GROUPS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 8192]


def sylvester(g: int) -> torch.Tensor:
    """H_g in Sylvester order, float64: H_1 = [1], H_2k = [[H, H], [H, -H]]."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < g:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@pytest.mark.parametrize("g", GROUPS)
def test_matches_the_matrix_product(g):
    x = randn((3, 2 * g), seed=g)
    y = qsparse.hadamard(x, g).to(torch.float64)
    want = (x.to(torch.float64).reshape(-1, g) @ sylvester(g).T / math.sqrt(g)).reshape(3, 2 * g)
    # binary32 butterflies: log2(g) roundings of sums of magnitude <= sqrt(g) * max|x|
    tol = 4e-7 * max(1, math.log2(g)) * math.sqrt(g) * x.abs().max().item()
    assert (y - want).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("g", GROUPS)
def test_bit_exact_with_reference(g, dtype):
    x = randn((5, 2 * g), seed=3 * g).to(dtype)
    assert_same_bits(qsparse.hadamard(x, g), ref.hadamard(x, g), f"hadamard g={g} {dtype}")


def test_by_hand():
    # H_4 / 2 of [1, 2, 3, 4]: [10, -2, -4, 0] / 2
    assert qsparse.hadamard(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 4).tolist() == [[5.0, -1.0, -2.0, 0.0]]
    # H_2 / sqrt(2) of [1, 1]: [sqrt(2), 0] rounded to binary32
    y = qsparse.hadamard(torch.tensor([[1.0, 1.0]]), 2)
    assert y[0, 0].item() == torch.tensor(2.0 * (1 / math.sqrt(2)), dtype=torch.float32).item() and y[0, 1] == 0


def test_involution_norm_and_threads():
    x = randn((64, 512), seed=1)
    y = qsparse.hadamard(x, 128)
    assert torch.allclose(qsparse.hadamard(y, 128), x, atol=1e-5)
    assert torch.allclose(y.norm(dim=1), x.norm(dim=1), rtol=1e-5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1 = qsparse.hadamard(x, 128)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(y, y1)


def test_strided_and_in_place_views():
    base = randn((8, 256), seed=2)
    view = base[:, :128]  # row stride 256
    assert_same_bits(qsparse.hadamard(view, 64), ref.hadamard(view.contiguous(), 64), "strided view")
    assert_same_bits(qsparse.hadamard(base.t().contiguous().t(), 8), ref.hadamard(base, 8), "column-major")


def test_gradient_is_the_transform():
    x = randn((4, 64), seed=4).requires_grad_()
    g = randn((4, 64), seed=5)
    qsparse.hadamard(x, 16).backward(g)
    assert_same_bits(x.grad, ref.hadamard(g, 16), "backward")
    torch.library.opcheck(torch.ops.qsparse.hadamard, (randn((4, 64), seed=6).requires_grad_(), 16))


@pytest.mark.parametrize("bad, err", [(3, ValueError), (0, ValueError), (16384, ValueError), (12, ValueError),
                                      (2.0, TypeError), (True, TypeError), (128, ValueError)])
def test_bad_group(bad, err):
    with pytest.raises(err, match="group_size"):
        qsparse.hadamard(torch.ones(2, 96), bad)  # 128 does not divide 96


# ---- fake quantization with a rotation -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["int4", "mxfp4", "nvfp4", "fp8_e4m3", "int4_asym"])
def test_fake_quant_with_hadamard_is_rotate_quantize_rotate(fmt):
    x = randn((16, 256), seed=7)
    y = qsparse.fake_quant(x, fmt, transform="hadamard", transform_group=64)
    want = ref.hadamard(ref.fake_quant(ref.hadamard(x, 64), fmt), 64)
    assert_same_bits(y, want, f"{fmt} with hadamard")


def test_hadamard_helps_outliers():
    # a weight with a few large outliers: rotation spreads them, INT4 per-row error drops (QuaRot / FP-Quant's point)
    x = randn((64, 512), seed=8)
    x[:, ::97] *= 30
    err = lambda y: (y - x).pow(2).mean().item()  # noqa: E731
    assert err(qsparse.fake_quant(x, "int4", transform="hadamard")) < 0.5 * err(qsparse.fake_quant(x, "int4"))


def test_fake_quant_hadamard_masks_and_gradient():
    x = randn((4, 128), seed=9).requires_grad_()
    mask = torch.rand(4, 128, generator=torch.Generator().manual_seed(1)) > 0.5
    y = qsparse.fake_quant(x, "int8", mask=mask, transform="hadamard", transform_group=32)
    assert (y[~mask] == 0).all()
    y.sum().backward()
    # rotation, straight-through quantization and inverse rotation: the identity up to rounding, zero where masked
    assert torch.allclose(x.grad, mask.float(), atol=1e-5)
    with pytest.raises(ValueError, match="transform"):
        qsparse.fake_quant(x, "int8", transform="rotate")
    with pytest.raises(ValueError, match="transform_group"):
        qsparse.fake_quant(x, "int8", transform="hadamard", transform_group=256)
