"""CUDA kernels against the CPU kernels, bit for bit (RELIABILITY.md items 3, 9, 14, 17, 18; the CPU library is the
reference, and it is itself tested against qsparse.reference elsewhere).

Everything goes through the public API (qsparse.fake_quant / nm_mask / magnitude_mask) on CUDA tensors, compared
with the same call on a CPU copy. Bit comparison: identical integer views (so +0.0 != -0.0), NaN at the same
positions (payloads not compared). The tests need a CUDA GPU and the CUDA library; they skip, saying which is
missing, otherwise. The argument checks of the C entry points need only the library (no GPU is touched).
"""
import ctypes
import os

import pytest
import torch

import qsparse
from qsparse import _lib, formats

# ---- availability -------------------------------------------------------------------------------------------------


def _library_missing():
    try:
        _lib.cuda()
    except qsparse.QsparseError as e:
        return f"the qsparse CUDA library is not available: {e}"
    return None


def _cuda_missing():
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    return _library_missing()


_CUDA_MISSING = _cuda_missing()
needs_cuda = pytest.mark.skipif(_CUDA_MISSING is not None, reason=_CUDA_MISSING or "")
needs_library = pytest.mark.skipif(_library_missing() is not None, reason=_library_missing() or "")
pytestmark = pytest.mark.cuda

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FORMATS = tuple(f.name for f in formats.table() if f.family != "llmq")  # llm-mixed-q rows: test_llmq.py
ODD_COLS = (1, 3, 17, 129, 4097)

# ---- helpers -------------------------------------------------------------------------------------------------------

