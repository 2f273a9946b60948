"""One-shot compression of one layer: GPTQ, SparseGPT, Wanda and magnitude pruning (FORMATS.md sections 9, 11, 12).

Shapes: a weight ``W`` is ``[rows, columns]`` = ``[out_features, in_features]``; the inputs ``x`` that calibrate it
are ``[..., columns]``; a Hessian ``H`` is ``[columns, columns]``. The paper's names are kept: ``H``, ``Hinv`` (the
upper Cholesky factor of H^-1), ``W1`` / ``Q1`` / ``Err1`` (one block of columns), ``blocksize``, ``percdamp``.

Both algorithms run the same loop (IST-DASLab/gptq ``fasterquant``, IST-DASLab/sparsegpt ``fasterprune``): for each
block of columns, one C call (CPU) or one CUDA kernel quantizes or prunes each column in turn and spreads its error
over the block's remaining columns (``qsparse.ops.gptq_block``); the update of the columns after the block is one
matmul. Group parameters are fitted in C on the current weights (``qsparse.ops.quant_qparams``) and returned, so that
the result can be fake-quantized again with exactly the same parameters (:class:`qsparse.BFPLinear` keeps them):

- ``group_size`` with ``static_groups=False`` (default): each group's parameters are fitted when the loop reaches the
  group, on weights that have received every update of the columns before it. The reference fits a group that
  starts inside a 128-column block on weights that miss that block's updates; qsparse ends blocks at group starts
  instead, so that the fit sees them (FORMATS.md section 11). With ``actorder`` the groups are runs of columns in the
  permuted order, and ``LayerResult.g_idx`` maps each column to its group's parameters.
- ``static_groups=True``: every group fitted up front on the original weights (groups of consecutive columns).
- per row / per tensor formats: one fit up front.

Everything is float32 (the loss is accumulated in float64). Dead columns (``diag(H) == 0``) are zeroed in the weight
and given ``H[d, d] = 1``; damping is ``percdamp * mean(diag(H))``, raised tenfold up to three times (with a
warning) when the Cholesky factorization fails.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from . import functional as _functional
from . import ops as _ops
from .formats import Format

logger = logging.getLogger("qsparse")

__all__ = ["Hessian", "InputNorms", "LayerResult", "gptq", "sparsegpt", "wanda_mask", "magnitude_prune",
           "inverse_hessian_factor", "decode_qparams"]


# ---- calibration statistics -------------------------------------------------------------------------------------


def _check_columns(columns) -> None:
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns={columns!r} is not allowed; expected an int >= 1")


def _sequences(x: torch.Tensor, columns: int) -> Tuple[torch.Tensor, int]:
    """(x as [tokens, columns], the number of sequences as the references count them: the leading dimension of a
    3-D input, one for a 2-D input), after checking x's last dimension."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != columns:
        raise ValueError(f"x must be a tensor [..., {columns}], got "
                         f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    x = x.detach()
    n = x.shape[0] if x.dim() >= 3 else 1
    return x.reshape(-1, x.shape[-1]), n


MATMUL_PRECISIONS = ("fp32", "tf32", "bf16")


class Hessian:
    """GPTQ's running ``H = (2 / nsamples) sum x x^T`` over every token of every calibration sequence, with
    ``nsamples`` counted in sequences as the reference's ``add_batch`` counts them. ``dtype``: the accumulator
    (float32, as the reference; float64 for more headroom). ``matmul``: the precision of each batch's ``x^T x``:
    ``fp32`` (default), ``tf32`` (CUDA tensor cores, 10-bit mantissa inputs) or ``bf16`` (inputs rounded to
    bfloat16); the product is accumulated into H in ``dtype`` either way."""

    def __init__(self, columns: int, device=None, dtype: torch.dtype = torch.float32, matmul: str = "fp32"):
        _check_columns(columns)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype={dtype} is not allowed; expected torch.float32 or torch.float64")
        if matmul not in MATMUL_PRECISIONS:
            raise ValueError(f"matmul={matmul!r} is not allowed; expected one of {', '.join(MATMUL_PRECISIONS)}")
        self.H = torch.zeros(columns, columns, dtype=dtype, device=device)
        self.nsamples = 0
        self.matmul = matmul

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        inp, n = _sequences(x, self.H.shape[0])
        self.H *= self.nsamples / (self.nsamples + n)
        self.nsamples += n
        inp = math.sqrt(2 / self.nsamples) * inp.to(self.H.dtype)
        if self.matmul == "bf16":
            b = inp.to(torch.bfloat16)
            self.H += torch.matmul(b.t(), b).to(self.H.dtype)
        elif self.matmul == "tf32" and inp.is_cuda:
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                self.H.addmm_(inp.t(), inp)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
        else:  # fp32 (tf32 on a CPU: no tensor cores, full float32)
            self.H.addmm_(inp.t(), inp)


class InputNorms:
    """Wanda's running ``scaler_row``: the mean over calibration sequences of ``||X_j||^2``, the squared norm of each
    input feature over the tokens (locuslab/wanda ``WrappedGPT.add_batch``)."""

    def __init__(self, columns: int, device=None):
        _check_columns(columns)
        self.x_norm_sq = torch.zeros(columns, dtype=torch.float32, device=device)
        self.nsamples = 0

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        inp, n = _sequences(x, self.x_norm_sq.shape[0])
        self.x_norm_sq *= self.nsamples / (self.nsamples + n)
        self.nsamples += n
        self.x_norm_sq += torch.linalg.vector_norm(inp.float(), dim=0) ** 2 / self.nsamples


# ---- results ----------------------------------------------------------------------------------------------------


@dataclass
class LayerResult:
    """What :func:`gptq` and :func:`sparsegpt` return.

    weight: float32 [rows, columns], on the format's grid (pruned entries exactly 0). mask: bool [rows, columns]
    (True = kept) or None. loss: the reference's reconstruction loss ``sum (w - q)^2 / Hinv[i, i]^2 / 2``.
    qparams: int32 [rows, groups, 4] records (``qsparse.ops.quant_qparams`` layout) with which
    ``fake_quant_qparams(weight)`` gives ``weight`` back, or None without quantization; g_idx: int64 [columns], the
    record of each column (None when groups are consecutive: ``column // group_size``). damp: the damping used;
    dead_columns: how many columns had ``diag(H) == 0``."""

    weight: torch.Tensor
    mask: Optional[torch.Tensor]
    loss: float
    qparams: Optional[torch.Tensor]
    g_idx: Optional[torch.Tensor]
    damp: float
    dead_columns: int

    def scales(self) -> Optional[torch.Tensor]:
        """float32 [rows, groups]: each group's scale (the tensor scale included for NVFP4)."""
        return None if self.qparams is None else decode_qparams(self.qparams)[0]

    def zeros(self) -> Optional[torch.Tensor]:
        """float32 [rows, groups]: each group's zero point (asymmetric formats; else 0)."""
        return None if self.qparams is None else decode_qparams(self.qparams)[1]


def decode_qparams(qparams: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale, zero, mode, choice) of int32 records [..., 4]: float32 scale and zero point, uint8 mode (0 quantize,
    1 zeros, 2 NaN) and lookup-grid choice."""
    q = qparams.contiguous()
    return (q[..., 1].view(torch.float32), q[..., 2].view(torch.float32), (q[..., 0] & 0xFF).to(torch.uint8),
            ((q[..., 0] >> 8) & 0xFF).to(torch.uint8))


# ---- shared steps -----------------------------------------------------------------------------------------------


def _check_weight_and_hessian(W, H) -> None:
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"W must be a 2-D tensor [rows, columns], got {getattr(W, 'shape', type(W).__name__)}")
    if not W.dtype.is_floating_point:
        raise TypeError(f"W has dtype {W.dtype}; expected a floating point weight")
    if not isinstance(H, torch.Tensor) or H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(f"H must be a tensor [{W.shape[1]}, {W.shape[1]}] (columns x columns), got "
                         f"{tuple(getattr(H, 'shape', ())) or type(H).__name__}")
    if H.device != W.device:
        raise ValueError(f"H is on {H.device}, W on {W.device}: they must be on the same device")
    if not H.dtype.is_floating_point:
        raise TypeError(f"H has dtype {H.dtype}; expected a floating point matrix")


def _check_positive(value, param: str, kind=int) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int) and value > 0
    if not ok:
        raise ValueError(f"{param}={value!r} is not allowed; expected a{'' if kind is int else ' number'} "
                         f"{'int ' if kind is int else ''}> 0")


def inverse_hessian_factor(H: torch.Tensor, percdamp: float = 0.01,
                           retries: int = 3) -> Tuple[torch.Tensor, float]:
    """(Hinv, damp): the upper Cholesky factor U of (H + damp I)^-1 (U^T U = (H + damp I)^-1), with
    ``damp = percdamp * mean(diag H)``; when the factorization fails, damp is multiplied by 10 up to ``retries``
    times, with a warning. H is not modified.

    GPTQ computes U as ``cholesky(cholesky_inverse(cholesky(H)), upper=True)``: two factorizations and a full
    inverse. The factor is unique, and with J the reversal of the index order it is also ``J L^-1 J`` for L the
    lower Cholesky factor of ``J H J`` (then ``(J L^-1 J)^T (J L^-1 J) = J (J H J)^-1 J = H^-1``): one
    factorization and one triangular inverse, about 3x less work, the same matrix up to float32 rounding."""
    mean_diag = torch.mean(torch.diag(H)).item()
    diag = torch.arange(H.shape[0], device=H.device)
    damp = percdamp * mean_diag
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    for attempt in range(retries + 1):
        Hd = torch.flip(H, (0, 1))  # J H J, a copy
        Hd[diag, diag] += damp
        L, info = torch.linalg.cholesky_ex(Hd)
        if info.item() == 0:
            Hinv = torch.flip(torch.linalg.solve_triangular(L, eye, upper=False), (0, 1))
            if bool(torch.isfinite(Hinv).all()):
                return Hinv, damp
        if attempt < retries:
            logger.warning("Cholesky factorization failed with damping %.3g; retrying with %.3g", damp, damp * 10)
            damp *= 10
    raise ValueError(f"H is not positive definite even with damping {damp:.3g} (percdamp={percdamp}, "
                     f"{retries} increases): check the calibration inputs for NaN/Inf or raise percdamp")


def _prepare(W, H):
    """float32 copies of W and H, dead columns zeroed (W) and set to 1 on the diagonal (H)."""
    W = W.detach().to(torch.float32, copy=True)
    H = H.detach().to(torch.float32, copy=True)
    dead = torch.diag(H) == 0
    n_dead = int(dead.sum())
    if n_dead:
        idx = torch.nonzero(dead).flatten()
        H[idx, idx] = 1
        W[:, dead] = 0
    return W, H, n_dead


def _format(fmt, group_size) -> Optional[Format]:
    if fmt is None:
        return None
    f = Format.parse(fmt) if not isinstance(fmt, Format) else fmt
    if group_size is not None:
        f = Format.parse(f, group_size=group_size)
    if f.rounding == "stochastic":
        raise ValueError("GPTQ/SparseGPT quantize deterministically: rounding='stochastic' is not allowed")
    return f


class _Quantizer:
    """A format's C arguments and its parameters as the loop needs them."""

    def __init__(self, f: Format, W: torch.Tensor):
        self.f = f
        (self.name, self.group, self.rounding, self.saturate, self.scale_mode, self.observer,
         self.compat) = _functional.op_args(f)
        self.elementwise = f.info.family == "float" and f.effective_scale_mode == "none"
        self.tensor_scale = None
        if f.effective_scale_mode == "e4m3":  # NVFP4: one tensor scale from the whole (dead-zeroed) weight
            tdiv = torch.tensor(float(f.info.max_normal) * 448.0, dtype=torch.float32)
            amax = W.abs().amax().float().cpu()
            if f.compat == "fpquant":  # FP-Quant's global scale is the inverse, 2688 / amax (0 for a zero weight)
                self.tensor_scale = float(tdiv / amax) if float(amax) > 0 else 0.0
            else:
                self.tensor_scale = float(amax / tdiv)

    def fit(self, X: torch.Tensor, group: Optional[int] = None) -> torch.Tensor:
        return _ops.quant_qparams(X, self.name, self.group if group is None else group, self.scale_mode,
                                  self.observer, self.compat, tensor_scale=self.tensor_scale,
                                  saturate=self.saturate, rounding=self.rounding)

    def block_args(self) -> dict:
        return dict(fmt=self.name, group_size=self.group, scale_mode=self.scale_mode, compat=self.compat,
                    rounding=self.rounding, saturate=self.saturate)


def _blocks(columns: int, blocksize: int, group_starts: Optional[int], align: int):
    """Block boundaries: blocks of at most ``blocksize`` columns (a multiple of ``align``) that never cross the start
    of a dynamically fitted group (every ``group_starts`` columns), so that a group is fitted at a block start."""
    b = max(align, blocksize - blocksize % align)
    i1 = 0
    while i1 < columns:
        i2 = min(i1 + b, columns)
        if group_starts:
            next_start = (i1 // group_starts + 1) * group_starts
            i2 = min(i2, next_start)
        yield i1, i2
        i1 = i2


def _run(W, H, quant: Optional[_Quantizer], *, blocksize: int, percdamp: float, actorder: bool, static_groups: bool,
         keep_mask: Optional[torch.Tensor], nm: Optional[Tuple[int, int]], sparsity: Optional[float],
         n_dead: int) -> LayerResult:
    rows, columns = W.shape
    perm = None
    groups = quant is not None and not quant.elementwise and quant.group > 0 and quant.group < columns
    qparams = slot_of = None
    if quant is not None and not quant.elementwise:
        if not groups or static_groups:  # fitted up front on the original weights
            qparams = quant.fit(W)
            if quant.group == _ops.GROUP_TENSOR:
                qparams = qparams.expand(rows, 1, _ops.QPARAM_WORDS).contiguous()
            col_group = (torch.arange(columns) // quant.group) if groups else torch.zeros(columns, dtype=torch.int64)
            slot_of = col_group
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        if keep_mask is not None:
            keep_mask = keep_mask[:, perm]
        if slot_of is not None:
            slot_of = slot_of[perm.cpu()]
    Hinv, damp = inverse_hessian_factor(H, percdamp)
    del H
    dynamic = groups and not static_groups
    if dynamic:
        n_groups = -(-columns // quant.group)
        qparams = torch.zeros(rows, n_groups, _ops.QPARAM_WORDS, dtype=torch.int32, device=W.device)
    mask_u8 = None
    if keep_mask is not None:
        mask_u8 = keep_mask.to(torch.uint8).contiguous()
    elif nm is not None or sparsity is not None:
        mask_u8 = torch.ones(rows, columns, dtype=torch.uint8, device=W.device)
    if W.device.type == "cuda":  # column-major: the kernel's threads (one per row) then read a column coalesced
        W = W.t().contiguous().t()
    Q = torch.zeros_like(W)
    loss = torch.zeros(rows, dtype=torch.float64, device=W.device)
    align = nm[1] if nm is not None else 1
    for i1, i2 in _blocks(columns, blocksize, quant.group if dynamic else None, align):
        W1 = W[:, i1:i2]
        kwargs = {}
        if quant is not None:
            kwargs = quant.block_args()
            if dynamic:
                g = i1 // quant.group
                if i1 % quant.group == 0:  # the group starts here: fit it on the updated weights
                    qparams[:, g: g + 1] = quant.fit(W[:, i1: i1 + quant.group], group=quant.group)
                kwargs.update(qparams=qparams, slot=torch.full((i2 - i1,), g, dtype=torch.int64))
            elif not quant.elementwise:
                kwargs.update(qparams=qparams, slot=slot_of[i1:i2])
        m1 = mask_u8[:, i1:i2] if mask_u8 is not None else None
        if sparsity is not None:  # SparseGPT unstructured: the block's smallest W1^2 / diag(Hinv1)^2
            tmp = W1 ** 2 / (torch.diag(Hinv[i1:i2, i1:i2]).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            m1.copy_(tmp > thresh)
        Q1, Err1 = _ops.gptq_block(W1, Hinv[i1:i2, i1:i2], mask=m1, keep=nm[0] if nm else 0,
                                   group=nm[1] if nm else 0, loss=loss, **kwargs)
        Q[:, i1:i2] = Q1
        W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1)
    mask = mask_u8.bool() if mask_u8 is not None else None
    g_idx = None
    if perm is not None:
        inv = torch.argsort(perm)
        Q = Q[:, inv]
        if mask is not None:
            mask = mask[:, inv]
        if dynamic:  # the group of each original column: runs of the permuted order
            g_idx = (torch.arange(columns, device=perm.device) // quant.group)[inv].cpu()
    return LayerResult(weight=Q, mask=mask, loss=float(loss.sum()) / 2, qparams=qparams, g_idx=g_idx, damp=damp,
                       dead_columns=n_dead)


# ---- the algorithms -----------------------------------------------------------------------------------------------


def gptq(W: torch.Tensor, H: torch.Tensor, fmt: Union[str, Format], *, group_size=None, actorder: bool = False,
         static_groups: bool = False, blocksize: int = 128, percdamp: float = 0.01,
         preserve_mask: Optional[torch.Tensor] = None) -> LayerResult:
    """GPTQ (IST-DASLab/gptq ``fasterquant``) of a weight ``W`` [rows, columns] with Hessian ``H``.

    fmt: any format with a per-group scale (INT variants, scaled minifloats, MX, NVFP4, BFP, lookup grids) or an
    element-wise one; ``group_size`` overrides its group (an int, "row", "tensor"). actorder: columns in descending
    ``diag(H)`` order. static_groups: group parameters fitted up front on the original weights. preserve_mask: a bool
    mask (True = kept) whose pruned entries stay exactly 0 (GPTQ after SparseGPT). Returns a :class:`LayerResult`;
    W and H are not modified."""
    _check_weight_and_hessian(W, H)
    f = _format(fmt, group_size)
    if f is None:
        raise ValueError("gptq needs a format to quantize to (fmt)")
    _check_positive(blocksize, "blocksize")
    _check_positive(percdamp, "percdamp", float)
    for name, v in (("actorder", actorder), ("static_groups", static_groups)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be True or False, got {v!r}")
    if preserve_mask is not None:
        if not isinstance(preserve_mask, torch.Tensor) or preserve_mask.dtype != torch.bool or \
                preserve_mask.shape != W.shape or preserve_mask.device != W.device:
            raise ValueError(f"preserve_mask must be a bool tensor shaped like W {tuple(W.shape)} on {W.device}")
    Wf, Hf, n_dead = _prepare(W, H)
    return _run(Wf, Hf, _Quantizer(f, Wf), blocksize=blocksize, percdamp=percdamp, actorder=actorder,
                static_groups=static_groups, keep_mask=preserve_mask, nm=None, sparsity=None, n_dead=n_dead)


def _nm_args(sparsity, keep, group, prune_n) -> Tuple[Optional[float], Optional[Tuple[int, int]]]:
    """(unstructured fraction, (keep, group)) from the ways users give a sparsity."""
    if prune_n is not None:
        if group is None or keep is not None:
            raise ValueError("prune_n (pruned per group, SparseGPT's prunen) goes with group and without keep")
        keep = group - prune_n
    if keep is not None or group is not None:
        if sparsity is not None:
            raise ValueError("give either sparsity (a fraction) or keep/group (N:M), not both")
        for name, v in (("keep", keep), ("group", group)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name}={v!r} is not allowed; N:M sparsity needs ints keep and group")
        if not 1 <= group <= 256 or not 1 <= keep <= group:
            raise ValueError(f"keep={keep}, group={group} is not allowed; expected 1 <= keep <= group <= 256")
        return None, (keep, group)
    if isinstance(sparsity, str) and ":" in sparsity:
        k, g = sparsity.split(":", 1)
        return _nm_args(None, int(k), int(g), None)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity={sparsity!r} is not allowed; expected a fraction in [0, 1) or 'keep:group'")
    return float(sparsity), None


def sparsegpt(W: torch.Tensor, H: torch.Tensor, *, sparsity=None, keep: Optional[int] = None,
              group: Optional[int] = None, prune_n: Optional[int] = None, fmt=None, group_size=None,
              static_groups: bool = False, blocksize: int = 128, percdamp: float = 0.01) -> LayerResult:
    """SparseGPT (IST-DASLab/sparsegpt ``fasterprune``) of ``W`` with Hessian ``H``: unstructured (``sparsity``, a
    fraction pruned per 128-column block by the smallest ``W1^2 / diag(Hinv1)^2``) or N:M (``keep`` of every
    ``group``, or ``sparsity="2:4"``; ``prune_n`` counts pruned as SparseGPT does), chosen per row on the current
    weights every ``group`` columns; optionally jointly quantized to ``fmt`` (group parameters fitted as in
    :func:`gptq`). Returns a :class:`LayerResult` with the mask (True = kept)."""
    _check_weight_and_hessian(W, H)
    frac, nm = _nm_args(sparsity, keep, group, prune_n)
    _check_positive(blocksize, "blocksize")
    _check_positive(percdamp, "percdamp", float)
    if nm is not None and W.shape[1] % nm[1]:
        raise ValueError(f"N:M sparsity needs the columns ({W.shape[1]}) to be a multiple of group ({nm[1]})")
    f = _format(fmt, group_size)
    Wf, Hf, n_dead = _prepare(W, H)
    return _run(Wf, Hf, _Quantizer(f, Wf) if f is not None else None, blocksize=blocksize, percdamp=percdamp,
                actorder=False, static_groups=static_groups, keep_mask=None, nm=nm, sparsity=frac, n_dead=n_dead)


def wanda_mask(W: torch.Tensor, x_norm_sq: torch.Tensor, *, sparsity=None, keep: Optional[int] = None,
               group: Optional[int] = None, prune_n: Optional[int] = None) -> torch.Tensor:
    """Wanda's mask (locuslab/wanda ``prune_wanda``; True = kept): scores ``|W| * sqrt(x_norm_sq)`` (the
    :class:`InputNorms` of the layer's inputs); unstructured: the lowest ``int(columns * sparsity)`` scores of each
    row pruned; N:M: the top ``keep`` of every ``group``. Ties keep the lowest index (Wanda's stable sort prunes
    it instead)."""
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"W must be a 2-D tensor, got {getattr(W, 'shape', type(W).__name__)}")
    if not isinstance(x_norm_sq, torch.Tensor) or x_norm_sq.shape != (W.shape[1],):
        raise ValueError(f"x_norm_sq must be a tensor [{W.shape[1]}], got "
                         f"{tuple(getattr(x_norm_sq, 'shape', ())) or type(x_norm_sq).__name__}")
    frac, nm = _nm_args(sparsity, keep, group, prune_n)
    scores = W.detach().float().abs() * torch.sqrt(x_norm_sq.to(W.device).float()).reshape(1, -1)
    if nm is not None:
        return _functional.nm_mask(scores, nm[0], nm[1])
    return _functional.magnitude_mask(scores, frac, per_row=True)


def magnitude_prune(W: torch.Tensor, *, sparsity=None, keep: Optional[int] = None, group: Optional[int] = None,
                    prune_n: Optional[int] = None, per_row: bool = False) -> torch.Tensor:
    """The magnitude baseline's mask (True = kept): the top ``keep`` |W| of every ``group``, or the smallest
    ``sparsity`` fraction pruned (per tensor, or per row)."""
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"W must be a 2-D tensor, got {getattr(W, 'shape', type(W).__name__)}")
    frac, nm = _nm_args(sparsity, keep, group, prune_n)
    w = W.detach().float()
    if nm is not None:
        return _functional.nm_mask(w.abs(), nm[0], nm[1])
    return _functional.magnitude_mask(w, frac, per_row=per_row)
