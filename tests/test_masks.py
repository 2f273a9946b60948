"""Sparsity masks (RELIABILITY.md item 18, plus views, dtypes, threads and argument errors).

N:M is written keep:group (FORMATS.md section 9): `nm_mask(s, 1, 4)` keeps 1 of every 4. Oracles: hand-computed
masks, the definition checked directly (counts, top-k, tie order), and qsparse/reference.py.
"""
from __future__ import annotations

import math

import pytest
import torch

import qsparse
from qsparse import reference as ref
from helpers import num_threads, randn

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

T, F = True, False
NAN, INF = math.nan, math.inf
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

NM_CONFIGS = [(2, 4), (1, 4), (3, 4), (2, 8), (4, 8), (0, 4), (4, 4), (1, 1), (0, 1), (1, 16), (8, 16),
              (16, 32), (5, 32), (0, 32), (32, 32), (128, 256), (1, 256), (256, 256)]


def tie_heavy(shape, seed, values=(-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, NAN, INF, -INF), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), shape, generator=g)
    return torch.tensor(values, dtype=torch.float32)[idx].to(dtype)


def score_key(s: torch.Tensor) -> torch.Tensor:
    """The ranking of FORMATS.md 9 as a float64 key: NaN above +Inf, -0.0 == +0.0."""
    s = s.to(torch.float64)
    return torch.where(torch.isnan(s), torch.full_like(s, math.inf), torch.where(torch.isinf(s) & (s > 0),
                       torch.full_like(s, 1e308), s)) + 0.0


# ---- hand-computed cases --------------------------------------------------------------------------------------------

NM_HAND = [
    # the convention: keep:group counts KEPT entries (a swapped kept/pruned implementation fails 1:4 and 3:4)
    (1, 4, [0.1, 0.9, 0.5, 0.3], [F, T, F, F]),
    (3, 4, [0.1, 0.9, 0.5, 0.3], [F, T, T, T]),
    (2, 4, [0.1, 0.9, 0.5, 0.3], [F, T, T, F]),
    (1, 4, [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0], [T, F, F, F, F, F, F, T]),
    (3, 4, [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0], [T, T, T, F, F, T, T, T]),
    # ties go to the lowest index
    (2, 4, [1.0, 1.0, 1.0, 1.0], [T, T, F, F]),
    (2, 4, [0.5, 1.0, 1.0, 1.0], [F, T, T, F]),
    (1, 4, [2.0, 5.0, 5.0, 5.0], [F, T, F, F]),
    (3, 4, [7.0, 7.0, 7.0, 7.0], [T, T, T, F]),
    (2, 8, [3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0], [T, F, T, F, F, F, F, F]),
    (4, 8, [1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 2.0, 2.0], [F, T, T, F, T, F, T, F]),
    # -0.0 equals +0.0
    (1, 4, [-0.0, 0.0, -1.0, -1.0], [T, F, F, F]),
    (1, 4, [-1.0, -0.0, 0.0, -1.0], [F, T, F, F]),
    (2, 4, [-0.0, 0.0, -0.0, 0.0], [T, T, F, F]),
    # NaN ranks highest, above +Inf
    (1, 4, [1.0, NAN, INF, 2.0], [F, T, F, F]),
    (2, 4, [1.0, NAN, INF, 2.0], [F, T, T, F]),
    (3, 4, [1.0, NAN, INF, 2.0], [F, T, T, T]),
    (1, 4, [INF, 5.0, INF, NAN], [F, F, F, T]),
    (2, 4, [INF, 5.0, INF, NAN], [T, F, F, T]),
    (2, 4, [NAN, NAN, NAN, 1.0], [T, T, F, F]),
    (1, 4, [-INF, -INF, -INF, -INF], [T, F, F, F]),
    # scores are signed (not magnitudes)
    (2, 4, [-1.0, -2.0, -3.0, -4.0], [T, T, F, F]),
    (2, 4, [-3.0, -1.0, -2.0, -1.0], [F, T, F, T]),
    (1, 4, [-5.0, 1.0, -7.0, 0.5], [F, T, F, F]),
    # partial last groups keep min(keep, r)
    (2, 4, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [F, F, T, T, T, T]),
    (3, 4, [1.0, 2.0, 3.0, 4.0, 5.0], [F, T, T, T, T]),
    (2, 4, [1.0, 2.0, 3.0, 4.0, 5.0], [F, F, T, T, T]),
    (1, 4, [1.0, 2.0, 3.0, 4.0, 9.0, 8.0, 9.0], [F, F, F, T, T, F, F]),
    (2, 8, [5.0, 1.0, 5.0], [T, F, T]),
    (0, 4, [1.0, 2.0, 3.0, 4.0, 5.0], [F, F, F, F, F]),
    (4, 4, [1.0, NAN, -INF, 0.0, 3.0], [T, T, T, T, T]),
    (1, 1, [3.0, NAN, -1.0], [T, T, T]),
    (0, 1, [3.0, NAN, -1.0], [F, F, F]),
]