_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def assert_bits_equal(actual: torch.Tensor, expected: torch.Tensor, what: str):
    """Same shape and dtype; NaN at the same positions; identical bit patterns elsewhere. Compared on the CPU."""
    actual, expected = actual.cpu(), expected.cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.dtype == torch.bool:
        bad = actual != expected
    else:
        na, ne = torch.isnan(actual), torch.isnan(expected)
        ia = actual.contiguous().view(_INT_VIEW[actual.dtype])
        ie = expected.contiguous().view(_INT_VIEW[expected.dtype])
        bad = (na != ne) | (~na & ~ne & (ia != ie))
    if bool(bad.any()):
        where = [tuple(i) for i in bad.nonzero()[:5].tolist()]
        detail = "\n".join(f"  at {w}: cuda {actual[w].item()!r}, cpu {expected[w].item()!r}" for w in where)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} elements differ\n{detail}")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _inputs(rows, cols, dtype, seed, special=False):
    """randn with a per-row scale spread over many binades; `special` adds NaN/Inf, zero and -0 rows, denormals,
    values near FLT_MAX, so that the NaN-group, zero-group and overflow paths all run."""
    g = _gen(seed)
    x = torch.randn(rows, cols, generator=g) * torch.exp2(torch.randint(-20, 21, (rows, 1), generator=g).float())
    if special:
        flat = x.view(-1)
        values = (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40, -1e-45, 3.3e38, -3.4e38, 6e-8)
        idx = torch.randint(0, flat.numel(), (len(values) * max(1, flat.numel() // 300),), generator=g)
        for k, i in enumerate(idx.tolist()):
            flat[i] = values[k % len(values)]
        if rows > 2:
            x[1] = 0.0
            x[2] = -0.0
            x[2, ::2] = 1e-40
    return x.to(dtype)


def _mask(shape, seed, density=0.6):
    return torch.rand(shape, generator=_gen(seed)) < density


def _group_sizes(name):
    return (None,) if formats.get(name).elementwise else (None, 7, 32, "row", "tensor")


def _fq_both(x, name, mask=None, **kw):
    """(cuda result, cpu result) of the same call."""
    y_gpu = qsparse.fake_quant(x.cuda(), name, mask=None if mask is None else mask.cuda(), **kw)
    y_cpu = qsparse.fake_quant(x, name, mask=mask, **kw)
    return y_gpu, y_cpu


# ---- fake quantization ---------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", FORMATS)
def test_fake_quant_matches_cpu(name, dtype):
    """Every format x group size x rounding x mask mode on odd row lengths, bit for bit."""
    for cols in ODD_COLS:
        rows = 3 if cols > 1000 else 6
        for special in (False, True):
            x = _inputs(rows, cols, dtype, seed=cols + 7 * special, special=special)
            m = _mask(x.shape, seed=cols)
            for group in _group_sizes(name):
                for rounding, seed in (("rne", None), ("stochastic", 1234567)):
                    for mask, first in ((None, True), (m, True), (m, False)):
                        y_gpu, y_cpu = _fq_both(x, name, mask=mask, group_size=group, rounding=rounding, seed=seed,
                                                sparsify_first=first)
                        what = (f"{name} {dtype} {rows}x{cols} group={group} {rounding} special={special} "
                                f"mask={'none' if mask is None else ('before' if first else 'after')}")
                        assert_bits_equal(y_gpu, y_cpu, what)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["floor", "ceil", "even", "rceil", "e4m3", "e4m3_block", "amax"])
@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxint8", "nvfp4", "fp3_e2m0"])
def test_scale_modes_match_cpu(name, mode, dtype):
    """Block-scaled formats with every scale mode (the E4M3 tensor scale read by every kernel shape)."""
    for rows, cols in ((6, 97), (3, 1000), (2, 5000)):
        x = _inputs(rows, cols, dtype, seed=cols, special=cols == 97)
        m = _mask(x.shape, seed=cols)
        for group in (16, 32, 128, 2048, "row", "tensor"):
            for rounding, seed in (("rne", None), ("stochastic", 4321)):
                for mask in (None, m):
                    y_gpu, y_cpu = _fq_both(x, name, mask=mask, group_size=group, rounding=rounding, seed=seed,
                                            scale_mode=mode)
                    what = f"{name} {mode} {dtype} {rows}x{cols} group={group} {rounding} mask={mask is not None}"
                    assert_bits_equal(y_gpu, y_cpu, what)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("g", [1, 2, 4, 32, 128, 1024, 8192])
def test_hadamard_matches_cpu(g, dtype):
    for rows in (1, 7, 300):
        x = _inputs(rows, 2 * g, dtype, seed=g + rows)
        assert_bits_equal(qsparse.hadamard(x.cuda(), g), qsparse.hadamard(x, g), f"hadamard g={g} {dtype} rows={rows}")
        view = x[:, :g]  # strided rows
        assert_bits_equal(qsparse.hadamard(x.cuda()[:, :g], g), qsparse.hadamard(view, g), f"hadamard view g={g}")
    y = qsparse.fake_quant(x.cuda(), "mxfp4", transform="hadamard", transform_group=min(g, 128) if g > 1 else 1)
    assert_bits_equal(y, qsparse.fake_quant(x, "mxfp4", transform="hadamard",
                                            transform_group=min(g, 128) if g > 1 else 1), "fake_quant hadamard")


@needs_cuda
@pytest.mark.parametrize("group", [1, 2, 31, 33, 64, 100, 128, 1000, 1024, 1025, 4096, 5000, "row", "tensor"])
@pytest.mark.parametrize("name", ["int4", "int8_full", "int3_asym", "bfp8", "bfp4", "mxfp4", "nvfp4"])
def test_fake_quant_group_size_sweep(name, group):
    """Every kernel shape of the CUDA library: segments of 1..32 lanes, 1..32 registers a lane, a block per group,
    and groups spread over the GPU (few long rows)."""
    for rows, cols in ((9, 1000), (5, 4097), (2, 70000), (300, 1100)):
        x = _inputs(rows, cols, torch.float32, seed=rows * cols)
        m = _mask(x.shape, seed=3)
        for rounding, seed in (("rne", None), ("stochastic", 99)):
            for mask in (None, m):
                y_gpu, y_cpu = _fq_both(x, name, mask=mask, group_size=group, rounding=rounding, seed=seed)
                what = f"{name} {rows}x{cols} group={group} {rounding} mask={mask is not None}"
                assert_bits_equal(y_gpu, y_cpu, what)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", FORMATS)
def test_fake_quant_all_16bit_patterns(name, dtype):
    """All 65,536 bit patterns (RELIABILITY.md item 3), element-wise and in groups (NaN/Inf groups included)."""
    x = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype).reshape(256, 256)
    for group in _group_sizes(name)[:3]:
        for rounding, seed in (("rne", None), ("stochastic", 5)):
            y_gpu, y_cpu = _fq_both(x, name, group_size=group, rounding=rounding, seed=seed)
            assert_bits_equal(y_gpu, y_cpu, f"{name} {dtype} all patterns group={group} {rounding}")


@needs_cuda
@pytest.mark.parametrize("name", ["int4", "int4_asym", "bfp8", "fp8_e4m3", "fp16"])
def test_fake_quant_views(name):
    """Transposed, sliced, offset and 3-D inputs (RELIABILITY.md item 10), and saturate overrides."""
    base = _inputs(64, 96, torch.float32, seed=11, special=True)
    views = {
        "transposed": lambda t: t.t(),
        "sliced": lambda t: t[:, 5:70],
        "strided rows": lambda t: t[::3],
        "offset": lambda t: t[1:, 1:],
        "3-d": lambda t: t.reshape(4, 16, 96),
        "column": lambda t: t[:, 7:8],
    }
    for label, view in views.items():
        f = formats.get(name)
        for saturate in ((None, False, True) if f.has_inf or f.has_nan else (None, True)) if f.elementwise else (None,):
            x_cpu = view(base)
            x_gpu = view(base.cuda())
            y_gpu = qsparse.fake_quant(x_gpu, name, saturate=saturate)
            y_cpu = qsparse.fake_quant(x_cpu, name, saturate=saturate)
            assert_bits_equal(y_gpu, y_cpu, f"{name} {label} saturate={saturate}")


@needs_cuda
def test_fake_quant_on_a_side_stream():
    """The kernels run on the caller's current stream (RELIABILITY.md item 17): work queued on a non-default
    stream, including the producer of the input, gives the CPU's bits."""
    x = _inputs(257, 1031, torch.bfloat16, seed=21, special=True)
    m = _mask(x.shape, seed=22)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x_gpu = x.cuda(non_blocking=False) * 1.0  # produced on the side stream
        m_gpu = m.cuda()
        results = {}
        for name, group, rounding in (("int4", 32, "rne"), ("int5_asym", "row", "stochastic"),
                                      ("bfp6", None, "stochastic"), ("int8_full", "tensor", "rne"),
                                      ("fp8_e5m2", None, "stochastic")):
            results[(name, group, rounding)] = qsparse.fake_quant(x_gpu, name, group_size=group, rounding=rounding,
                                                                  seed=42, mask=m_gpu)
        nm = qsparse.nm_mask(x_gpu.float().abs(), 2, 4)
        mag = qsparse.magnitude_mask(x_gpu, 0.5)
    side.synchronize()
    for (name, group, rounding), y in results.items():
        y_cpu = qsparse.fake_quant(x, name, group_size=group, rounding=rounding, seed=42, mask=m)
        assert_bits_equal(y, y_cpu, f"side stream {name} group={group} {rounding}")
    assert_bits_equal(nm, qsparse.nm_mask(x.float().abs(), 2, 4), "side stream nm_mask")
    assert_bits_equal(mag, qsparse.magnitude_mask(x, 0.5), "side stream magnitude_mask")


@needs_cuda
def test_fake_quant_empty_and_0d():
    for shape in ((0,), (0, 5), (5, 0), (2, 0, 3)):
        x = torch.empty(shape, device="cuda")
        assert qsparse.fake_quant(x, "int4").shape == x.shape
    x = torch.randn((), device="cuda")
    assert_bits_equal(qsparse.fake_quant(x, "bfp8"), qsparse.fake_quant(x.cpu(), "bfp8"), "0-d")


@needs_cuda
def test_stochastic_rounding_depends_on_seed_and_is_reproducible():
    x = _inputs(32, 256, torch.float32, seed=5)
    a = qsparse.fake_quant(x.cuda(), "int4", group_size=32, rounding="stochastic", seed=1)
    b = qsparse.fake_quant(x.cuda(), "int4", group_size=32, rounding="stochastic", seed=1)
    c = qsparse.fake_quant(x.cuda(), "int4", group_size=32, rounding="stochastic", seed=2)
    assert_bits_equal(a, b, "same seed")
    assert not torch.equal(a, c)
    # a seed above 2^63 reaches the kernel as the same 64 bits on both devices
    y_gpu, y_cpu = _fq_both(x, "bfp8", rounding="stochastic", seed=(1 << 64) - 3)
    assert_bits_equal(y_gpu, y_cpu, "seed 2^64 - 3")


# ---- N:M masks -----------------------------------------------------------------------------------------------------


def _scores(rows, cols, dtype, seed, kind):
    g = _gen(seed)
    if kind == "ties":
        s = torch.randint(-2, 3, (rows, cols), generator=g).float()
    else:
        s = torch.randn(rows, cols, generator=g)
        if kind == "special":
            flat = s.view(-1)
            values = (float("nan"), -float("nan"), float("inf"), -float("inf"), 0.0, -0.0)
            idx = torch.randint(0, flat.numel(), (len(values) * max(1, flat.numel() // 12),), generator=g)
            for k, i in enumerate(idx.tolist()):
                flat[i] = values[k % len(values)]
    return s.to(dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("keep,group", [(2, 4), (1, 4), (3, 4), (2, 8), (4, 8), (0, 4), (4, 4), (1, 1), (5, 7),
                                        (16, 33), (100, 256), (1, 256)])
def test_nm_mask_matches_cpu(keep, group, dtype):
    for cols in ODD_COLS:
        for kind in ("random", "ties", "special"):
            s = _scores(5, cols, dtype, seed=cols + group, kind=kind)
            m_gpu = qsparse.nm_mask(s.cuda(), keep, group)
            m_cpu = qsparse.nm_mask(s, keep, group)
            assert_bits_equal(m_gpu, m_cpu, f"nm {keep}:{group} {dtype} cols={cols} {kind}")
            if cols % group == 0:
                kept = m_gpu.reshape(5, cols // group, group).sum(-1)
                assert bool((kept == keep).all()), f"nm {keep}:{group}: not exactly {keep} kept per group"
    # a strided view of the scores
    s = _scores(40, 64, dtype, seed=3, kind="ties")
    assert_bits_equal(qsparse.nm_mask(s.cuda().t(), keep, group), qsparse.nm_mask(s.t(), keep, group),
                      f"nm {keep}:{group} transposed")


@needs_cuda
def test_nm_mask_ties_and_nan_by_hand():
    s = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, -0.0, 0.0, -0.0], [float("nan"), 5.0, float("inf"), 5.0]])
    expect = {
        (2, 4): [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]],
        (1, 4): [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]],
        (3, 4): [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]],
    }
    for (keep, group), rows in expect.items():
        got = qsparse.nm_mask(s.cuda(), keep, group).cpu()
        assert got.tolist() == [[bool(v) for v in r] for r in rows], f"{keep}:{group}"


