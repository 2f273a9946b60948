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
    p.format = _formats.get(fmt).id
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


__all__ = ["fake_quant", "group_choice", "nm_mask", "magnitude_mask", "encode", "decode", "prune_count", "dtype_code",
           "MASK_NONE", "MASK_BEFORE", "MASK_AFTER", "GROUP_ROW", "GROUP_TENSOR"]
