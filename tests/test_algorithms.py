"""GPTQ, SparseGPT, Wanda and magnitude pruning of one layer (qsparse.algorithms, qsparse.ops.gptq_block).

Independent references, written here from FORMATS.md sections 9, 11 and 12 and the papers' loops:
- `_block_f32`: the reference's inner block loop in float32 torch ops, one column at a time, each column quantized
  with its own record through `fake_quant_qparams`: the C block (one call for all columns) must equal it bit for
  bit, masks and N:M choices included;
- `_gptq_f64`: the whole GPTQ of an int{b}_asym weight in float64, with GPTQ's Quantizer transcribed: qsparse's
  float32 result must agree with it up to float32 rounding;
- the error orderings of RELIABILITY.md item 21 on layers with correlated inputs.
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import algorithms as alg
from qsparse import ops

from helpers import assert_same_bits


def _inputs(n: int, k: int, seed: int, rank: int = None) -> torch.Tensor:
    """Correlated calibration inputs [n, k]: randn through a random mixing with a decaying spectrum, as LLM
    activations are (a few large directions)."""
    g = torch.Generator().manual_seed(seed)
    r = rank or k
    mix = torch.randn(r, k, generator=g) * (torch.arange(1, r + 1, dtype=torch.float32) ** -0.7).reshape(-1, 1)
    return torch.randn(n, r, generator=g) @ mix + 0.1 * torch.randn(1, k, generator=g)


def _hessian(x: torch.Tensor) -> torch.Tensor:
    h = alg.Hessian(x.shape[1])
    h.add_batch(x.unsqueeze(0))
    return h.H


def _weight(rows: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(rows, k, generator=g) * 0.05


def _out_err(x, w, q) -> float:
    """||x w^T - x q^T||_F^2: the layer-output reconstruction error GPTQ minimizes."""
    return float(((x.double() @ (w.double() - q.double()).t()) ** 2).sum())


def _upper_factor(k: int, seed: int) -> torch.Tensor:
    x = _inputs(4 * k, k, seed)
    H = x.t() @ x / x.shape[0] + 0.01 * torch.eye(k)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)


# ---- the C block against a float32 transcription ------------------------------------------------------------------


def _block_f32(W1, Hinv1, fmt_args, qparams, slot, mask=None, keep=0, group=0):
    """The reference's block loop (gptq.py fasterquant / sparsegpt.py fasterprune), float32, one column at a time."""
    name, gs, rnd, sat, mode, _obs, compat = fmt_args if fmt_args else (None,) * 7
    W1 = W1.clone()
    rows, b = W1.shape
    Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
    loss = torch.zeros(rows, dtype=torch.float64)
    m = mask.clone() if mask is not None else None
    for i in range(b):
        if keep and i % group == 0:
            d = torch.diag(Hinv1)[i:i + group]
            tmp = W1[:, i:i + group] ** 2 / d.reshape(1, -1) ** 2
            order = torch.sort(tmp, dim=1, descending=True, stable=True)[1]
            m[:, i:i + group] = 0
            m[:, i:i + group].scatter_(1, order[:, :keep], 1)
        w = W1[:, i]
        d = Hinv1[i, i]
        if name is not None:
            rec = qparams[:, slot[i]:slot[i] + 1] if qparams is not None else torch.zeros(rows, 1, 4, dtype=torch.int32)
            q = ops.fake_quant_qparams(w.reshape(-1, 1).contiguous(), rec.contiguous(), name, 0, rnd, 0, sat, mode,
                                       compat, None, 0).flatten()
        else:
            q = w.clone()
        if m is not None:
            q = torch.where(m[:, i].bool(), q, torch.zeros((), dtype=q.dtype))
        t = w - q
        loss += t.double() ** 2 / float(d) ** 2
        e = t / d
        W1[:, i + 1:] -= e.unsqueeze(1) * Hinv1[i, i + 1:].unsqueeze(0)
        Q1[:, i] = q
        Err1[:, i] = e
    return Q1, Err1, W1, loss, m


BLOCK_CASES = [
    ("int4_asym", "row"), ("int4_asym", 16), ("int3", 16), ("int8_full", "row"), ("bfp8", 16), ("mxfp4", 32),
    ("nvfp4", 16), ("fp8_e4m3", None), ("fp6_e3m2", 32), ("mixed_bitmod4", 32), (None, None),
]