# ---- magnitude masks -----------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_row", [False, True])
def test_magnitude_mask_matches_cpu(per_row, dtype):
    shapes = [(1, 1), (3, 1), (4, 3), (5, 17), (3, 129), (2, 4097), (1, 5000), (300, 1000)]
    for rows, cols in shapes:
        for kind in ("random", "ties", "special"):
            w = _scores(rows, cols, dtype, seed=rows * cols, kind=kind)
            for sparsity in (0.0, 0.1, 0.5, 0.75, 0.999, 1.0):
                m_gpu = qsparse.magnitude_mask(w.cuda(), sparsity, per_row=per_row)
                m_cpu = qsparse.magnitude_mask(w, sparsity, per_row=per_row)
                what = f"magnitude {dtype} {rows}x{cols} {kind} s={sparsity} per_row={per_row}"
                assert_bits_equal(m_gpu, m_cpu, what)
    w = _scores(64, 80, dtype, seed=9, kind="ties")
    assert_bits_equal(qsparse.magnitude_mask(w.cuda()[:, 3:70], 0.4, per_row=per_row),
                      qsparse.magnitude_mask(w[:, 3:70], 0.4, per_row=per_row), "magnitude sliced")


@needs_cuda
def test_magnitude_mask_ties_keep_the_lowest_index():
    w = torch.ones(3, 8, device="cuda")
    m = qsparse.magnitude_mask(w, 0.5)  # prune 12 of 24 equal magnitudes: the last 12 in row-major order go
    assert m.view(-1).tolist() == [True] * 12 + [False] * 12
    m = qsparse.magnitude_mask(w, 0.25, per_row=True)
    assert m.tolist() == [[True] * 6 + [False] * 2] * 3


