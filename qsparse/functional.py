"""Public functions: fake quantization and sparsity masks.

Every argument is checked here, before any native call, and a bad one raises ValueError or TypeError naming the
parameter, the value and what is allowed. Inputs may be any strided view of float32, float16 or bfloat16 on the CPU
or a CUDA GPU; results are new contiguous tensors.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import _lib
from . import formats as _formats
from . import ops as _ops
from .formats import Format

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_SEED_LIMIT = 1 << 64


def _check_tensor(x, param: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{param} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{param} has dtype {x.dtype}; qsparse kernels take torch.float32, torch.float16 or torch.bfloat16 "
            f"(cast with {param}.float() first; float64 is not cast silently because the cast itself rounds)"
        )
    if x.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{param} is on device {x.device}; qsparse runs on 'cpu' and 'cuda'")
    if x.is_sparse or x.layout != torch.strided:
        raise TypeError(f"{param} must be a dense (strided) tensor, got layout {x.layout}")
    return x


def _check_int(value, param: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{param} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{param}={value} is out of range; allowed {lo} <= {param} <= {hi}")
    return value


def _group_code(info: _formats.FormatInfo, group_size) -> int:
    if group_size is None:
        return info.default_group if info.default_group is not None else _ops.GROUP_ROW
    if group_size == "row":
        return _ops.GROUP_ROW
    if group_size == "tensor":
        return _ops.GROUP_TENSOR
    return group_size


def op_args(f: Format) -> Tuple[str, int, int, int, int, int, int]:
    """The arguments of ``qsparse::fake_quant`` that a Format fixes: (name, group code, rounding code,
    saturate code, scale mode code, observer code, compat code). Modules compute this once, so that their forward
    does no parsing."""
    info = f.info
    mode = f.effective_scale_mode
    return (info.name, _group_code(info, f.group_size), _formats.ROUNDINGS.index(f.rounding),
            -1 if f.saturate is None else int(f.saturate), _formats.SCALE_MODES.index(mode),
            _formats.OBSERVERS.index(f.observer), f.compat_code)


def _mask_mode(x: torch.Tensor, mask: Optional[torch.Tensor], sparsify_first: bool) -> int:
    """The op's mask mode for an optional bool mask of x's shape and device (validated here)."""
    if mask is None:
        return _ops.MASK_NONE
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a torch.bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != x.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, x has shape {tuple(x.shape)}: they must match")
    if mask.device != x.device:
        raise ValueError(f"mask is on {mask.device}, x is on {x.device}: they must be on the same device")
    return _ops.MASK_BEFORE if sparsify_first else _ops.MASK_AFTER


def draw_seed() -> int:
    """A stochastic-rounding key from torch's default generator (reproducible under torch.manual_seed)."""
    return int(torch.randint(0, 2**62, (1,)).item())


def resolve_format(fmt, group_size=None, rounding=None, saturate=None, scale_mode=None, observer=None,
                   compat=None) -> Format:
    """A Format from a name or Format plus call-level overrides (None keeps the Format's own setting)."""
    if not isinstance(fmt, (str, Format)):
        raise TypeError(f"fmt must be a format name or a qsparse.Format, got {type(fmt).__name__}")
    overrides = {k: v for k, v in (("group_size", group_size), ("rounding", rounding), ("saturate", saturate),
                                   ("scale_mode", scale_mode), ("observer", observer), ("compat", compat))
                 if v is not None}
    return Format.parse(fmt, **overrides)


