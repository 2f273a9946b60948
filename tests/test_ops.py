"""The torch.library ops: opcheck, straight-through autograd, gradcheck on the smooth parts, torch.compile, fake
tensors, thread-count invariance (RELIABILITY.md items 15, 16, 17 on the CPU)."""
import pytest
import torch

import qsparse
from qsparse import ops, reference

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _bits(t):
    return t.view(torch.int32) if t.dtype == torch.float32 else t.view(torch.int16)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(6, 40)


def _fq_samples(x):
    m = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    xs = x.clone().requires_grad_()
    return [
        (xs, "int4", ops.GROUP_ROW, 0, 0, -1, 0, 0, 0, None, ops.MASK_NONE),
        (xs, "int4_asym", 8, 1, 77, -1, 0, 0, 0, m, ops.MASK_BEFORE),
        (x.t().contiguous().t().requires_grad_(), "bfp8", 32, 0, 0, -1, 0, 0, 0, None, ops.MASK_NONE),  # column-major
        (x.to(torch.bfloat16).requires_grad_(), "fp8_e4m3", 0, 0, 0, 1, 0, 0, 0, m, ops.MASK_AFTER),
        (x[:, ::2].clone().requires_grad_(), "int8_full", ops.GROUP_TENSOR, 0, 0, -1, 0, 0, 0, None, ops.MASK_NONE),
        (x.to(torch.float16).requires_grad_(), "fp8_e5m2", 0, 1, 5, 0, 0, 0, 0, None, ops.MASK_NONE),
        (x.reshape(2, 3, 40).requires_grad_(), "bfp4", 16, 0, 0, -1, 0, 0, 0, None, ops.MASK_NONE),  # 3-D
        (xs, "mxfp4", 32, 0, 0, -1, 6, 0, 0, m, ops.MASK_BEFORE),  # rceil
        (x.to(torch.bfloat16).requires_grad_(), "nvfp4", 16, 1, 3, -1, 0, 0, 0, None, ops.MASK_NONE),
        (xs, "int4", 16, 0, 0, -1, 0, 1, 0, m, ops.MASK_BEFORE),  # mse observer
        (xs, "mixed_bitmod4", 8, 0, 0, -1, 0, 0, 0, m, ops.MASK_AFTER),  # a lookup grid
        (x.to(torch.float16).requires_grad_(), "int4_asym", 8, 0, 0, -1, 0, 0, 1, None, ops.MASK_NONE),  # bitmod
        (xs, "mxfp4", 32, 2, 0, -1, 0, 0, 2, None, ops.MASK_NONE),  # microxcaling, half away
    ]


def test_opcheck_fake_quant(x):
    for sample in _fq_samples(x):
        torch.library.opcheck(ops.fake_quant, sample)


def test_opcheck_masks(x):
    torch.library.opcheck(ops.nm_mask, (x.abs(), 2, 4))
    torch.library.opcheck(ops.nm_mask, (x.abs().t(), 1, 3))  # non-contiguous, partial last group
    torch.library.opcheck(ops.magnitude_mask, (x, 0.5, False))
    torch.library.opcheck(ops.magnitude_mask, (x.to(torch.bfloat16), 0.3, True))


def test_straight_through_gradient_is_the_identity(x):
    for fmt in ("int4", "int4_asym", "bfp8", "fp8_e4m3", "fp16"):
        xs = x.clone().requires_grad_()
        g = torch.randn_like(x)
        qsparse.fake_quant(xs, fmt).backward(g)
        assert torch.equal(xs.grad, g), fmt


@pytest.mark.parametrize("first", [True, False])
def test_straight_through_gradient_is_zero_where_masked(x, first):
    mask = torch.rand(x.shape) > 0.5
    xs = x.clone().requires_grad_()
    g = torch.randn_like(x)
    qsparse.fake_quant(xs, "int4_asym", group_size=8, mask=mask, sparsify_first=first).backward(g)
    expected = torch.where(mask, g, torch.zeros(()))
    assert torch.equal(xs.grad, expected)