@pytest.mark.parametrize("keep,group,scores,expected", NM_HAND)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_nm_hand_cases(keep, group, scores, expected, dtype):
    s = torch.tensor([scores], dtype=torch.float32).to(dtype)
    e = torch.tensor([expected])
    assert torch.equal(qsparse.nm_mask(s, keep, group), e), f"{keep}:{group} {scores}"
    assert torch.equal(qsparse.nm_mask(s, group=group, prune_n=group - keep), e)
    assert torch.equal(ref.nm_mask(s, keep, group), e), "reference disagrees with the hand case"


_NEG_NAN_BITS = {torch.float32: (torch.int32, -4194304), torch.float16: (torch.int16, -512),
                  torch.bfloat16: (torch.int16, -64)}  # 0xFFC00000, 0xFE00, 0xFFC0: NaN with the sign bit set


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_negative_nan_ranks_highest(dtype):
    s = torch.tensor([[1.0, 0.0, 2.0, 3.0, 5.0, 0.0, INF, 0.0]], dtype=dtype)
    itype, pattern = _NEG_NAN_BITS[dtype]
    s.view(itype)[0, 1] = pattern
    s.view(itype)[0, 5] = pattern
    assert bool(torch.isnan(s[0, 1])) and bool(torch.signbit(s[0, 1]))
    assert torch.equal(qsparse.nm_mask(s, 1, 4), torch.tensor([[F, T, F, F, F, T, F, F]]))
    assert torch.equal(qsparse.nm_mask(s, 2, 4), torch.tensor([[F, T, F, T, F, T, T, F]]))
    assert torch.equal(qsparse.magnitude_mask(s, 0.75), torch.tensor([[F, T, F, F, F, T, F, F]]))
    assert torch.equal(qsparse.nm_mask(s, 2, 4), ref.nm_mask(s, 2, 4))
    assert torch.equal(qsparse.magnitude_mask(s, 0.75), ref.magnitude_mask(s, 0.75))


# ---- the definition, checked directly on random inputs -----------------------------------------------------------------


@pytest.mark.parametrize("keep,group", NM_CONFIGS)
def test_nm_counts_and_top_k(keep, group):
    cols = group * 3
    s = randn((7, cols), seed=keep * 1000 + group)  # distinct values almost surely
    m = qsparse.nm_mask(s, keep, group)
    assert m.dtype == torch.bool and m.shape == s.shape
    mg, sg = m.reshape(-1, group), s.reshape(-1, group)
    assert bool((mg.sum(1) == keep).all()), "exactly `keep` kept per full group"
    if 0 < keep < group:
        kept_min = torch.where(mg, sg, torch.full_like(sg, INF)).amin(1)
        pruned_max = torch.where(mg, torch.full_like(sg, -INF), sg).amax(1)
        assert bool((kept_min > pruned_max).all()), "a pruned score above a kept one"
    assert torch.equal(m, ref.nm_mask(s, keep, group))


@pytest.mark.parametrize("keep,group,tail",
                         [(k, g, t) for k, g in NM_CONFIGS for t in (1, 2, 3, 5, 31) if t < g])
