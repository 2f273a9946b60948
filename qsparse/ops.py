"""torch.library custom ops over the native kernels (namespace ``qsparse``).

Ops (schemas are inferred from the annotations below):

- ``qsparse::fake_quant(x, fmt, group_size, rounding, seed, saturate, scale_mode, observer, compat, mask,
  mask_mode) -> Tensor``
  ``fmt`` a canonical format name; ``group_size`` > 0, 0 (per row) or -1 (per tensor); ``rounding`` a qs_rounding
  (index into formats.ROUNDINGS: 0 = RNE, 1 = stochastic, 2 = half away, 3 = ties lower); ``seed`` the stochastic key (int64, reinterpreted as uint64); ``saturate`` -1 (format default),
  0 or 1; ``scale_mode`` a qs_scale_mode (index into formats.SCALE_MODES, 0 = the format's default);
  ``observer`` 0 = min/max, 1 = mse (GPTQ's shrink search; on a CUDA tensor it runs on the CPU);
  ``compat`` a qs_compat (formats.COMPAT_PROFILES' codes: 0 none, 1 bitmod, 2 microxcaling, 3 llm-mixed-q, 4 fpquant);
  ``mask`` an optional bool tensor shaped like x, applied before (``mask_mode`` 1) or after (2)
  quantization. Output: a new contiguous tensor, x's shape and dtype. Backward: straight-through (the gradient
  passes unchanged; masked positions get zero).
- ``qsparse::fake_quant_qparams(x, qparams, fmt, group_size, rounding, seed, saturate, scale_mode, compat, mask,
  mask_mode) -> Tensor``: fake_quant with every group's parameters read from int32 records ``qparams``
  ([rows, groups, 4], as ``quant_qparams`` fits them) instead of fitted; backward straight-through.
- ``quant_qparams`` (the records of a fake quantization) and ``gptq_block`` (one GPTQ / SparseGPT block) are plain
  functions over the C calls, not ops: they return metadata or update their inputs in place, without gradients.
- ``qsparse::nm_mask(scores, keep, group) -> Tensor(bool)``
- ``qsparse::magnitude_mask(w, sparsity, per_row) -> Tensor(bool)``
- ``qsparse::hadamard(x, group) -> Tensor``: the normalized Walsh-Hadamard transform of every group of ``group``
  consecutive elements of the last dimension (a power of two dividing it); backward: the same transform.

Each op has a CPU kernel, a CUDA kernel (the current stream and device passed into C), and a fake kernel. The ops
take any strides: a tensor whose last dimension is contiguous and whose rows are evenly spaced is passed to C as
is; anything else is copied first. Arguments are validated by the public functions in qsparse/functional.py; the
C library checks them again and its status becomes a QsparseError.
"""
from __future__ import annotations

import ctypes
from typing import Optional, Tuple

import torch

from . import _lib
from . import formats as _formats

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
MASK_NONE, MASK_BEFORE, MASK_AFTER = 0, 1, 2
_MAX_THREADS = 4096  # QS_MAX_THREADS: more threads than this gain nothing
GROUP_ROW, GROUP_TENSOR = 0, -1


def dtype_code(dtype: torch.dtype) -> int:
    code = _DTYPE_CODES.get(dtype)
    if code is None:
        raise TypeError(f"qsparse kernels take float32, float16 or bfloat16 tensors, got {dtype}")
    return code


def _rows_view(t: torch.Tensor) -> Tuple[torch.Tensor, int, int, int]:
    """(view, rows, cols, row_stride): t as a 2-D row-major view with a contiguous last dimension, copying only
    when t's layout cannot be described that way."""
    cols = t.shape[-1] if t.dim() > 0 else 1
    rows = t.numel() // cols if cols > 0 else 0
    v = t.reshape(rows, cols)
    if (cols > 1 and v.stride(1) != 1) or (rows > 1 and v.stride(0) < cols):
        v = v.contiguous()
    stride = v.stride(0) if rows > 1 else cols
    return v, rows, cols, max(stride, cols)