@pytest.mark.parametrize("name,gs", BLOCK_CASES)
def test_block_equals_the_float32_transcription(name, gs):
    rows, b = 23, 64
    W1 = _weight(rows, b, 1) * (1 + torch.arange(rows).reshape(-1, 1) % 3)
    Hinv1 = _upper_factor(b, 2)
    fmt_args = qparams = slot = None
    kwargs = {}
    if name is not None:
        f = qsparse.Format.parse(name, group_size=gs) if gs is not None else qsparse.Format.parse(name)
        fmt_args = qsparse.functional.op_args(f)
        nm, group = fmt_args[0], fmt_args[1]
        kwargs = dict(fmt=nm, group_size=group, scale_mode=fmt_args[4], compat=fmt_args[6], rounding=fmt_args[2],
                      saturate=fmt_args[3])
        if not f.elementwise:
            qparams = ops.quant_qparams(W1, nm, group, fmt_args[4], 0, fmt_args[6], saturate=fmt_args[3])
            slot = (torch.arange(b) // group) if group > 0 else torch.zeros(b, dtype=torch.int64)
            kwargs.update(qparams=qparams, slot=slot)
    exp_q, exp_e, exp_w, exp_loss, _ = _block_f32(W1, Hinv1, fmt_args, qparams, slot)
    W = W1.clone()
    loss = torch.zeros(rows, dtype=torch.float64)
    q, e = ops.gptq_block(W, Hinv1, loss=loss, **kwargs)
    assert_same_bits(q, exp_q, f"{name} Q1")
    assert_same_bits(e, exp_e, f"{name} Err1")
    # the C block leaves w[:, i] as it was when column i was reached, the transcription too
    assert_same_bits(W, exp_w, f"{name} W1 after the block")
    torch.testing.assert_close(loss, exp_loss, rtol=1e-12, atol=0)
    if name is not None and not qsparse.Format.parse(name).elementwise:
        assert (q != W1).any(), "the block quantized nothing"


@pytest.mark.parametrize("keep,group", [(2, 4), (1, 4), (4, 8), (3, 16)])
@pytest.mark.parametrize("quantized", [False, True])
def test_block_nm_choice_equals_the_transcription(keep, group, quantized):
    rows, b = 19, 64
    W1 = _weight(rows, b, 3)
    W1[0, :8] = 0.01  # ties: equal scores where diag(Hinv) is equal too
    Hinv1 = _upper_factor(b, 4)
    fmt_args = qparams = slot = None
    kwargs = {}
    if quantized:
        fmt_args = qsparse.functional.op_args(qsparse.Format.parse("int4_asym"))
        qparams = ops.quant_qparams(W1, "int4_asym", 0)
        slot = torch.zeros(b, dtype=torch.int64)
        kwargs = dict(fmt="int4_asym", group_size=0, qparams=qparams, slot=slot)
    mask0 = torch.ones(rows, b, dtype=torch.uint8)
    exp_q, exp_e, _, _, exp_m = _block_f32(W1, Hinv1, fmt_args, qparams, slot, mask0, keep, group)
    m = mask0.clone()
    q, e = ops.gptq_block(W1.clone(), Hinv1, mask=m, keep=keep, group=group, **kwargs)
    assert torch.equal(m, exp_m)
    assert_same_bits(q, exp_q, "Q1")
    assert_same_bits(e, exp_e, "Err1")
    assert (m.reshape(rows, -1, group).sum(-1) == keep).all()
    assert (q[m == 0] == 0).all()


def test_block_reads_a_given_mask_and_any_thread_count():
    rows, b = 40, 128
    W1 = _weight(rows, b, 5)
    Hinv1 = _upper_factor(b, 6)
    mask = (torch.rand(rows, b, generator=torch.Generator().manual_seed(0)) > 0.4).to(torch.uint8)
    exp_q, *_ = _block_f32(W1, Hinv1, None, None, None, mask)
    outs = []
    for nt in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(nt)
        try:
            outs.append(ops.gptq_block(W1.clone(), Hinv1, mask=mask.clone())[0])
        finally:
            torch.set_num_threads(old)
    assert_same_bits(outs[0], exp_q)
    assert_same_bits(outs[1], exp_q)


def test_block_strided_views():
    rows, b = 17, 32
    big = _weight(rows, 3 * b, 7)
    Hinv1 = _upper_factor(b, 8)
    exp_q, _, exp_w, *_ = _block_f32(big[:, b:2 * b], Hinv1, None, None, None)
    W = big.clone()
    q, _ = ops.gptq_block(W[:, b:2 * b], Hinv1)  # a row-strided view, updated in place
    assert_same_bits(q, exp_q)
    assert_same_bits(W[:, b:2 * b], exp_w)
    assert torch.equal(W[:, :b], big[:, :b]) and torch.equal(W[:, 2 * b:], big[:, 2 * b:])
    Wt = big[:, b:2 * b].t().contiguous().t()  # column-major block (the CUDA layout)
    q2, _ = ops.gptq_block(Wt, Hinv1)
    assert_same_bits(q2, exp_q)


# ---- whole GPTQ against a float64 transcription ------------------------------------------------------------------


def _gptq_f64(W, H, bits, groupsize, blocksize=128, percdamp=0.01, actorder=False):
    """IST-DASLab/gptq fasterquant in float64 with its Quantizer(sym=False) per row or per group, the groups fitted
    on the updated weights when reached (FORMATS.md section 11, qsparse's documented choice), blocks of
    min(blocksize, groupsize) columns so that each group starts a block."""
    maxq = 2 ** bits - 1
    W = W.double().clone()
    H = H.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    def params(x):
        xmin = torch.minimum(x.min(1)[0], torch.zeros(()))
        xmax = torch.maximum(x.max(1)[0], torch.zeros(()))
        both = (xmin == 0) & (xmax == 0)
        xmin[both], xmax[both] = -1, 1
        scale = (xmax - xmin) / maxq
        return scale, torch.round(-xmin / scale)

    def quant(x, scale, zero):
        q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
        return scale * (q - zero)

    perm = None
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
    scale, zero = params(W)
    H[range(H.shape[0]), range(H.shape[0])] += percdamp * torch.mean(torch.diag(H))
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    cols = W.shape[1]
    b = min(blocksize, groupsize) if groupsize else blocksize
    for i1 in range(0, cols, b):
        i2 = min(i1 + b, cols)
        if groupsize and i1 % groupsize == 0:
            scale, zero = params(W[:, i1:i1 + groupsize])
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            q = quant(w, scale, zero)
            Q[:, i1 + i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q


@pytest.mark.parametrize("bits,groupsize,actorder", [(4, 0, False), (4, 32, False), (3, 0, True), (4, 64, False)])
def test_gptq_agrees_with_the_float64_transcription(bits, groupsize, actorder):
    rows, k = 48, 256
    x = _inputs(512, k, 11)
    H = _hessian(x)
    W = _weight(rows, k, 11)
    res = alg.gptq(W, H, f"int{bits}_asym", group_size=groupsize or "row", actorder=actorder)
    exp = _gptq_f64(W, H, bits, groupsize, actorder=actorder)
    # float32 vs float64: a rounding decision may flip at a tie-close value, and its error then spreads along the
    # row; everything else agrees to float32 precision
    close = torch.isclose(res.weight.double(), exp, rtol=1e-4, atol=1e-6)
    assert close.float().mean() > 0.97, float(close.float().mean())
    e_res, e_exp = _out_err(x, W, res.weight), _out_err(x, W, exp.float())
    assert abs(e_res - e_exp) <= 0.02 * e_exp


# ---- properties (RELIABILITY.md item 21) ---------------------------------------------------------------------------


GPTQ_FORMATS = [("int4_asym", "row"), ("int4_asym", 128), ("int3", 128), ("int4_full", 64), ("mxfp4", None),
                ("nvfp4", None), ("fp4_e2m1", 128), ("bfp4", None), ("mixed_bitmod4", None), ("fp8_e4m3", None),
                ("bl5", None), ("bmf5_e2m2", None), ("log4", None)]


@pytest.mark.parametrize("name,gs", GPTQ_FORMATS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gptq_beats_rtn_and_lies_on_the_grid(name, gs, seed):
    rows, k = 64, 256
    x = _inputs(1024, k, seed)
    W = _weight(rows, k, seed)
    res = alg.gptq(W, _hessian(x), name, group_size=gs)
    rtn = qsparse.fake_quant(W, name, group_size=gs)
    assert torch.isfinite(res.weight).all()
    assert _out_err(x, W, res.weight) <= _out_err(x, W, rtn)
    f = qsparse.Format.parse(name, group_size=gs) if gs is not None else qsparse.Format.parse(name)
    if res.qparams is not None:
        a = qsparse.functional.op_args(f)
        again = ops.fake_quant_qparams(res.weight, res.qparams, a[0], a[1], a[2], 0, a[3], a[4], a[6], None, 0)
        assert_same_bits(again, res.weight, f"{name}: the result re-quantized with its own parameters")
    else:  # element-wise: the result is already on the grid
        assert_same_bits(qsparse.fake_quant(res.weight, name), res.weight)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_actorder_with_static_groups(seed):
    rows, k = 32, 256
    x = _inputs(1024, k, seed)
    W = _weight(rows, k, seed)
    H = _hessian(x)
    res = alg.gptq(W, H, "int4_asym", group_size=64, actorder=True, static_groups=True)
    assert res.g_idx is None  # consecutive groups: column // 64
    static = ops.quant_qparams(W, "int4_asym", 64)
    assert torch.equal(res.qparams, static)  # fitted up front on the original weights
    again = ops.fake_quant_qparams(res.weight, res.qparams, "int4_asym", 64, 0, 0, -1, 0, 0, None, 0)
    assert_same_bits(again, res.weight)
    rtn = qsparse.fake_quant(W, "int4_asym", group_size=64)
    assert _out_err(x, W, res.weight) <= _out_err(x, W, rtn)
    dyn = alg.gptq(W, H, "int4_asym", group_size=64, actorder=True)
    assert dyn.g_idx is not None and sorted(torch.bincount(dyn.g_idx).tolist()) == [64] * 4


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fmt", [None, "int4_asym"])
def test_sparsegpt_2of4_beats_magnitude(seed, fmt):
    rows, k = 64, 256
    x = _inputs(1024, k, seed)
    W = _weight(rows, k, seed)
    res = alg.sparsegpt(W, _hessian(x), sparsity="2:4", fmt=fmt)
    assert (res.mask.reshape(rows, -1, 4).sum(-1) == 2).all()
    assert (res.weight[~res.mask] == 0).all()
    mag = alg.magnitude_prune(W, keep=2, group=4)
    mag_w = W * mag
    if fmt is not None:
        mag_w = qsparse.fake_quant(W, fmt, mask=mag)
    assert _out_err(x, W, res.weight) < _out_err(x, W, mag_w)


def test_sparsegpt_unstructured_fraction_and_prune_n():
    rows, k = 64, 256
    x = _inputs(1024, k, 3)
    W = _weight(rows, k, 3)
    H = _hessian(x)
    res = alg.sparsegpt(W, H, sparsity=0.5)
    assert abs(float((~res.mask).float().mean()) - 0.5) < 0.01
    assert (res.weight[~res.mask] == 0).all()
    a = alg.sparsegpt(W, H, keep=2, group=4)
    b = alg.sparsegpt(W, H, prune_n=2, group=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.mask, b.mask)


def test_gptq_after_sparsegpt_keeps_the_mask():
    rows, k = 32, 128
    x = _inputs(512, k, 4)
    W = _weight(rows, k, 4)
    H = _hessian(x)
    sp = alg.sparsegpt(W, H, sparsity="2:4")
    q = alg.gptq(sp.weight, H, "int4_asym", group_size=32, preserve_mask=sp.mask)
    assert (q.weight[~sp.mask] == 0).all()
    assert (q.weight[sp.mask] != 0).float().mean() > 0.7


def test_dead_columns_rank_deficient_and_zero_weights():
    rows, k = 16, 128
    x = _inputs(40, k, 5, rank=20)  # 40 tokens of rank 20: H is singular but for the damping
    x[:, [3, 77]] = 0  # dead inputs
    H = _hessian(x)
    W = _weight(rows, k, 5)
    res = alg.gptq(W, H, "int4_asym", group_size=32)
    assert res.dead_columns == 2
    assert torch.isfinite(res.weight).all()
    assert (res.weight[:, [3, 77]] == 0).all()
    z = alg.gptq(torch.zeros(rows, k), H, "int4", group_size=32)
    assert (z.weight == 0).all() and z.loss == 0.0
    zs = alg.sparsegpt(torch.zeros(rows, k), H, sparsity="2:4")
    assert (zs.weight == 0).all()


def test_damping_escalates_with_a_warning(caplog):
    k = 32
    H = -torch.eye(k)  # negative definite: no damping of 1% of its mean diagonal helps ...
    H[0, 0] = 100.0  # ... until it is large enough
    W = _weight(4, k, 6)
    with caplog.at_level("WARNING", logger="qsparse"):
        res = alg.gptq(W, H, "int4")
    assert res.damp > 0.01 * float(torch.diag(H).mean())
    assert "Cholesky" in caplog.text
    with pytest.raises(ValueError, match="positive definite"):
        alg.gptq(W, -torch.eye(k) * 100, "int4")


def test_hessian_and_input_norms_equal_their_definitions():
    x = _inputs(96, 40, 7).reshape(4, 24, 40)  # 4 sequences of 24 tokens, added in two batches
    h, n = alg.Hessian(40, dtype=torch.float64), alg.InputNorms(40)
    for part in (x[:1], x[1:]):
        h.add_batch(part)
        n.add_batch(part)
    flat = x.reshape(-1, 40).double()
    torch.testing.assert_close(h.H, 2 / 4 * flat.t() @ flat)  # 2/nsamples, nsamples counted in sequences
    torch.testing.assert_close(n.x_norm_sq.double(), (flat ** 2).sum(0) / 4, rtol=1e-5, atol=1e-6)


def test_wanda_mask_equals_its_definition():
    W = _weight(16, 64, 8)
    norms = torch.rand(64, generator=torch.Generator().manual_seed(1)) + 0.1
    scores = W.abs() * norms.sqrt()
    m = alg.wanda_mask(W, norms, sparsity=0.5)
    pruned = torch.sort(scores, dim=1, stable=True)[1][:, :32]  # every score here is distinct
    exp = torch.ones_like(m)
    exp.scatter_(1, pruned, False)
    assert torch.equal(m, exp)
    m24 = alg.wanda_mask(W, norms, keep=2, group=4)
    top = torch.topk(scores.reshape(16, -1, 4), 2, dim=-1)[1]
    exp24 = torch.zeros(16, 16, 4, dtype=torch.bool).scatter_(-1, top, True).reshape(16, 64)
    assert torch.equal(m24, exp24)


@pytest.mark.parametrize("call,match", [
    (lambda W, H: alg.gptq(W, H, "int4", blocksize=0), "blocksize"),
    (lambda W, H: alg.gptq(W, H, "int4", percdamp=-1), "percdamp"),
    (lambda W, H: alg.gptq(W, H[:3, :3], "int4"), "H must be"),
    (lambda W, H: alg.gptq(W[0], H, "int4"), "2-D"),
    (lambda W, H: alg.gptq(W, H, "int4", rounding_is_not_an_option=1), "unexpected"),
    (lambda W, H: alg.gptq(W, H, qsparse.Format("int4", rounding="stochastic")), "stochastic"),
    (lambda W, H: alg.gptq(W, H, "int4", preserve_mask=torch.ones(2, 2, dtype=torch.bool)), "preserve_mask"),
    (lambda W, H: alg.sparsegpt(W, H, sparsity="5:4"), "keep"),
    (lambda W, H: alg.sparsegpt(W, H, sparsity=1.5), "sparsity"),
    (lambda W, H: alg.sparsegpt(W, H, sparsity=0.5, keep=2, group=4), "either"),
    (lambda W, H: alg.sparsegpt(W[:, :30], H[:30, :30], keep=2, group=4), "multiple"),
    (lambda W, H: alg.gptq(W, H, "not_a_format"), "not_a_format"),
])
def test_bad_arguments_raise_before_any_work(call, match):
    W, H = _weight(8, 32, 9), torch.eye(32)
    before = W.clone()
    with pytest.raises((ValueError, TypeError), match=match):
        call(W, H)
    assert torch.equal(W, before)


def test_c_block_validates_its_arguments():
    from qsparse import _lib

    W1, Hinv1 = _weight(4, 8, 10), _upper_factor(8, 10)
    q, e, loss = torch.empty(4, 8), torch.empty(4, 8), torch.zeros(4, dtype=torch.float64)
    dll = _lib.cpu().dll
    p = ops._params("int4", 0, 0, 0, -1)
    qp = ops.quant_qparams(W1, "int4", 0)
    slot = torch.zeros(8, dtype=torch.int64)
    import ctypes

    def call(params=ctypes.byref(p), rows=4, b=8, w=W1.data_ptr(), rs=8, cs=1, h=Hinv1.data_ptr(), hs=8,
             qptr=qp.data_ptr(), qs=4, sptr=slot.data_ptr(), mask=None, keep=0, group=0):
        return dll.qs_gptq_block_cpu(params, rows, b, w, rs, cs, h, hs, qptr, qs, sptr, mask, 8, 1, keep, group,
                                     q.data_ptr(), 8, e.data_ptr(), 8, loss.data_ptr(), 1)

    assert call() == 0
    assert call(rows=-1) == 2  # QS_ERR_INVALID_SIZE
    assert call(b=5000) == 2
    assert call(hs=4) == 3  # QS_ERR_INVALID_STRIDE
    assert call(cs=0) == 3
    assert call(w=None) == 1  # QS_ERR_NULL_POINTER
    assert call(qptr=None) == 1
    assert call(keep=2, group=4) == 1  # N:M needs a mask
    m = torch.ones(4, 8, dtype=torch.uint8)
    assert call(mask=m.data_ptr(), keep=5, group=4) == 8  # QS_ERR_INVALID_ARGUMENT
    assert call(mask=m.data_ptr(), keep=2, group=3) == 8  # 8 columns are not a multiple of 3
    assert call(mask=m.data_ptr(), keep=2, group=300) == 5  # QS_ERR_INVALID_GROUP
    bad_slot = torch.full((8,), 1, dtype=torch.int64)
    assert call(sptr=bad_slot.data_ptr()) == 8  # a record beyond the row
    sto = ops._params("int4", 0, 1, 0, -1)
    assert call(params=ctypes.byref(sto)) == 9  # QS_ERR_UNSUPPORTED: stochastic rounding
    assert call(params=None, qptr=None, sptr=None) == 0  # pruning only


def test_invalid_records_read_as_nan_groups():
    x = _weight(3, 8, 12)
    qp = ops.quant_qparams(x, "int4", 0)
    qp[1, 0, 0] = 7  # no such mode
    y = ops.fake_quant_qparams(x, qp, "int4", 0, 0, 0, -1, 0, 0, None, 0)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2]]).all()
    qp = ops.quant_qparams(x, "mixed_bitmod4", 8)
    qp[0, 0, 0] |= 9 << 8  # a grid the format does not have
    y = ops.fake_quant_qparams(x, qp, "mixed_bitmod4", 8, 0, 0, -1, 0, 0, None, 0)
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1:]).all()


