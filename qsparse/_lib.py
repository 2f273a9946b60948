"""The one ctypes loader of qsparse's native libraries.

Two shared libraries implement csrc/include/qsparse.h: the CPU library (the extension module file ``qsparse._C``)
and the optional CUDA library (``libqsparse_cuda.so`` beside it). This module finds them (``QSPARSE_LIB_PATH``, a
directory or the CPU library's path, overrides the package directory), checks the ABI version and the struct
sizes, declares ``argtypes``/``restype`` for every symbol (the C prototype is quoted above each), and turns a
non-zero status into :class:`qsparse.QsparseError` carrying the library's message.

Loading is lazy: ``import qsparse`` never fails because a library is missing; the first call that needs one raises
a QsparseError that says where it looked. A missing CUDA library only disables the CUDA kernels.
Nothing outside ``qsparse/ops.py`` and ``qsparse/formats.py`` (through the functions here) uses this module.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
import threading
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint8, c_uint32, c_uint64, c_void_p, c_double
from typing import Optional

from .errors import QsparseError

ABI_VERSION = 6
HADAMARD_MAX_GROUP = 8192  # QS_HADAMARD_MAX_GROUP
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CUDA_NAME = "libqsparse_cuda.so"


class QuantParams(ctypes.Structure):
    """Mirror of qs_quant_params."""

    _fields_ = [
        ("format", c_int32),
        ("rounding", c_int32),
        ("group_size", c_int64),
        ("seed", c_uint64),
        ("saturate", c_int32),
        ("scale_mode", c_int32),
        ("observer", c_int32),
        ("mse_grid", c_int32),
        ("mse_maxshrink", ctypes.c_float),
        ("mse_norm", ctypes.c_float),
        ("compat", c_int32),
        ("frac_bits", c_int32),  # fixed-point rows: the fraction width, else 0
        ("reserved", c_int64 * 1),
    ]


class FormatInfo(ctypes.Structure):
    """Mirror of qs_format_info."""

    _fields_ = [
        ("name", c_char_p),
        ("id", c_int32),
        ("family", c_int32),
        ("bits", c_int32),
        ("ebits", c_int32),
        ("mbits", c_int32),
        ("bias", c_int32),
        ("emin", c_int32),
        ("emax", c_int32),
        ("scale_kind", c_int32),
        ("flags", c_uint32),
        ("default_group", c_int64),
        ("qmin", c_int32),
        ("qmax", c_int32),
        ("max_normal", c_double),
        ("min_normal", c_double),
        ("min_subnormal", c_double),
        ("default_scale_mode", c_int32),
        ("candidates", c_int32),
    ]


_u8p = POINTER(c_uint8)

# Argument lists that the CPU and CUDA versions share (then num_threads, or device and stream).
_QPARAMS = [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int32,
            c_void_p, c_void_p, c_int64]
_FQ_QPARAMS = [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_void_p,
               c_int64, c_int32, c_void_p, c_int64]
_GPTQ_BLOCK = [POINTER(QuantParams), c_int64, c_int64, c_void_p, c_int64, c_int64, c_void_p, c_int64, c_void_p,
               c_int64, c_void_p, c_void_p, c_int64, c_int64, c_int32, c_int32, c_void_p, c_int64, c_void_p, c_int64,
               c_void_p]

# name -> (restype, argtypes). Shared by both libraries where they export the symbol.
_COMMON = {
    # int32_t qs_abi_version(void);
    "qs_abi_version": (c_int32, []),
    # int64_t qs_sizeof_format_info(void);
    "qs_sizeof_format_info": (c_int64, []),
    # int64_t qs_sizeof_quant_params(void);
    "qs_sizeof_quant_params": (c_int64, []),
    # const char *qs_status_string(int32_t status);
    "qs_status_string": (c_char_p, [c_int32]),
    # uint32_t qs_capabilities(void);
    "qs_capabilities": (c_uint32, []),
}

_CPU = {
    # int32_t qs_format_count(void);
    "qs_format_count": (c_int32, []),
    # int32_t qs_format_get(int32_t index, qs_format_info *out);
    "qs_format_get": (c_int32, [c_int32, POINTER(FormatInfo)]),
    # int32_t qs_fake_quant_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                           const void *x, int64_t x_stride, void *y, int64_t y_stride,
    #                           const uint8_t *mask, int64_t mask_stride, int32_t mask_mode, int32_t num_threads);
    "qs_fake_quant_cpu": (
        c_int32,
        [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64,
         c_void_p, c_int64, c_int32, c_int32],
    ),
    # int32_t qs_format_grid(int32_t format, int32_t candidate, const char **name, float *values, int32_t capacity,
    #                        int32_t *count);
    "qs_format_grid": (
        c_int32, [c_int32, c_int32, POINTER(c_char_p), POINTER(ctypes.c_float), c_int32, POINTER(c_int32)]
    ),
    # int32_t qs_group_choice_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                             const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
    #                             int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t num_threads);
    "qs_group_choice_cpu": (
        c_int32,
        [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int32, c_void_p,
         c_int64, c_int32],
    ),
    # int32_t qs_nm_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
    #                        uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group, int32_t num_threads);
    "qs_nm_mask_cpu": (
        c_int32, [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int32, c_int32, c_int32]
    ),
    # int32_t qs_magnitude_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
    #                               uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row,
    #                               int32_t num_threads);
    "qs_magnitude_mask_cpu": (
        c_int32, [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int64, c_int32, c_int32]
    ),
    # int32_t qs_hadamard_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
    #                         int64_t y_stride, int64_t group, int32_t num_threads);
    "qs_hadamard_cpu": (c_int32, [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int64, c_int32]),
    # int32_t qs_encode_cpu(int32_t format, int32_t saturate, int64_t n, const float *x, uint8_t *codes);
    "qs_encode_cpu": (c_int32, [c_int32, c_int32, c_int64, c_void_p, c_void_p]),
    # int32_t qs_decode_cpu(int32_t format, int64_t n, const uint8_t *codes, float *x);
    "qs_decode_cpu": (c_int32, [c_int32, c_int64, c_void_p, c_void_p]),
    # int32_t qs_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                              const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
    #                              int32_t mask_mode, const float *tensor_scale, int32_t *qp, int64_t qp_stride,
    #                              int32_t num_threads);
    "qs_quant_qparams_cpu": (c_int32, _QPARAMS + [c_int32]),
    # int32_t qs_fake_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                                   const void *x, int64_t x_stride, void *y, int64_t y_stride,
    #                                   const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
    #                                   const int32_t *qp, int64_t qp_stride, int32_t num_threads);
    "qs_fake_quant_qparams_cpu": (c_int32, _FQ_QPARAMS + [c_int32]),
    # int32_t qs_gptq_block_cpu(const qs_quant_params *params, int64_t rows, int64_t bcols, float *w, int64_t w_rs,
    #                           int64_t w_cs, const float *hinv, int64_t h_stride, const int32_t *qp,
    #                           int64_t qp_stride, const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs,
    #                           int32_t keep, int32_t group, float *q, int64_t q_stride, float *err,
    #                           int64_t e_stride, double *loss, int32_t num_threads);
    "qs_gptq_block_cpu": (c_int32, _GPTQ_BLOCK + [c_int32]),
}

_CUDA = {
    # int32_t qs_group_choice_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                              const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
    #                              int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t device,
    #                              void *stream);
    "qs_group_choice_cuda": (
        c_int32,
        [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int32, c_void_p,
         c_int64, c_int32, c_void_p],
    ),
    # int32_t qs_fake_quant_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
    #                            const void *x, int64_t x_stride, void *y, int64_t y_stride,
    #                            const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
    #                            int32_t device, void *stream);
    "qs_fake_quant_cuda": (
        c_int32,
        [POINTER(QuantParams), c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64,
         c_void_p, c_int64, c_int32, c_int32, c_void_p],
    ),
    # int32_t qs_nm_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
    #                         uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group,
    #                         int32_t device, void *stream);
    "qs_nm_mask_cuda": (
        c_int32,
        [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int32, c_int32, c_int32, c_void_p],
    ),
    # int32_t qs_hadamard_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
    #                          int64_t y_stride, int64_t group, int32_t device, void *stream);
    "qs_hadamard_cuda": (
        c_int32, [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int64, c_int32, c_void_p]
    ),
    # int32_t qs_magnitude_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
    #                                uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row,
    #                                int32_t device, void *stream);
    "qs_magnitude_mask_cuda": (
        c_int32,
        [c_int32, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_int64, c_int64, c_int32, c_int32, c_void_p],
    ),
    # qs_quant_qparams_cuda, qs_fake_quant_qparams_cuda, qs_gptq_block_cuda: the CPU prototypes with
    # (int32_t device, void *stream) in place of num_threads.
    "qs_quant_qparams_cuda": (c_int32, _QPARAMS + [c_int32, c_void_p]),
    "qs_fake_quant_qparams_cuda": (c_int32, _FQ_QPARAMS + [c_int32, c_void_p]),
    "qs_gptq_block_cuda": (c_int32, _GPTQ_BLOCK + [c_int32, c_void_p]),
}


class _Library:
    """A loaded library with its symbols declared."""

    def __init__(self, path: str, symbols: dict):
        self.path = path
        self.dll = ctypes.CDLL(path)
        for name, (restype, argtypes) in {**_COMMON, **symbols}.items():
            try:
                fn = getattr(self.dll, name)
            except AttributeError:
                raise QsparseError(f"{path} does not export {name}: it is not a qsparse library of this version")
            fn.restype = restype
            fn.argtypes = argtypes
        abi = self.dll.qs_abi_version()
        if abi != ABI_VERSION:
            raise QsparseError(
                f"{path} has ABI version {abi}, this qsparse expects {ABI_VERSION}: rebuild it "
                f"(pip install --force-reinstall --no-build-isolation .) or point QSPARSE_LIB_PATH elsewhere"
            )
        for cname, struct in (("qs_sizeof_quant_params", QuantParams), ("qs_sizeof_format_info", FormatInfo)):
            size = getattr(self.dll, cname)()
            if size != ctypes.sizeof(struct):
                raise QsparseError(f"{path}: {cname}() = {size}, ctypes mirror has {ctypes.sizeof(struct)}")

    def call(self, name: str, *args) -> None:
        status = getattr(self.dll, name)(*args)
        if status != 0:
            msg = self.dll.qs_status_string(status).decode()
            raise QsparseError(f"{name} failed with status {status}: {msg}")


_lock = threading.Lock()
_cpu: Optional[_Library] = None
_cpu_error: Optional[str] = None
_cuda: Optional[_Library] = None
_cuda_error: Optional[str] = None


def _search_dirs() -> list:
    override = os.environ.get("QSPARSE_LIB_PATH")
    if override:
        return [override if os.path.isdir(override) else os.path.dirname(os.path.abspath(override))]
    return [_PACKAGE_DIR]


def _cpu_candidates() -> list:
    override = os.environ.get("QSPARSE_LIB_PATH")
    if override and os.path.isfile(override):
        return [override]
    found = []
    for d in _search_dirs():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            p = os.path.join(d, "_C" + suffix)
            if os.path.isfile(p):
                found.append(p)
    return found


def cpu() -> _Library:
    """The CPU library, loaded on first use."""
    global _cpu, _cpu_error
    if _cpu is not None:
        return _cpu
    with _lock:
        if _cpu is None:
            candidates = _cpu_candidates()
            if not candidates:
                raise QsparseError(
                    "qsparse's CPU library was not found in "
                    f"{_search_dirs()} (looked for _C{importlib.machinery.EXTENSION_SUFFIXES}). "
                    "Build it with `pip install .` (or `pip install -e .` for a checkout), "
                    "or set QSPARSE_LIB_PATH to the directory that holds it."
                )
            _cpu = _Library(candidates[0], _CPU)
    return _cpu


def cuda() -> _Library:
    """The CUDA library, loaded on first use; raises QsparseError explaining why it is unavailable."""
    global _cuda, _cuda_error
    if _cuda is not None:
        return _cuda
    with _lock:
        if _cuda is None:
            if _cuda_error is not None:
                raise QsparseError(_cuda_error)
            paths = [os.path.join(d, _CUDA_NAME) for d in _search_dirs()]
            path = next((p for p in paths if os.path.isfile(p)), None)
            if path is None:
                _cuda_error = (
                    f"qsparse's CUDA library ({_CUDA_NAME}) was not found in {_search_dirs()}: qsparse was built "
                    "without nvcc. Reinstall on a machine with the CUDA toolkit (QSPARSE_CUDA=1 pip install .) "
                    "to run qsparse ops on CUDA tensors."
                )
                raise QsparseError(_cuda_error)
            try:
                _cuda = _Library(path, _CUDA)
            except OSError as e:
                _cuda_error = f"qsparse's CUDA library {path} could not be loaded: {e}"
                raise QsparseError(_cuda_error) from e
    return _cuda


def cuda_available() -> bool:
    try:
        cuda()
    except QsparseError:
        return False
    return True


def format_table() -> list:
    """Every row of the C format table, as dicts of qs_format_info's fields."""
    lib = cpu()
    rows = []
    for i in range(lib.dll.qs_format_count()):
        info = FormatInfo()
        lib.call("qs_format_get", i, ctypes.byref(info))
        row = {name: getattr(info, name) for name, _ in FormatInfo._fields_}
        row["name"] = row["name"].decode()
        rows.append(row)
    return rows


def format_grid(format_id: int, candidate: int) -> tuple:
    """(name, values) of grid `candidate` of a lookup-grid format (qs_format_grid)."""
    name = c_char_p()
    count = c_int32()
    values = (ctypes.c_float * 64)()
    cpu().call("qs_format_grid", format_id, candidate, ctypes.byref(name), values, 64, ctypes.byref(count))
    return name.value.decode(), tuple(float(v) for v in values[:count.value])


def decode_codes(format_id: int, codes: bytes) -> list:
    """The values of element codes of a format with codes (qs_decode_cpu), as Python floats."""
    n = len(codes)
    src = (ctypes.c_uint8 * max(n, 1)).from_buffer_copy(codes or b"\0")
    out = (ctypes.c_float * max(n, 1))()
    cpu().call("qs_decode_cpu", format_id, n, src, out)
    return [float(v) for v in out[:n]]


def capabilities() -> int:
    return int(cpu().dll.qs_capabilities())


__all__ = ["ABI_VERSION", "QuantParams", "FormatInfo", "cpu", "cuda", "cuda_available", "format_table",
           "format_grid", "decode_codes", "capabilities", "QsparseError"]