@needs_cuda
def test_magnitude_mask_large_tensor_with_many_ties():
    """Several million entries with heavy ties: the per-tensor tie ranking runs over many chunks and blocks."""
    g = _gen(17)
    w = torch.randint(-50, 51, (2048, 3000), generator=g).to(torch.bfloat16)
    for sparsity in (0.3, 0.5, 0.9):
        assert_bits_equal(qsparse.magnitude_mask(w.cuda(), sparsity), qsparse.magnitude_mask(w, sparsity),
                          f"magnitude ties s={sparsity}")


# ---- the C entry points (library only) ------------------------------------------------------------------------------


@needs_library
def test_c_entry_points_validate_like_the_cpu_library():
    """Bad calls return the CPU library's status, before any CUDA call: so this runs without a GPU too."""
    gpu, cpu = _lib.cuda().dll, _lib.cpu().dll
    assert gpu.qs_capabilities() & 2 and gpu.qs_abi_version() == cpu.qs_abi_version()
    for s in range(13):
        assert gpu.qs_status_string(s) == cpu.qs_status_string(s)
    buf = ctypes.create_string_buffer(4096)
    p = ctypes.addressof(buf)

    def params(fmt=0, rounding=0, group=0, saturate=-1, reserved=0, compat=0):
        q = _lib.QuantParams()
        q.format, q.rounding, q.group_size, q.saturate, q.reserved[0] = fmt, rounding, group, saturate, reserved
        q.compat = compat
        return ctypes.byref(q)

    bfp8, fp16, lut = formats.get("bfp8").id, formats.get("fp16").id, formats.get("mixed_bitmod4").id
    fq_cases = [
        (None, 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(reserved=1), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(), 0, -1, 4, p, 4, p, 4, None, 0, 0),
        (params(), 0, 2, 4, p, 3, p, 4, None, 0, 0),
        (params(), 0, 2, 4, p, 4, p, 4, p, 2, 1),
        (params(), 3, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=999), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(rounding=4), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(compat=3), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=bfp8, compat=1), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=lut, rounding=1), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=lut, group=-1), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(saturate=2), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=bfp8, group=-2), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(fmt=fp16, group=32), 0, 2, 4, p, 4, p, 4, None, 0, 0),
        (params(), 0, 2, 4, p, 4, p, 4, None, 0, 3),
        (params(), 0, 2, 4, None, 4, p, 4, None, 0, 0),
        (params(), 0, 2, 4, p, 4, p, 4, None, 4, 1),
        (params(), 0, 1 << 62, 1 << 3, p, 8, p, 8, None, 0, 0),
        (params(), 0, 0, 4, None, 4, None, 4, None, 0, 0),  # empty: ok, nothing touched
    ]
    for args in fq_cases:
        expected = cpu.qs_fake_quant_cpu(*args, 1)
        assert gpu.qs_fake_quant_cuda(*args, 0, None) == expected, args
    gc_cases = [(params(fmt=lut, group=4), 0, 2, 8, p, 8, None, 0,
                 0, p, 1), (params(), 0, 2, 8, p, 8, None, 0, 0, p, 1), (params(fmt=lut), 0, 2, 8, p, 8, None, 0, 0,
                 None, 1), (params(fmt=lut), 0, 0, 8, p, 8, None, 0, 0, None, 1)]
    for args in gc_cases:
        assert gpu.qs_group_choice_cuda(*args, 0, None) == cpu.qs_group_choice_cpu(*args, 1), args
    nm_cases = [(0, 2, 8, p, 8, p, 8, 2, 0), (0, 2, 8, p, 8, p, 8, 5, 4), (0, 2, 8, p, 8, p, 8, 2, 257),
                (0, 2, 8, p, 7, p, 8, 2, 4), (4, 2, 8, p, 8, p, 8, 2, 4), (0, 2, 8, None, 8, p, 8, 2, 4),
                (0, -2, 8, p, 8, p, 8, 2, 4), (0, 0, 8, None, 8, None, 8, 2, 4)]
    for args in nm_cases:
        assert gpu.qs_nm_mask_cuda(*args, 0, None) == cpu.qs_nm_mask_cpu(*args, 1), args
    mag_cases = [(0, 2, 8, p, 8, p, 8, 9, 1), (0, 2, 8, p, 8, p, 8, 17, 0), (0, 2, 8, p, 8, p, 8, -1, 0),
                 (0, 2, 8, p, 8, p, 8, 1, 2), (0, 2, 8, p, 8, p, 7, 1, 0), (7, 2, 8, p, 8, p, 8, 1, 0),
                 (0, 2, 8, p, 8, None, 8, 1, 0), (0, 0, 0, None, 0, None, 0, 0, 0)]
    for args in mag_cases:
        assert gpu.qs_magnitude_mask_cuda(*args, 0, None) == cpu.qs_magnitude_mask_cpu(*args, 1), args