@pytest.mark.parametrize("name,gs", [("int4_asym", 16), ("mxfp4", None), ("nvfp4", None), ("mixed_bitmod4", 32),
                                     ("int4", "tensor"), ("int8", "row"), ("bfp6", None)])
def test_quantizing_with_fitted_records_equals_fake_quant(name, gs):
    x = _weight(12, 96, 13) * torch.logspace(-3, 1, 96)
    f = qsparse.Format.parse(name, group_size=gs) if gs is not None else qsparse.Format.parse(name)
    a = qsparse.functional.op_args(f)
    qp = ops.quant_qparams(x, a[0], a[1], a[4], a[5], a[6])
    mask = torch.rand(12, 96, generator=torch.Generator().manual_seed(2)) > 0.3
    for m, mode in ((None, 0), (mask, 1), (mask, 2)):
        qp_m = ops.quant_qparams(x, a[0], a[1], a[4], a[5], a[6], mask=m, mask_mode=mode) if m is not None else qp
        y = ops.fake_quant_qparams(x, qp_m, a[0], a[1], a[2], 0, a[3], a[4], a[6], m, mode)
        exp = qsparse.fake_quant(x, f, mask=m, sparsify_first=mode == 1) if m is not None else \
            qsparse.fake_quant(x, f)
        assert_same_bits(y, exp, f"{name} mask mode {mode}")
    dec = alg.decode_qparams(qp)
    assert dec[0].shape == qp.shape[:2] and (dec[2] == 0).all()
    if f.effective_scale_mode == "e4m3":  # the NVFP4 tensor scale can be imposed
        ts = float(x.abs().amax() / 2688) * 3  # not a power of two: the block scales round differently
        qp2 = ops.quant_qparams(x, a[0], a[1], a[4], 0, 0, tensor_scale=ts)
        assert not torch.equal(qp2, qp)