def fake_quant(
    x: torch.Tensor,
    fmt: Union[str, Format],
    *,
    group_size: Union[int, str, None] = None,
    rounding: Optional[str] = None,
    seed: Optional[int] = None,
    saturate: Optional[bool] = None,
    scale_mode: Optional[str] = None,
    observer: Optional[str] = None,
    compat: Optional[str] = None,
    mask: Optional[torch.Tensor] = None,
    sparsify_first: bool = True,
    transform: Optional[str] = None,
    transform_group: int = 128,
    block_shape: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Quantize ``x`` to a number format and back (same shape and dtype), in groups along the last dimension.

    fmt: a format name (``"int4"``, ``"int4_asym"``, ``"bfp8"``, ``"fp8_e4m3"``, see :func:`qsparse.formats.names`)
        or a :class:`qsparse.Format`.
    group_size: None = the format's default (per row for INT, the block size for BFP, none for element-wise
        formats); an int G = groups of G consecutive elements of the last dimension (a partial last group is a
        group of its own); ``"row"``; ``"tensor"`` = one group for the whole tensor.
    rounding: ``"rne"`` (default), ``"stochastic"``, ``"half_away"`` (``sign(v) * floor(|v| + 0.5)``, microxcaling's
        "nearest") or ``"ties_lower"`` (a tie goes to the lower value, BitMoD's convention). Stochastic rounding is
        keyed by ``seed`` and the element's index, so it gives the same result on any thread count and on CPU and
        GPU. Without a seed, one is drawn from torch's default generator (reproducible under
        ``torch.manual_seed``).
    saturate: element-wise use only: None = the format's default (fp8 saturates, fp16/bf16 overflow to Inf).
    scale_mode: how a block-scaled format finds each group's scale (``qsparse.formats.SCALE_MODES``): None = the
        format's default (``floor`` for the MX formats, ``e4m3`` for nvfp4; an element format such as
        ``fp4_e2m1`` is element-wise without a group size and takes a binary32 ``amax`` scale with one);
        ``floor``/``ceil``/``even``/``rceil`` are E8M0 scales (OCP MX, torchao's ScaleCalculationMode),
        ``e4m3`` NVFP4's E4M3 block scale under a binary32 tensor scale, ``e4m3_block`` the same without the
        tensor scale, ``amax`` a binary32 scale amax / max of the element grid.
    observer: ``"minmax"`` (default) or ``"mse"``: GPTQ's search over shrunk ranges (p = 1, 0.99, ..., 0.21 of the
        min/max range, error sum |q - x|^2.4) per group, for INT formats and scales that are not powers of two
        (``amax``, ``e4m3``, ``e4m3_block``). About 80 quantizations per group: meant for weights.
    compat: None (qsparse's definitions), or a profile reproducing one source system bit for bit where the sources
        disagree (``qsparse.formats.COMPAT_PROFILES``): ``"bitmod"`` (BitMoD's binary16 arithmetic and clamped
        scales for int{b}, int{b}_asym, minifloats with a group scale and the ANT/BitMoD grids),
        ``"microxcaling"`` (its binary32-log2 E8M0 scales and half-away rounding), ``"torchao"`` (the MX and NVFP4
        defaults), ``"hbfp"`` (stochastic rounding by default), ``"llm-mixed-q"`` (its arithmetic, binary32 or in a
        float16 / bfloat16 input's dtype, its output blend and its zero-block max replacement for log{w}, bl{w},
        dmf*, bmf*, the element-wise minifloats as its minifloat_ieee and bfp{w} as its MSFP; 2-D weight blocks
        with ``block_shape``; see docs/formats.md), ``"fpquant"`` (FP-Quant's mxfp4 and nvfp4 scales and E2M1 thresholds).
    mask: optional bool tensor of x's shape; False positions come out as 0. With ``sparsify_first`` (the seed's
        ``first: s``) the masked values are zeroed before the group statistics, otherwise after quantization.

    transform: None, or ``"hadamard"``: rotate groups of ``transform_group`` (a power of two dividing the last
        dimension, default 128) with the normalized Walsh-Hadamard transform, quantize, rotate back (FP-Quant's
        recipe, FORMATS.md section 8). The mask applies in the original domain: masked values are zeroed before
        the rotation (``sparsify_first``) and masked outputs are zero after the inverse rotation.

    block_shape: ``(a, b)``, only under ``compat="llm-mixed-q"`` for its block formats (``bl{w}``, ``bmf*``,
        ``bfp{w}``) on a 2-D ``x``: the source's 2-D weight blocks (its ``block_size=[a, b]`` with
        ``skip_first_dim=False``, utils.py ``_block_2d_weight``): tiles of ``a`` rows by ``b`` columns, each sharing
        one bias / exponent, ``-1`` or a size above the dimension meaning the whole dimension, the edges zero
        padded, and a -0.0 output returned as +0.0 (its F.fold adds the tiles into zeros); ``(1, b)`` is
        ``group_size=b`` up to that sign of zero. Exact: the tiles are gathered into groups of ``a * b`` elements for
        the kernel and scattered back. ``group_size`` must then be None.

    Gradient: straight-through (unchanged, zero at masked positions).
    """
    _check_tensor(x, "x")
    f = resolve_format(fmt, group_size, rounding, saturate, scale_mode, observer, compat)
    if block_shape is not None:
        if transform is not None or group_size is not None:
            raise ValueError("block_shape (llm-mixed-q's 2-D blocks) takes neither group_size nor transform")
        a, b = _llmq_block_shape(x, f, block_shape)
        _mask_mode(x, mask, sparsify_first)  # validates the mask against x
        xt = _tile_2d(x, a, b)
        mt = _tile_2d(mask, a, b) if mask is not None else None
        name, _, rounding_code, saturate_code, scale_code, observer_code, compat_code = op_args(f)
        yt = _ops.fake_quant(xt, name, a * b, rounding_code, 0, saturate_code, scale_code, observer_code,
                             compat_code, mt, _mask_mode(xt, mt, sparsify_first))
        return _untile_2d(yt, x.shape[0], x.shape[1], a, b)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be None or an int, got {seed!r}")
        if not 0 <= seed < _SEED_LIMIT:
            raise ValueError(f"seed={seed} is out of range; allowed 0 <= seed < 2**64")
    if f.rounding == "stochastic" and seed is None:
        seed = draw_seed()
    mask_mode = _mask_mode(x, mask, sparsify_first)
    seed64 = seed or 0
    if seed64 >= 1 << 63:  # the op's int is int64: pass the same 64 bits
        seed64 -= 1 << 64
    name, group, rounding_code, saturate_code, scale_code, observer_code, compat_code = op_args(f)
    if transform is not None:
        if transform != "hadamard":
            raise ValueError(f"transform={transform!r} is not supported; allowed: None, 'hadamard'")
        _check_hadamard_group(x, transform_group, "transform_group")
        if mask is not None and sparsify_first:
            x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        y = _ops.hadamard(_ops.fake_quant(_ops.hadamard(x, transform_group), name, group, rounding_code, seed64,
                                          saturate_code, scale_code, observer_code, compat_code, None,
                                          _ops.MASK_NONE),
                          transform_group)
        if mask is not None:
            y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y
    return _ops.fake_quant(x, name, group, rounding_code, seed64, saturate_code, scale_code, observer_code,
                           compat_code, mask, mask_mode)


def _llmq_block_shape(x: torch.Tensor, f: Format, block_shape) -> Tuple[int, int]:
    """The 2-D block (a, b) of llm-mixed-q's _infer_block_shape for a 2-D x: -1 or a size above the dimension is the
    whole dimension."""
    if f.compat != "llm-mixed-q" or not (f.info.family == "bfp" or f.info.block_bias):
        raise ValueError(f"block_shape applies to compat='llm-mixed-q' with a block format (bl{{w}}, bmf*, bfp{{w}}),"
                         f" got {f.name!r} with compat={f.compat!r}")
    if x.dim() != 2:
        raise ValueError(f"block_shape (llm-mixed-q's 2-D weight blocks) needs a 2-D tensor, got {x.dim()}-D; "
                         "activations of more dimensions block along the last dimension: use group_size")
    if (not isinstance(block_shape, (tuple, list)) or len(block_shape) != 2 or
            not all(isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v >= 1) for v in block_shape)):
        raise ValueError(f"block_shape must be two ints, each >= 1 or -1, got {block_shape!r}")
    return tuple(d if (v == -1 or v > d) else v for v, d in zip(block_shape, x.shape))


def _tile_2d(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """(R, C) -> (tiles, a * b): the a x b tiles of t (zero padded at the bottom and right edges) as rows."""
    R, C = t.shape
    pr, pc = (-R) % a, (-C) % b
    if t.dtype == torch.bool:
        tp = torch.nn.functional.pad(t.to(torch.uint8), (0, pc, 0, pr), value=1).bool()
    else:
        tp = torch.nn.functional.pad(t, (0, pc, 0, pr))
    return tp.reshape((R + pr) // a, a, (C + pc) // b, b).permute(0, 2, 1, 3).reshape(-1, a * b)


def _untile_2d(g: torch.Tensor, R: int, C: int, a: int, b: int) -> torch.Tensor:
    """The inverse of _tile_2d, plus 0: the source's F.fold sums the tiles into a zeroed output, so a -0.0 output
    comes back as +0.0 (NaN and the rest unchanged)."""
    Rp, Cp = R + (-R) % a, C + (-C) % b
    return g.reshape(Rp // a, Cp // b, a, b).permute(0, 2, 1, 3).reshape(Rp, Cp)[:R, :C] + 0.0


def group_choices(x: torch.Tensor, fmt: Union[str, Format], *, group_size: Union[int, str, None] = None,
                  compat: Optional[str] = None, mask: Optional[torch.Tensor] = None,
                  sparsify_first: bool = True) -> torch.Tensor:
    """Which grid each group of a lookup-grid format takes (the per-group metadata of ``mixed_ant``,
    ``mixed_bitmod4``, ...): a uint8 tensor of shape ``x.shape[:-1] + (groups,)``, ``groups = ceil(K / G)`` along
    the last dimension K (1 per row for ``group_size="row"``). Entry c names grid ``Format(fmt).info.grids[c]``;
    255 marks a group that takes none (``compat="bitmod"`` when every grid's error is >= 1e3, which BitMoD
    outputs as zeros). The same groups and choices as :func:`fake_quant` with the same arguments."""
    _check_tensor(x, "x")
    f = resolve_format(fmt, group_size=group_size, compat=compat)
    if f.info.family != "lut":
        raise ValueError(f"group_choices needs a lookup-grid format (mixed_ant, mixed_bitmod4, fp4_er_pos, ...); "
                         f"{f.name!r} has no per-group choice")
    mask_mode = _mask_mode(x, mask, sparsify_first)
    name, group, _, _, scale_code, _, compat_code = op_args(f)
    out = _ops.group_choice(x, name, group, scale_code, compat_code, mask, mask_mode)
    return out.reshape(tuple(x.shape[:-1]) + (out.shape[-1],))


def _check_hadamard_group(x: torch.Tensor, group, param: str) -> int:
    if isinstance(group, bool) or not isinstance(group, int):
        raise TypeError(f"{param} must be an int, got {group!r}")
    if group < 1 or group > _lib.HADAMARD_MAX_GROUP or group & (group - 1):
        raise ValueError(f"{param}={group} is not allowed: a power of two from 1 to {_lib.HADAMARD_MAX_GROUP}")
    cols = x.shape[-1] if x.dim() > 0 else 1
    if cols % group:
        raise ValueError(f"{param}={group} does not divide the last dimension of x ({cols})")
    return group


def hadamard(x: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """The normalized Walsh-Hadamard transform (Sylvester order, scaled by 1/sqrt(g)) of every group of
    ``group_size`` consecutive elements of the last dimension: orthonormal and symmetric, so applying it twice
    gives x back up to rounding. ``group_size``: a power of two dividing the last dimension (at most 8192).
    Computed in float32 with the butterflies in a fixed order (the same bits on CPU and GPU); output in x's dtype.
    Differentiable (the gradient is the same transform of the incoming gradient)."""
    _check_tensor(x, "x")
    _check_hadamard_group(x, group_size, "group_size")
    return _ops.hadamard(x, group_size)


def nm_mask(scores: torch.Tensor, keep: Optional[int] = None, group: Optional[int] = None, *,
            prune_n: Optional[int] = None) -> torch.Tensor:
    """Bool mask keeping the ``keep`` largest scores of every ``group`` consecutive entries of the last dimension.

    N:M is written keep:group (``nm_mask(s, 2, 4)`` keeps 2 of 4; ``nm_mask(s, 1, 4)`` is 75% sparse). Code that
    counts pruned entries, as SparseGPT and Wanda do, passes ``prune_n`` instead: ``nm_mask(s, group=4,
    prune_n=2)``. Ties go to the lowest index; NaN scores rank highest; a partial last group of r entries keeps
    min(keep, r). group may be 1..256.
    """
    _check_tensor(scores, "scores")
    if group is None:
        raise ValueError("group is required: nm_mask(scores, keep, group) or nm_mask(scores, group=M, prune_n=...)")
    group = _check_int(group, "group", 1, 256)
    if (keep is None) == (prune_n is None):
        raise ValueError(f"give exactly one of keep (kept per group) and prune_n (pruned per group); got keep={keep!r},"
                         f" prune_n={prune_n!r}")
    if prune_n is not None:
        keep = group - _check_int(prune_n, "prune_n", 0, group)
    keep = _check_int(keep, "keep", 0, group)
    return _ops.nm_mask(scores, keep, group)


def magnitude_mask(w: torch.Tensor, sparsity: float, per_row: bool = False) -> torch.Tensor:
    """Bool mask pruning the ``floor(n * sparsity)`` smallest ``|w|`` of the tensor (n = numel), or of each row
    (last dimension) with ``per_row=True``. Ties keep the lowest index; NaN counts as the largest magnitude."""
    _check_tensor(w, "w")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a float in [0, 1], got {sparsity!r}")
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"sparsity={sparsity} is out of range; allowed 0 <= sparsity <= 1")
    if not isinstance(per_row, bool):
        raise TypeError(f"per_row must be a bool, got {per_row!r}")
    return _ops.magnitude_mask(w, float(sparsity), per_row)


def encode(x: torch.Tensor, fmt: Union[str, Format], *, saturate: Optional[bool] = None) -> torch.Tensor:
    """uint8 element codes (sign | exponent | mantissa) of a CPU float32 tensor rounded to nearest even, for the
    formats that have them (``FormatInfo.has_codes``: fp8_e4m3, fp8_e5m2, the minifloats fp{w}_e{E}m{M}). Inf
    saturates on grids without Inf; NaN is refused on grids without NaN."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
        raise TypeError("x must be a float32 CPU tensor")
    f = resolve_format(fmt, saturate=saturate)
    if not f.info.has_codes:
        raise ValueError(f"format {f.name!r} has no element codes; formats with codes: "
                         f"{', '.join(i.name for i in _formats.table() if i.has_codes)}")
    if not f.info.has_nan and bool(torch.isnan(x).any()):
        raise ValueError(f"x contains NaN, which {f.name!r} cannot encode: its grid has no NaN code")
    return _ops.encode(x, f.name, -1 if f.saturate is None else int(f.saturate))


def decode(codes: torch.Tensor, fmt: Union[str, Format]) -> torch.Tensor:
    """float32 values of uint8 element codes (the inverse of :func:`encode`)."""
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8 or codes.device.type != "cpu":
        raise TypeError("codes must be a uint8 CPU tensor")
    f = resolve_format(fmt)
    if not f.info.has_codes:
        raise ValueError(f"format {f.name!r} has no element codes")
    return _ops.decode(codes, f.name)


__all__ = ["fake_quant", "group_choices", "hadamard", "nm_mask", "magnitude_mask", "encode", "decode", "resolve_format", "op_args", "draw_seed",
           "SUPPORTED_DTYPES"]