# ---- 64-bit sizes ----------------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.large
@pytest.mark.skipif(os.environ.get("QSPARSE_LARGE_TESTS") != "1", reason="large test: set QSPARSE_LARGE_TESTS=1")
def test_tensor_over_2_32_elements():
    """A bf16 tensor of just over 2^32 elements (8 GiB; about 40 GiB of GPU memory in all): its first and last
    groups equal the same groups quantized alone, and stochastic rounding matches the CPU on the rows around
    element 2^32, where the high word of the element index changes inside a group (RELIABILITY.md item 14)."""
    rows, cols = 4294968 + 1, 1000
    assert rows * cols > 1 << 32
    x = torch.randn(rows, cols, device="cuda", generator=torch.Generator("cuda").manual_seed(0)).to(torch.bfloat16)
    # the tensor's extremes in its first and last rows, so that per-tensor statistics equal those of the two rows
    x[0, 0] = -1000.0
    x[-1, -1] = 2000.0
    ends = torch.cat([x[:1], x[-1:]])
    for name, group in (("int4", 128), ("bfp8", None), ("int8_asym", "row"), ("fp8_e4m3", None), ("int6", "tensor")):
        y = qsparse.fake_quant(x, name, group_size=group)
        alone = qsparse.fake_quant(ends, name, group_size=group)
        assert_bits_equal(y[:1], alone[:1], f"{name} group={group} first row")
        assert_bits_equal(y[-1:], alone[1:], f"{name} group={group} last row")
        del y
    # stochastic rounding draws by the 64-bit element index: the first and last rows against the CPU's whole run
    x_cpu = x.cpu()
    y = qsparse.fake_quant(x, "int4_asym", group_size=64, rounding="stochastic", seed=3)
    y_cpu = qsparse.fake_quant(x_cpu, "int4_asym", group_size=64, rounding="stochastic", seed=3)
    assert_bits_equal(y[:1], y_cpu[:1], "stochastic first row")
    boundary = (1 << 32) // cols  # the row holding element 2^32
    assert_bits_equal(y[boundary - 1:boundary + 2], y_cpu[boundary - 1:boundary + 2], "stochastic rows at 2^32")
    assert_bits_equal(y[-1:], y_cpu[-1:], "stochastic last row")
    del y, y_cpu
    m = qsparse.nm_mask(x, 2, 4)
    m_alone = qsparse.nm_mask(ends, 2, 4)
    assert_bits_equal(m[:1], m_alone[:1], "nm first row")
    assert_bits_equal(m[-1:], m_alone[1:], "nm last row")
    del m
    m = qsparse.magnitude_mask(x, 0.5, per_row=True)
    m_alone = qsparse.magnitude_mask(ends, 0.5, per_row=True)
    assert_bits_equal(m[:1], m_alone[:1], "magnitude per row, first row")
    assert_bits_equal(m[-1:], m_alone[1:], "magnitude per row, last row")
    del m
    m_gpu = qsparse.magnitude_mask(x, 0.5)
    m_cpu = qsparse.magnitude_mask(x_cpu, 0.5)
    assert torch.equal(m_gpu.cpu(), m_cpu), "magnitude per tensor over 2^32 elements"