def test_fake_quant_qparams_gradient_is_straight_through():
    x = _weight(4, 32, 14).requires_grad_()
    qp = ops.quant_qparams(x.detach(), "int4", 16)
    mask = torch.rand(4, 32, generator=torch.Generator().manual_seed(3)) > 0.5
    y = ops.fake_quant_qparams(x, qp, "int4", 16, 0, 0, -1, 0, 0, mask, 1)
    g = torch.randn(4, 32)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(mask, g, torch.zeros(())))
    torch.library.opcheck(ops.fake_quant_qparams, (x.detach(), qp, "int4", 16, 0, 0, -1, 0, 0, mask, 1))


def test_layer_result_scales():
    W = _weight(8, 64, 15)
    x = _inputs(256, 64, 15)
    res = alg.gptq(W, _hessian(x), "int4_asym", group_size=32)
    s, z = res.scales(), res.zeros()
    assert s.shape == (8, 2) and (s > 0).all()
    assert ((z >= 0) & (z <= 15) & (z == z.round())).all()
    # every weight is s * (k - z) for an integer code k in [0, 15]
    k = res.weight.reshape(8, 2, 32) / s.unsqueeze(-1) + z.unsqueeze(-1)
    assert torch.allclose(k, k.round(), atol=1e-3) and (k.round() >= 0).all() and (k.round() <= 15).all()
    assert math.isfinite(res.loss) and res.loss > 0