def test_nm_partial_last_group(keep, group, tail):
    cols = group * 2 + tail
    s = randn((5, cols), seed=tail)
    m = qsparse.nm_mask(s, keep, group)
    assert bool((m[:, 2 * group:].sum(1) == min(keep, tail)).all())
    assert bool((m[:, :2 * group].reshape(-1, group).sum(1) == keep).all())
    assert torch.equal(m, ref.nm_mask(s, keep, group))


def _rank_check(s_row: torch.Tensor, m_row: torch.Tensor, keep: int):
    """Kept entries are exactly the first `keep` of the group in (score desc, index asc) order."""
    key = score_key(s_row)
    order = sorted(range(len(key)), key=lambda i: (-key[i].item(), i))
    expected = torch.zeros(len(key), dtype=torch.bool)
    expected[order[:keep]] = True
    return torch.equal(m_row, expected)


@pytest.mark.parametrize("keep,group", [(2, 4), (1, 4), (3, 4), (2, 8), (4, 8), (5, 16), (10, 32)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_nm_tie_heavy(keep, group, dtype):
    s = tie_heavy((16, group * 5 + 3), seed=group + keep, dtype=dtype)
    m = qsparse.nm_mask(s, keep, group)
    assert torch.equal(m, ref.nm_mask(s, keep, group))
    # and the ordering, from a sort written here
    for r in range(4):
        for c0 in range(0, s.shape[1], group):
            seg = slice(c0, min(c0 + group, s.shape[1]))
            width = seg.stop - seg.start
            assert _rank_check(s[r, seg], m[r, seg], min(keep, width)), (r, c0, s[r, seg].tolist())


@pytest.mark.parametrize("keep,group", NM_CONFIGS)
def test_nm_prune_n_equivalent(keep, group):
    s = tie_heavy((6, group * 2 + 1), seed=5)
    assert torch.equal(qsparse.nm_mask(s, group=group, prune_n=group - keep), qsparse.nm_mask(s, keep, group))
    assert torch.equal(qsparse.nm_mask(s, keep=keep, group=group), qsparse.nm_mask(s, keep, group))


@pytest.mark.parametrize("keep,group", [(1, 4), (3, 4), (2, 8), (4, 8), (5, 16)])
def test_nm_kept_is_complement_of_pruned(keep, group):
    """With distinct scores, keeping the top `keep` of s is pruning the top `group - keep` of -s: a kept/pruned
    swap (or a reversed sort) fails this for every keep != group / 2."""
    s = randn((9, group * 4), seed=keep + group)
    assert torch.equal(qsparse.nm_mask(s, keep, group), ~qsparse.nm_mask(-s, group - keep, group))
    assert int(qsparse.nm_mask(s, keep, group).sum()) == 9 * 4 * keep
    assert int(qsparse.nm_mask(s, group=group, prune_n=keep).sum()) == 9 * 4 * (group - keep)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("shape", [(1,), (3,), (5, 1), (1, 7), (3, 5, 7), (2, 3, 4, 9), (33, 257)])
def test_nm_odd_shapes_and_dtypes(dtype, shape):
    s = randn(shape, seed=len(shape), dtype=dtype)
    for keep, group in [(2, 4), (1, 3), (3, 7), (1, 1)]:
        assert torch.equal(qsparse.nm_mask(s, keep, group), ref.nm_mask(s, keep, group))


def test_nm_threads_and_views():
    s = tie_heavy((300, 520), seed=8)  # above the single-thread threshold
    with num_threads(1):
        m1 = qsparse.nm_mask(s, 2, 4)
        v1 = qsparse.nm_mask(s.t(), 3, 8)
    with num_threads(2):
        m2 = qsparse.nm_mask(s, 2, 4)
        v2 = qsparse.nm_mask(s.t(), 3, 8)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)
    assert torch.equal(m1, ref.nm_mask(s, 2, 4))
    assert torch.equal(v1, qsparse.nm_mask(s.t().contiguous(), 3, 8))
    for v in (s[:, ::3], s[5:40, 7:100], s[:1].expand(4, -1), s.view(-1)[13:13 + 520 * 2].view(2, 520)):
        assert torch.equal(qsparse.nm_mask(v, 2, 4), qsparse.nm_mask(v.contiguous(), 2, 4))


def test_nm_empty_and_zero_dim():
    for shape in [(0,), (0, 4), (4, 0), (2, 0, 8)]:
        m = qsparse.nm_mask(torch.empty(shape), 2, 4)
        assert m.shape == shape and m.dtype == torch.bool
    assert bool(qsparse.nm_mask(torch.tensor(3.0), 1, 4)) is True
    assert bool(qsparse.nm_mask(torch.tensor(3.0), 0, 4)) is False
    assert qsparse.nm_mask(torch.tensor(3.0), 1, 4).shape == ()


@pytest.mark.parametrize("kw,exc,param", [
    (dict(keep=5, group=4), ValueError, "keep"),
    (dict(keep=-1, group=4), ValueError, "keep"),
    (dict(keep=2, group=0), ValueError, "group"),
    (dict(keep=2, group=257), ValueError, "group"),
    (dict(keep=2, group=-4), ValueError, "group"),
    (dict(keep=2), ValueError, "group"),
    (dict(group=4), ValueError, "keep"),
    (dict(keep=2, group=4, prune_n=2), ValueError, "prune_n"),
    (dict(group=4, prune_n=5), ValueError, "prune_n"),
    (dict(group=4, prune_n=-1), ValueError, "prune_n"),
    (dict(keep=2.0, group=4), TypeError, "keep"),
    (dict(keep=True, group=4), TypeError, "keep"),
    (dict(keep=2, group=4.0), TypeError, "group"),
    (dict(keep="2", group=4), TypeError, "keep"),
    (dict(group=4, prune_n=1.0), TypeError, "prune_n"),
])
def test_nm_argument_errors(kw, exc, param):
    with pytest.raises(exc, match=param):
        qsparse.nm_mask(torch.ones(2, 8), **kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.bool, torch.complex64], ids=str)