@needs_cuda
def test_mse_observer_on_cuda_tensors_runs_the_cpu_search():
    x = _inputs(8, 256, torch.float32, seed=4)
    for fmt, kw in (("int4", dict(group_size=32)), ("nvfp4", {})):
        y_gpu, y_cpu = _fq_both(x, fmt, observer="mse", **kw)
        assert y_gpu.device.type == "cuda"
        assert_bits_equal(y_gpu, y_cpu, f"{fmt} mse")


# ---- GPTQ / SparseGPT blocks and quantization-parameter records ----------------------------------------------------

GPTQ_CASES = [("int4_asym", 0), ("int4", 32), ("mxfp4", 32), ("nvfp4", 16), ("bfp8", 32), ("fp8_e4m3", 0),
              ("mixed_bitmod4", 32)]


def _gptq_inputs(rows=300, b=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(rows, b, generator=g) * 0.05
    x = torch.randn(4 * b, b, generator=g) @ torch.randn(b, b, generator=g)
    H = x.t() @ x / x.shape[0] + 0.01 * torch.eye(b)
    Hinv1 = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    return W1, Hinv1


@needs_cuda
@pytest.mark.parametrize("name,group", GPTQ_CASES)
def test_quant_qparams_and_fake_quant_qparams_match_cpu(name, group):
    from qsparse import ops

    f = formats.Format.parse(name, group_size=group or "row") if group else formats.Format.parse(name)
    a = qsparse.functional.op_args(f)
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1)) * torch.logspace(-2, 1, 256)
    ts = float(x.abs().amax() / (6 * 448)) if f.effective_scale_mode == "e4m3" else None
    qp_cpu = ops.quant_qparams(x, a[0], a[1], a[4], 0, a[6], tensor_scale=ts)
    qp_gpu = ops.quant_qparams(x.cuda(), a[0], a[1], a[4], 0, a[6], tensor_scale=ts)
    assert torch.equal(qp_gpu.cpu(), qp_cpu)
    for dtype in DTYPES:
        xd = x.to(dtype)
        y_cpu = ops.fake_quant_qparams(xd, qp_cpu, a[0], a[1], a[2], 0, a[3], a[4], a[6], None, 0)
        y_gpu = ops.fake_quant_qparams(xd.cuda(), qp_cpu.cuda(), a[0], a[1], a[2], 0, a[3], a[4], a[6], None, 0)
        assert_bits_equal(y_gpu, y_cpu, f"{name} {dtype}")