def test_inverse_hessian_factor_is_gptqs():
    x = _inputs(300, 96, 16)
    H = _hessian(x)
    U, damp = alg.inverse_hessian_factor(H, 0.01)
    Hd = H.double() + 0.01 * torch.diag(H.double()).mean() * torch.eye(96, dtype=torch.float64)
    ref = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)), upper=True)
    assert torch.equal(U, U.triu())
    torch.testing.assert_close(U.double(), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    assert damp == pytest.approx(0.01 * float(torch.diag(H).mean()))


def test_hessian_bf16_matmul_is_the_product_of_rounded_inputs():
    x = _inputs(64, 24, 17).unsqueeze(0)
    h = alg.Hessian(24, matmul="bf16")
    h.add_batch(x)
    b = (math.sqrt(2) * x[0]).to(torch.bfloat16).double()
    torch.testing.assert_close(h.H.double(), b.t() @ b, rtol=1e-2, atol=1e-2 * float((b.t() @ b).abs().max()))
    f = alg.Hessian(24)
    f.add_batch(x)
    assert not torch.equal(h.H, f.H)
    with pytest.raises(ValueError, match="matmul"):
        alg.Hessian(24, matmul="fp8")


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_gptq_under_the_fpquant_profile(name):
    x = _inputs(1024, 256, 4)
    W = _weight(64, 256, 4)
    f = qsparse.Format(name, compat="fpquant")
    res = alg.gptq(W, _hessian(x), f)
    rtn = qsparse.fake_quant(W, f)
    assert _out_err(x, W, res.weight) <= _out_err(x, W, rtn)
    a = qsparse.functional.op_args(f)
    again = ops.fake_quant_qparams(res.weight, res.qparams, a[0], a[1], a[2], 0, a[3], a[4], a[6], None, 0)
    assert torch.equal(again, res.weight)  # values: FP-Quant's E2M1 rounding turns +0 into -0 each time