def test_mask_functions_reject_dtypes(dtype):
    x = torch.ones(2, 8).to(dtype)
    with pytest.raises(TypeError, match="scores"):
        qsparse.nm_mask(x, 2, 4)
    with pytest.raises(TypeError, match=r"\bw\b"):
        qsparse.magnitude_mask(x, 0.5)


# ---- magnitude masks ------------------------------------------------------------------------------------------------

SPARSITIES = [0.0, 0.3, 0.5, 0.7, 1.0]

MAG_HAND = [
    # (w, sparsity, per_row, expected keep-mask)
    ([[1.0, 1.0, 1.0, 1.0]], 0.5, False, [[T, T, F, F]]),  # ties: the highest indices are pruned
    ([[-1.0, 1.0, -1.0, 1.0]], 0.5, False, [[T, T, F, F]]),  # magnitudes, not signed values
    ([[0.0, -0.0, 0.0, 5.0]], 0.5, False, [[T, F, F, T]]),  # -0.0 == +0.0
    ([[NAN, 1.0, 2.0, 3.0]], 0.75, False, [[T, F, F, F]]),  # NaN counts as the largest
    ([[INF, NAN, 1.0, 0.0]], 0.5, False, [[T, T, F, F]]),
    ([[INF, NAN, 1.0, 0.0]], 0.75, False, [[F, T, F, F]]),
    ([[NAN, NAN, -INF, 1.0]], 0.75, False, [[T, F, F, F]]),  # NaN ties: lowest index kept
    ([[3.0, -4.0, 1.0, -2.0, 5.0]], 0.4, False, [[T, T, F, F, T]]),
    ([[1.0, 1.0], [1.0, 1.0]], 0.5, False, [[T, T], [F, F]]),  # row-major order across rows
    ([[1.0, 1.0], [1.0, 1.0]], 0.5, True, [[T, F], [T, F]]),
    ([[1.0, 2.0], [3.0, 0.5]], 0.5, False, [[F, T], [T, F]]),
    ([[1.0, 2.0], [3.0, 0.5]], 0.5, True, [[F, T], [T, F]]),
    ([[9.0, 8.0, 7.0], [1.0, 2.0, 3.0]], 0.5, False, [[T, T, T], [F, F, F]]),
    ([[9.0, 8.0, 7.0], [1.0, 2.0, 3.0]], 0.5, True, [[T, T, F], [F, T, T]]),  # floor(3 * 0.5) = 1 per row
    ([[1.0, 2.0, 3.0]], 0.0, False, [[T, T, T]]),
    ([[1.0, NAN, 3.0]], 1.0, False, [[F, F, F]]),
    ([[2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]], 0.7, False, [[T, F, T, F, T, F, F]]),  # floor(4.9) = 4
]