def test_gradcheck_on_the_smooth_part():
    """BFPLinear in float64 with sparsity only: w * mask is linear, so autograd must match finite differences
    (w.r.t. input, weight and bias); the masked weight entries get zero gradient."""
    torch.manual_seed(0)
    lin = qsparse.BFPLinear.from_linear(torch.nn.Linear(8, 5), sparsity="2:4").double()  # mask from float32
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)

    def f(inp, w, b):
        return torch.nn.functional.linear(inp, torch.where(lin.mask, w, torch.zeros((), dtype=w.dtype)), b)

    assert torch.autograd.gradcheck(f, (x, lin.weight, lin.bias))
    lin(x).sum().backward()
    assert torch.all(lin.weight.grad[~lin.mask] == 0)
    assert torch.all(lin.weight.grad[lin.mask] != 0)


def test_fake_tensors_and_meta(x):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fx = torch.empty(3, 7, dtype=torch.bfloat16)
        y = qsparse.fake_quant(fx, "int4")
        assert y.shape == (3, 7) and y.dtype == torch.bfloat16
        assert qsparse.nm_mask(fx.float(), 2, 4).dtype == torch.bool
    y = qsparse.fake_quant(torch.empty(2, 5, device="meta"), "bfp8")
    assert y.device.type == "meta" and y.shape == (2, 5)


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_results_do_not_depend_on_thread_count(threads):
    torch.manual_seed(3)
    x = torch.randn(300, 1000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        base = [qsparse.fake_quant(x, f, rounding=r, seed=9) for f in ("int4_asym", "bfp8", "fp8_e5m2")
                for r in ("rne", "stochastic")]
        base.append(qsparse.fake_quant(x, "int8", group_size="tensor"))
        base_masks = [qsparse.nm_mask(x.abs(), 2, 4), qsparse.magnitude_mask(x.round(), 0.6)]
        torch.set_num_threads(threads)
        got = [qsparse.fake_quant(x, f, rounding=r, seed=9) for f in ("int4_asym", "bfp8", "fp8_e5m2")
               for r in ("rne", "stochastic")]
        got.append(qsparse.fake_quant(x, "int8", group_size="tensor"))
        got_masks = [qsparse.nm_mask(x.abs(), 2, 4), qsparse.magnitude_mask(x.round(), 0.6)]
    finally:
        torch.set_num_threads(before)
    for a, b in zip(base, got):
        assert torch.equal(_bits(a), _bits(b))
    for a, b in zip(base_masks, got_masks):
        assert torch.equal(a, b)


def test_flush_to_zero_in_the_caller_does_not_change_results():
    """The kernels run under IEEE defaults whatever the calling thread's floating point state."""
    x = torch.tensor([[1e-40, -3e-39, 2.5e-38, 1.0, -7e-45, 5e-41, 0.3, -2.0]])
    expected = [reference.fake_quant(x, f) for f in ("bf16", "int8", "bfp16")]
    torch.set_flush_denormal(True)
    try:
        got = [qsparse.fake_quant(x, f) for f in ("bf16", "int8", "bfp16")]
    finally:
        torch.set_flush_denormal(False)
    for a, b in zip(expected, got):
        assert torch.equal(_bits(a), _bits(b))


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = qsparse.BFPLinear.from_linear(torch.nn.Linear(32, 64), weight="int4_asym", activation="fp16",
                                                   sparsity="2:4")
            self.b = qsparse.BFPLinear.from_linear(torch.nn.Linear(64, 8), weight=qsparse.Format("bfp8", group_size=16),
                                                   sparsity=0.5, mask_mode="dynamic")

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    mod = Block()
    x = torch.randn(4, 32)
    eager = mod(x)
    compiled = torch.compile(mod, fullgraph=True)
    out = compiled(x)
    assert torch.equal(out, eager)
    out.sum().backward()  # straight-through backward also traces
    assert torch.all(mod.a.weight.grad[~mod.a.mask] == 0)