def _params(fmt: str, group_size: int, rounding: int, seed: int, saturate: int,
            scale_mode: int = 0, observer: int = 0, compat: int = 0) -> _lib.QuantParams:
    p = _lib.QuantParams()
    p.scale_mode = scale_mode
    p.observer = observer
    p.compat = compat
    info = _formats.get(fmt)
    p.format = info.id
    p.frac_bits = info.frac_bits  # fixed point: the fraction width (one table row per width)
    p.rounding = rounding
    p.group_size = group_size
    p.seed = seed & 0xFFFFFFFFFFFFFFFF
    p.saturate = saturate
    return p


def _exec_args(t: torch.Tensor):
    """Trailing execution arguments of a C call: the thread count (CPU) or device index and stream (CUDA)."""
    if t.device.type == "cuda":
        return (t.device.index, ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream))
    return (min(torch.get_num_threads(), _MAX_THREADS),)


def _library_for(t: torch.Tensor):
    return _lib.cuda() if t.device.type == "cuda" else _lib.cpu()


def _suffix(t: torch.Tensor) -> str:
    return "cuda" if t.device.type == "cuda" else "cpu"


# ---- fake_quant --------------------------------------------------------------------------------------------------


@torch.library.custom_op("qsparse::fake_quant", mutates_args=())
def fake_quant(x: torch.Tensor, fmt: str, group_size: int, rounding: int, seed: int, saturate: int, scale_mode: int,
               observer: int, compat: int, mask: Optional[torch.Tensor], mask_mode: int) -> torch.Tensor:
    if observer and x.device.type == "cuda":  # the mse search has no CUDA kernel yet: the CPU's, same bits
        m = mask.cpu() if mask is not None else None
        return fake_quant(x.cpu(), fmt, group_size, rounding, seed, saturate, scale_mode, observer, compat, m,
                          mask_mode).to(x.device)
    lib = _library_for(x)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    xv, rows, cols, xs = _rows_view(x)
    params = _params(fmt, group_size, rounding, seed, saturate, scale_mode, observer, compat)
    mptr, ms = None, 0
    if mask is not None and mask_mode != MASK_NONE:
        mv, _, _, ms = _rows_view(mask)
        mptr = mv.data_ptr()
    lib.call(f"qs_fake_quant_{_suffix(x)}", ctypes.byref(params), dtype_code(x.dtype), rows, cols, xv.data_ptr(), xs,
             out.data_ptr(), cols, mptr, ms, mask_mode if mptr else MASK_NONE, *_exec_args(x))
    return out


@fake_quant.register_fake
def _(x, fmt, group_size, rounding, seed, saturate, scale_mode, observer, compat, mask, mask_mode):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _fake_quant_setup(ctx, inputs, output):
    mask, mask_mode = inputs[9], inputs[10]
    ctx.masked = mask is not None and mask_mode != MASK_NONE
    if ctx.masked:
        ctx.save_for_backward(mask)