@pytest.mark.parametrize("case", range(len(MAG_HAND)))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_magnitude_hand_cases(case, dtype):
    w, sp, per_row, expected = MAG_HAND[case]
    x = torch.tensor(w, dtype=torch.float32).to(dtype)
    e = torch.tensor(expected)
    assert torch.equal(qsparse.magnitude_mask(x, sp, per_row=per_row), e), (w, sp, per_row)
    assert torch.equal(ref.magnitude_mask(x, sp, per_row=per_row), e), "reference disagrees with the hand case"


# hand-typed floor(n * sparsity) for n = 10 and n = 7
PRUNED_COUNT = {10: {0.0: 0, 0.3: 3, 0.5: 5, 0.7: 7, 1.0: 10}, 7: {0.0: 0, 0.3: 2, 0.5: 3, 0.7: 4, 1.0: 7}}


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("per_row", [False, True])
def test_magnitude_counts_and_order(sparsity, per_row):
    for shape in [(1, 10), (1, 7), (5, 7), (10, 10), (3, 4, 10), (6, 333)]:
        w = randn(shape, seed=shape[-1])
        m = qsparse.magnitude_mask(w, sparsity, per_row=per_row)
        assert m.dtype == torch.bool and m.shape == w.shape
        a = w.abs().reshape(-1, shape[-1]) if per_row else w.abs().reshape(1, -1)
        mm = m.reshape(a.shape)
        n = a.shape[1]
        k = PRUNED_COUNT[n][sparsity] if n in PRUNED_COUNT else math.floor(n * sparsity)
        assert bool(((~mm).sum(1) == k).all()), f"pruned count != floor({n} * {sparsity})"
        if 0 < k < n:
            kept_min = torch.where(mm, a, torch.full_like(a, INF)).amin(1)
            pruned_max = torch.where(mm, torch.full_like(a, -INF), a).amax(1)
            assert bool((kept_min >= pruned_max).all())
        assert torch.equal(m, ref.magnitude_mask(w, sparsity, per_row=per_row))


@pytest.mark.parametrize("sparsity", SPARSITIES + [0.25, 0.9, 0.01])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_magnitude_tie_heavy_vs_reference(sparsity, per_row, dtype):
    w = tie_heavy((9, 37), seed=int(sparsity * 100), dtype=dtype)
    assert torch.equal(qsparse.magnitude_mask(w, sparsity, per_row=per_row),
                       ref.magnitude_mask(w, sparsity, per_row=per_row))


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_magnitude_threads(per_row, dtype):
    # large enough for the parallel paths; ties everywhere, so the tie ranks cross thread partitions
    w = tie_heavy((257, 515), seed=12, values=(0.0, -0.0, 1.0, -1.0, 2.0, 0.5, NAN), dtype=dtype)
    for sp in (0.3, 0.5, 0.7):
        with num_threads(1):
            m1 = qsparse.magnitude_mask(w, sp, per_row=per_row)
        with num_threads(2):
            m2 = qsparse.magnitude_mask(w, sp, per_row=per_row)
        assert torch.equal(m1, m2), f"sparsity {sp}: thread count changed the mask"
        assert torch.equal(m1, ref.magnitude_mask(w, sp, per_row=per_row))


def test_magnitude_continuous_large_vs_reference():
    w = randn((200, 300), seed=13)
    for per_row in (False, True):
        for sp in (0.5, 0.9):
            assert torch.equal(qsparse.magnitude_mask(w, sp, per_row), ref.magnitude_mask(w, sp, per_row))