@needs_cuda
@pytest.mark.parametrize("name,group", GPTQ_CASES + [(None, 0)])
@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_gptq_block_matches_cpu(name, group, nm):
    from qsparse import ops

    W1, Hinv1 = _gptq_inputs()
    kwargs = {}
    if name is not None:
        f = formats.Format.parse(name, group_size=group or "row") if group else formats.Format.parse(name)
        a = qsparse.functional.op_args(f)
        kwargs = dict(fmt=a[0], group_size=a[1], scale_mode=a[4], compat=a[6], rounding=a[2], saturate=a[3])
        if not f.elementwise:
            qp = ops.quant_qparams(W1, a[0], a[1], a[4], 0, a[6])
            slot = torch.arange(W1.shape[1]) // a[1] if a[1] > 0 else torch.zeros(W1.shape[1], dtype=torch.int64)
            kwargs.update(qparams=qp, slot=slot)
    outs = {}
    for dev in ("cpu", "cuda"):
        kw = {k: (v.to(dev) if isinstance(v, torch.Tensor) and k != "slot" else v) for k, v in kwargs.items()}
        mask = torch.ones(W1.shape, dtype=torch.uint8, device=dev) if nm else None
        W = W1.to(dev).clone()
        if dev == "cuda":  # the column-major layout the CUDA kernel reads coalesced
            W = W.t().contiguous().t()
        loss = torch.zeros(W.shape[0], dtype=torch.float64, device=dev)
        q, e = ops.gptq_block(W, Hinv1.to(dev), mask=mask, keep=nm[0] if nm else 0, group=nm[1] if nm else 0,
                              loss=loss, **kw)
        outs[dev] = (q.cpu(), e.cpu(), W.cpu(), loss.cpu(), None if mask is None else mask.cpu())
    for what, c, g in zip(("Q1", "Err1", "W1", "loss", "mask"), outs["cpu"], outs["cuda"]):
        if c is None:
            continue
        if c.dtype in _INT_VIEW:
            assert_bits_equal(g, c, f"{name} {what}")
        else:
            assert torch.equal(g, c), f"{name} {what}"


@needs_cuda
def test_gptq_on_cuda_matches_cpu():
    from qsparse import algorithms as alg

    g = torch.Generator().manual_seed(2)
    x = torch.randn(1024, 256, generator=g) @ torch.randn(256, 256, generator=g)
    W = torch.randn(128, 256, generator=g) * 0.05
    h = alg.Hessian(256)
    h.add_batch(x.unsqueeze(0))
    cpu = alg.gptq(W, h.H, "int4_asym", group_size=64)
    gpu = alg.gptq(W.cuda(), h.H.cuda(), "int4_asym", group_size=64)
    # the blocks agree bit for bit; the matmuls between blocks (cuBLAS vs MKL) round differently
    assert torch.allclose(gpu.weight.cpu(), cpu.weight, atol=float(cpu.weight.abs().max()) / 7)
    assert abs(gpu.loss - cpu.loss) <= 0.01 * cpu.loss