def _fake_quant_backward(ctx, grad):
    if ctx.masked:
        (mask,) = ctx.saved_tensors
        grad = torch.where(mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
    return grad, None, None, None, None, None, None, None, None, None, None


torch.library.register_autograd("qsparse::fake_quant", _fake_quant_backward, setup_context=_fake_quant_setup)


def group_choice(x: torch.Tensor, fmt: str, group_size: int, scale_mode: int, compat: int,
                 mask: Optional[torch.Tensor], mask_mode: int) -> torch.Tensor:
    """uint8 [rows, groups per row]: the grid each group of a lookup-grid format takes (qs_group_choice_*), rows
    being x's leading dimensions flattened. Not an op: metadata, no gradient."""
    lib = _library_for(x)
    cols = x.shape[-1] if x.dim() > 0 else 1
    rows = x.numel() // cols if cols else 0
    groups = -(-cols // group_size) if 0 < group_size < cols else 1
    out = torch.empty((rows, groups), dtype=torch.uint8, device=x.device)
    if x.numel() == 0:
        return out
    xv, rows, cols, xs = _rows_view(x)
    params = _params(fmt, group_size, 0, 0, -1, scale_mode, 0, compat)
    mptr, ms = None, 0
    if mask is not None and mask_mode != MASK_NONE:
        mv, _, _, ms = _rows_view(mask)
        mptr = mv.data_ptr()
    lib.call(f"qs_group_choice_{_suffix(x)}", ctypes.byref(params), dtype_code(x.dtype), rows, cols, xv.data_ptr(),
             xs, mptr, ms, mask_mode if mptr else MASK_NONE, out.data_ptr(), groups, *_exec_args(x))
    return out


# ---- quantization parameters (records) --------------------------------------------------------------------------

QPARAM_WORDS = 4  # QS_QPARAM_WORDS: int32 words per group record (see csrc/include/qsparse.h)


def qparam_groups(cols: int, group_size: int) -> int:
    """Records per row: ceil(cols / group_size) for groups, 1 per row (group_size 0) or per tensor (-1)."""
    return -(-cols // group_size) if 0 < group_size < cols else 1


def quant_qparams(x: torch.Tensor, fmt: str, group_size: int, scale_mode: int = 0, observer: int = 0,
                  compat: int = 0, mask: Optional[torch.Tensor] = None, mask_mode: int = MASK_NONE,
                  tensor_scale: Optional[float] = None, saturate: int = -1,
                  rounding: int = 0) -> torch.Tensor:
    """int32 [rows, groups, 4]: the record of every group of the fake quantization of x (qs_quant_qparams_*), rows
    being x's leading dimensions flattened ([1, 1, 4] per tensor). ``tensor_scale``: the NVFP4 tensor scale to fit
    under instead of x's own. Not an op: metadata, no gradient. On CUDA, what the CUDA library does not fit (the mse
    search, lookup grids, per-tensor calls) is fitted by the CPU library: the same records."""
    cols = x.shape[-1] if x.dim() > 0 else 1
    rows = x.numel() // cols if cols else 0
    groups = qparam_groups(cols, group_size)
    shape = (1, 1, QPARAM_WORDS) if group_size == GROUP_TENSOR else (rows, groups, QPARAM_WORDS)
    if x.device.type == "cuda":
        fmt_info = _formats.get(fmt)
        cuda_fits = (observer == 0 and group_size != GROUP_TENSOR and fmt_info.family != "lut" and compat != 1
                     and (tensor_scale is not None or not _needs_tensor_scale(fmt_info, scale_mode)))
        if not cuda_fits:
            m = mask.cpu() if mask is not None else None
            return quant_qparams(x.cpu(), fmt, group_size, scale_mode, observer, compat, m, mask_mode,
                                 tensor_scale, saturate, rounding).to(x.device)
    out = torch.zeros(shape, dtype=torch.int32, device=x.device)
    if x.numel() == 0:
        return out
    xv, rows, cols, xs = _rows_view(x)
    params = _params(fmt, group_size, rounding, 0, saturate, scale_mode, observer, compat)
    mptr, ms = None, 0
    if mask is not None and mask_mode != MASK_NONE:
        mv, _, _, ms = _rows_view(mask)
        mptr = mv.data_ptr()
    ts = ctypes.byref(ctypes.c_float(tensor_scale)) if tensor_scale is not None else None
    _library_for(x).call(f"qs_quant_qparams_{_suffix(x)}", ctypes.byref(params), dtype_code(x.dtype), rows, cols,
                         xv.data_ptr(), xs, mptr, ms, mask_mode if mptr else MASK_NONE, ts, out.data_ptr(),
                         shape[1] * QPARAM_WORDS, *_exec_args(x))
    return out


def _needs_tensor_scale(info, scale_mode: int) -> bool:
    mode = _formats.SCALE_MODES[scale_mode] if scale_mode else info.default_scale_mode
    return mode == "e4m3"


@torch.library.custom_op("qsparse::fake_quant_qparams", mutates_args=())
def fake_quant_qparams(x: torch.Tensor, qparams: torch.Tensor, fmt: str, group_size: int, rounding: int, seed: int,
                       saturate: int, scale_mode: int, compat: int, mask: Optional[torch.Tensor],
                       mask_mode: int) -> torch.Tensor:
    """fake_quant with every group's parameters taken from ``qparams`` (quant_qparams' layout) instead of fitted."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    xv, rows, cols, xs = _rows_view(x)
    qp = qparams.contiguous()
    params = _params(fmt, group_size, rounding, seed, saturate, scale_mode, 0, compat)
    mptr, ms = None, 0
    if mask is not None and mask_mode != MASK_NONE:
        mv, _, _, ms = _rows_view(mask)
        mptr = mv.data_ptr()
    _library_for(x).call(f"qs_fake_quant_qparams_{_suffix(x)}", ctypes.byref(params), dtype_code(x.dtype), rows, cols,
                         xv.data_ptr(), xs, out.data_ptr(), cols, mptr, ms, mask_mode if mptr else MASK_NONE,
                         qp.data_ptr(), qp.shape[1] * QPARAM_WORDS, *_exec_args(x))
    return out


@fake_quant_qparams.register_fake
def _(x, qparams, fmt, group_size, rounding, seed, saturate, scale_mode, compat, mask, mask_mode):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


# the same arguments at the same positions as fake_quant's (mask 9, mask_mode 10): the same straight-through rule
torch.library.register_autograd("qsparse::fake_quant_qparams", _fake_quant_backward, setup_context=_fake_quant_setup)


def gptq_block(W1: torch.Tensor, Hinv1: torch.Tensor, *, fmt: Optional[str] = None, group_size: int = 0,
               scale_mode: int = 0, compat: int = 0, rounding: int = 0, saturate: int = -1,
               qparams: Optional[torch.Tensor] = None, slot: Optional[torch.Tensor] = None,
               mask: Optional[torch.Tensor] = None, keep: int = 0, group: int = 0,
               loss: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One GPTQ / SparseGPT block (qs_gptq_block_*): W1 (float32 [rows, b], updated in place), Hinv1 (float32
    [b, b], upper), records ``qparams`` [rows, groups, 4] with ``slot`` (int64 [b], the record of each column),
    ``mask`` (uint8 [rows, b]: read, or written with keep > 0), ``loss`` (float64 [rows], accumulated). Returns
    (Q1, Err1). Arguments are validated by qsparse.algorithms; the C library checks them again."""
    rows, b = W1.shape
    Q1 = torch.empty((rows, b), dtype=torch.float32, device=W1.device)
    Err1 = torch.empty((rows, b), dtype=torch.float32, device=W1.device)
    if loss is None:
        loss = torch.zeros(rows, dtype=torch.float64, device=W1.device)
    h = Hinv1 if Hinv1.stride(1) == 1 else Hinv1.contiguous()
    params = _params(fmt, group_size, rounding, 0, saturate, scale_mode, 0, compat) if fmt is not None else None
    qptr, qstride, sptr = None, 0, None
    if qparams is not None:
        qp = qparams if qparams.is_contiguous() else qparams.contiguous()
        qptr, qstride = qp.data_ptr(), qp.shape[1] * QPARAM_WORDS
        sl = slot.to("cpu", torch.int64).contiguous()
        sptr = sl.data_ptr()
    mptr, mrs, mcs = None, 0, 0
    if mask is not None:
        mptr, mrs, mcs = mask.data_ptr(), mask.stride(0), mask.stride(1)
    _library_for(W1).call(f"qs_gptq_block_{_suffix(W1)}", ctypes.byref(params) if params is not None else None, rows,
                          b, W1.data_ptr(), W1.stride(0), W1.stride(1), h.data_ptr(), h.stride(0), qptr, qstride,
                          sptr, mptr, mrs, mcs, keep, group, Q1.data_ptr(), b, Err1.data_ptr(), b, loss.data_ptr(),
                          *_exec_args(W1))
    return Q1, Err1


# ---- masks -------------------------------------------------------------------------------------------------------


@torch.library.custom_op("qsparse::nm_mask", mutates_args=())
def nm_mask(scores: torch.Tensor, keep: int, group: int) -> torch.Tensor:
    lib = _library_for(scores)
    out = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    if scores.numel() == 0:
        return out
    sv, rows, cols, ss = _rows_view(scores)
    lib.call(f"qs_nm_mask_{_suffix(scores)}", dtype_code(scores.dtype), rows, cols, sv.data_ptr(), ss,
             out.data_ptr(), cols, keep, group, *_exec_args(scores))
    return out


@nm_mask.register_fake
def _(scores, keep, group):
    return torch.empty(scores.shape, dtype=torch.bool, device=scores.device)


def prune_count(n: int, sparsity: float) -> int:
    """Entries pruned for a fraction: floor(n * sparsity), as Wanda and the HBFP fork compute it."""
    return int(n * sparsity)


@torch.library.custom_op("qsparse::magnitude_mask", mutates_args=())
def magnitude_mask(w: torch.Tensor, sparsity: float, per_row: bool) -> torch.Tensor:
    lib = _library_for(w)
    out = torch.empty(w.shape, dtype=torch.bool, device=w.device)
    if w.numel() == 0:
        return out
    wv, rows, cols, ws = _rows_view(w)
    prune = prune_count(cols if per_row else rows * cols, sparsity)
    lib.call(f"qs_magnitude_mask_{_suffix(w)}", dtype_code(w.dtype), rows, cols, wv.data_ptr(), ws,
             out.data_ptr(), cols, prune, int(per_row), *_exec_args(w))
    return out


@magnitude_mask.register_fake
def _(w, sparsity, per_row):
    return torch.empty(w.shape, dtype=torch.bool, device=w.device)


# ---- Hadamard transform --------------------------------------------------------------------------------------------


@torch.library.custom_op("qsparse::hadamard", mutates_args=())
def hadamard(x: torch.Tensor, group: int) -> torch.Tensor:
    lib = _library_for(x)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    xv, rows, cols, xs = _rows_view(x)
    lib.call(f"qs_hadamard_{_suffix(x)}", dtype_code(x.dtype), rows, cols, xv.data_ptr(), xs, out.data_ptr(), cols,
             group, *_exec_args(x))
    return out


@hadamard.register_fake
def _(x, group):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _hadamard_setup(ctx, inputs, output):
    ctx.group = inputs[1]


def _hadamard_backward(ctx, grad):
    # the normalized transform is symmetric: its Jacobian's transpose is itself
    return hadamard(grad.contiguous(), ctx.group), None


torch.library.register_autograd("qsparse::hadamard", _hadamard_backward, setup_context=_hadamard_setup)


# ---- element codes (CPU utilities, not ops) ----------------------------------------------------------------------


def encode(x: torch.Tensor, fmt: str, saturate: int = -1) -> torch.Tensor:
    """uint8 codes of a float32 CPU tensor in a format with element codes (round to nearest even)."""
    xc = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.uint8)
    _lib.cpu().call("qs_encode_cpu", _formats.get(fmt).id, saturate, xc.numel(), xc.data_ptr(), out.data_ptr())
    return out


def decode(codes: torch.Tensor, fmt: str) -> torch.Tensor:
    """float32 values of uint8 codes (CPU)."""
    cc = codes.contiguous()
    out = torch.empty(codes.shape, dtype=torch.float32)
    _lib.cpu().call("qs_decode_cpu", _formats.get(fmt).id, cc.numel(), cc.data_ptr(), out.data_ptr())
    return out


__all__ = ["fake_quant", "fake_quant_qparams", "quant_qparams", "gptq_block", "qparam_groups", "QPARAM_WORDS",
           "group_choice", "nm_mask", "magnitude_mask", "encode", "decode", "prune_count", "dtype_code",
           "MASK_NONE", "MASK_BEFORE", "MASK_AFTER", "GROUP_ROW", "GROUP_TENSOR"]