@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 1), (1, 7), (3, 5, 7), (2, 1, 3, 5)])
def test_magnitude_odd_shapes(shape):
    w = randn(shape, seed=3)
    for sp in SPARSITIES:
        for per_row in (False, True):
            assert torch.equal(qsparse.magnitude_mask(w, sp, per_row), ref.magnitude_mask(w, sp, per_row))


def test_magnitude_views():
    w = tie_heavy((40, 60), seed=14)
    for v in (w.t(), w[:, ::2], w[3:17, 5:55], w[:1].expand(6, -1), w.view(-1)[7:7 + 600].view(20, 30)):
        for per_row in (False, True):
            assert torch.equal(qsparse.magnitude_mask(v, 0.5, per_row), qsparse.magnitude_mask(v.contiguous(), 0.5,
                                                                                              per_row))


def test_magnitude_empty_and_zero_dim():
    for shape in [(0,), (0, 4), (4, 0)]:
        for per_row in (False, True):
            m = qsparse.magnitude_mask(torch.empty(shape), 0.5, per_row)
            assert m.shape == shape and m.dtype == torch.bool
    assert bool(qsparse.magnitude_mask(torch.tensor(-3.0), 0.5)) is True  # floor(0.5) = 0 pruned
    assert bool(qsparse.magnitude_mask(torch.tensor(-3.0), 1.0)) is False


@pytest.mark.parametrize("kw,exc,param", [
    (dict(sparsity=1.5), ValueError, "sparsity"),
    (dict(sparsity=-0.1), ValueError, "sparsity"),
    (dict(sparsity=math.nan), ValueError, "sparsity"),
    (dict(sparsity=math.inf), ValueError, "sparsity"),
    (dict(sparsity="0.5"), TypeError, "sparsity"),
    (dict(sparsity=True), TypeError, "sparsity"),
    (dict(sparsity=None), TypeError, "sparsity"),
    (dict(sparsity=0.5, per_row=1), TypeError, "per_row"),
    (dict(sparsity=0.5, per_row="yes"), TypeError, "per_row"),
])
def test_magnitude_argument_errors(kw, exc, param):
    with pytest.raises(exc, match=param):
        qsparse.magnitude_mask(torch.ones(2, 8), **kw)


if given is not None:

    @settings(max_examples=60)
    @given(rows=st.integers(1, 12), cols=st.integers(1, 70), group=st.integers(1, 40), data=st.data(),
           dtype=st.sampled_from(DTYPES), seed=st.integers(0, 10**6), ties=st.booleans())
    def test_nm_random_vs_reference(rows, cols, group, data, dtype, seed, ties):
        keep = data.draw(st.integers(0, group))
        s = tie_heavy((rows, cols), seed, dtype=dtype) if ties else randn((rows, cols), seed, dtype=dtype)
        m = qsparse.nm_mask(s, keep, group)
        assert torch.equal(m, ref.nm_mask(s, keep, group))
        full = cols // group
        if full:
            assert bool((m[:, :full * group].reshape(rows, full, group).sum(2) == keep).all())
        if cols % group:
            assert bool((m[:, full * group:].sum(1) == min(keep, cols % group)).all())

    @settings(max_examples=60)
    @given(shape=st.lists(st.integers(1, 30), min_size=1, max_size=3), sparsity=st.floats(0.0, 1.0),
           per_row=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 10**6), ties=st.booleans())
    def test_magnitude_random_vs_reference(shape, sparsity, per_row, dtype, seed, ties):
        shape = tuple(shape)
        w = tie_heavy(shape, seed, dtype=dtype) if ties else randn(shape, seed, dtype=dtype)
        m = qsparse.magnitude_mask(w, sparsity, per_row)
        assert torch.equal(m, ref.magnitude_mask(w, sparsity, per_row))
        n = shape[-1] if per_row else w.numel()
        pruned = (~m).reshape(-1, shape[-1]).sum(1) if per_row else (~m).sum().reshape(1)
        assert bool((pruned == int(n * sparsity)).all())
