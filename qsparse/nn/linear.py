"""BFPLinear: a drop-in ``nn.Linear`` whose weight is sparsified and fake-quantized and whose input is
fake-quantized, per a :class:`qsparse.config.LayerConfig`.

Shapes: weight [out_features, in_features] (groups, blocks and N:M groups run along in_features), input
[..., in_features]. Forward::

    mask    = the persistent bool buffer `mask` [out, in]       (sparsity only; computed from |weight|)
    w_q     = fake_quant(weight, weight format, mask)            (mask before or after, per sparsify_first)
    x_q     = fake_quant(input, activation format)
    output  = linear(x_q, w_q, bias)

Backward is straight-through: the gradient reaches the dense ``weight`` and the input unchanged, except that masked
weight positions get exactly zero. With ``mask_mode="fixed"`` the mask is computed once (when the layer is built
from an existing Linear, or at the first forward after its weights were loaded) and the masked weights are set to
zero; since their gradient is zero too, they stay exactly 0 under any optimizer update that is a function of
(weight, grad) (SGD, Adam, AdamW with weight decay, ...). ``mask_mode="dynamic"`` recomputes the mask from the dense
weight at every forward, as the HBFP fork does, and leaves the dense weight untouched.

The weight's quantization parameters (scales, zero points) are fitted to the weight at every forward, unless fixed
with :meth:`BFPLinear.set_weight_qparams` (GPTQ does this: its weights lie on the grid of the parameters it fitted,
and fine-tuning then keeps those parameters); fixed parameters are the persistent buffer ``weight_qparams``.

In eval mode without autograd the quantized weight is cached until the weight, mask or parameters change.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as _functional
from .. import ops as _ops
from ..config import SEED_KEYS, LayerConfig


def is_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is transformers' Conv1D (GPT-2 style: y = x @ weight + bias, weight [in, out])."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None \
        and module.weight.dim() == 2


class BFPLinear(nn.Linear):
    """``nn.Linear`` with weight sparsity and weight/activation fake quantization.

    ``BFPLinear(in_features, out_features, bias=True, **layer_config)`` where ``layer_config`` is either the seed's
    per-layer keys (``w_num_format="int", w_mant_bits=4, block_size=32, w_sparsity=True, N=2, M=4, ...``; see
    :mod:`qsparse.config`) or the explicit form (``weight="int4_asym"``, ``activation="fp16"``,
    ``sparsity="2:4"`` or ``0.5``, ``sparsify_first=True``, ``mask_mode="fixed"``), or ``config=LayerConfig(...)``.
    No keys gives a plain dense layer. Unknown keys or invalid values raise ValueError naming the key.

    ``device`` and ``dtype`` are nn.Linear's factory arguments, except that a string ``device`` given among seed
    keys is the seed's key (accepted, not used for placement).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 config: Optional[LayerConfig] = None, dtype=None, **layer_config):
        factory_device = layer_config.pop("device", None)
        if factory_device is not None and set(layer_config) & SEED_KEYS:
            layer_config["device"] = factory_device  # the seed's key: validated, not a placement
            factory_device = None
        if config is not None and layer_config:
            raise ValueError(f"give either config=LayerConfig(...) or layer keys, not both (got {sorted(layer_config)})")
        cfg = config if config is not None else LayerConfig.from_kwargs(**layer_config)
        if not isinstance(cfg, LayerConfig):
            raise TypeError(f"config must be a qsparse.config.LayerConfig, got {type(cfg).__name__}")
        super().__init__(in_features, out_features, bias, device=factory_device, dtype=dtype)
        self._set_config(cfg)
        mask = torch.ones(out_features, in_features, dtype=torch.bool, device=self.weight.device) \
            if cfg.sparsity is not None else None
        self.register_buffer("mask", mask, persistent=True)
        # fixed quantization parameters of the weight (set by GPTQ/SparseGPT, set_weight_qparams): int32 records
        # [out, groups, 4] (qsparse.ops.quant_qparams' layout), or None to fit them at every forward
        self.register_buffer("weight_qparams", None, persistent=True)
        self._mask_ready = False  # the mask buffer holds the mask of the current weights
        self.from_conv1d = False  # built from a transformers Conv1D (its weight transposed to [out, in])
        self._cache_key = None
        self._cache = None

    # ---- configuration -------------------------------------------------------------------------------------------

    def _set_config(self, cfg: LayerConfig) -> None:
        if cfg.transform is not None and self.in_features % cfg.transform_group:
            raise ValueError(f"transform_group={cfg.transform_group} does not divide in_features={self.in_features}; "
                             "the Hadamard rotation works on whole groups of input features")
        self.config = cfg
        self._w_args = _functional.op_args(cfg.weight) if cfg.weight is not None else None
        self._a_args = _functional.op_args(cfg.activation) if cfg.activation is not None else None

    @classmethod
    def from_linear(cls, linear: nn.Module, *, config: Optional[LayerConfig] = None, **layer_config) -> "BFPLinear":
        """A BFPLinear computing with ``linear``'s parameters (the same Parameter objects, so nothing is copied and
        tied weights stay tied). With sparsity, the mask is computed from the weight now and masked weights are set
        to zero (``mask_mode="fixed"``). ``linear`` may also be a Hugging Face ``Conv1D`` (GPT-2's linear, weight
        [in, out]): its weight is then copied once, transposed to nn.Linear's [out, in]."""
        new = cls.wrap(linear, config if config is not None else LayerConfig.from_kwargs(**layer_config))
        if new.mask is not None and new.weight.device.type != "meta":
            new.reset_mask()
        return new

    @classmethod
    def wrap(cls, linear: nn.Module, config: LayerConfig) -> "BFPLinear":
        """Like :meth:`from_linear`, but the mask is left all True and not applied: nothing of ``linear`` is
        modified. Callers that must validate several layers before changing any (``qsparse.patch_model``) compute
        the masks with :meth:`compute_mask` and install them with :meth:`set_mask`."""
        if not isinstance(config, LayerConfig):
            raise TypeError(f"config must be a qsparse.config.LayerConfig, got {type(config).__name__}")
        if isinstance(linear, nn.Linear):
            weight, in_f, out_f = linear.weight, linear.in_features, linear.out_features
        elif is_conv1d(linear):
            in_f, out_f = linear.weight.shape
            weight = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=linear.weight.requires_grad)
        else:
            raise TypeError(f"linear must be an nn.Linear or a transformers Conv1D, got {type(linear).__name__}")
        with torch.device("meta"):
            new = cls(in_f, out_f, bias=linear.bias is not None, config=config)
        new.weight = weight
        new.bias = linear.bias
        new.from_conv1d = is_conv1d(linear) or getattr(linear, "from_conv1d", False)
        if new.mask is not None:
            new.mask = torch.ones_like(weight, dtype=torch.bool)
        new.train(linear.training)
        return new

    def to_linear(self, materialize: bool = True) -> nn.Linear:
        """A plain nn.Linear. ``materialize=True``: its weight is the effective weight (masked and quantized, what
        this layer multiplies by; activation quantization cannot be carried over). False: the stored weight."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            w = self.effective_weight() if materialize else self.weight
            if materialize and self.config.transform is not None:  # back to the input's basis (H is its own inverse)
                w = _ops.hadamard(w.contiguous(), self.config.transform_group)
            lin.weight.copy_(w)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    # ---- fixed quantization parameters -------------------------------------------------------------------------

    def weight_qparams_shape(self) -> tuple:
        """The shape of this layer's weight records: [out, groups, 4] ([1, 1, 4] per tensor)."""
        if self._w_args is None:
            raise ValueError("this BFPLinear has no weight format, so it has no weight quantization parameters")
        group = self._w_args[1]
        if group == _ops.GROUP_TENSOR:
            return (1, 1, _ops.QPARAM_WORDS)
        return (self.out_features, _ops.qparam_groups(self.in_features, group), _ops.QPARAM_WORDS)

    @torch.no_grad()
    def set_weight_qparams(self, qparams: Optional[torch.Tensor]) -> None:
        """Quantize the weight with these parameters from now on (int32 records, ``weight_qparams_shape()``, as
        ``qsparse.ops.quant_qparams`` or GPTQ return them) instead of fitting them to the weight at every forward;
        they are saved with the model. None goes back to fitting."""
        if qparams is None:
            self.weight_qparams = None
        else:
            shape = self.weight_qparams_shape()
            if not isinstance(qparams, torch.Tensor) or qparams.dtype != torch.int32 or tuple(qparams.shape) != shape:
                raise ValueError(f"qparams must be an int32 tensor of shape {shape}, got "
                                 f"{getattr(qparams, 'dtype', type(qparams).__name__)} "
                                 f"{tuple(getattr(qparams, 'shape', ()))}")
            self.weight_qparams = qparams.to(self.weight.device).contiguous()
        self._cache_key = None

    # ---- masks -----------------------------------------------------------------------------------------------------

    def compute_mask(self) -> Optional[torch.Tensor]:
        """The mask the configured rule gives for the current weights (not stored)."""
        sp = self.config.sparsity
        if sp is None:
            return None
        w = self.weight.detach()
        if sp.structured:
            return _functional.nm_mask(w.abs(), sp.keep, sp.group)
        return _functional.magnitude_mask(w, sp.fraction, sp.per_row)

    @torch.no_grad()
    def reset_mask(self) -> None:
        """Recompute the mask from the current weights now; with ``mask_mode="fixed"`` zero the masked weights."""
        if self.mask is not None:
            self.set_mask(self.compute_mask())

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor) -> None:
        """Install a bool mask of the weight's shape (True = kept); with ``mask_mode="fixed"`` zero the masked
        weights. The mask may come from anywhere (SparseGPT, Wanda, a checkpoint)."""
        if self.mask is None:
            raise ValueError("this BFPLinear has no sparsity configured, so it keeps no mask")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != self.weight.shape:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(self.weight.shape)}, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        self.mask.copy_(mask)
        if self.config.mask_mode == "fixed":
            self.weight.masked_fill_(~self.mask, 0)
        self._mask_ready = True
        self._cache_key = None

    def _current_mask(self) -> Optional[torch.Tensor]:
        if self.mask is None:
            return None
        if self.config.mask_mode == "dynamic":
            m = self.compute_mask()
            with torch.no_grad():
                self.mask.copy_(m)
            return m
        if not self._mask_ready:
            self.reset_mask()
        return self.mask

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        qp = state_dict.get(prefix + "weight_qparams")
        if qp is not None and self.weight_qparams is None and self._w_args is not None:
            self.weight_qparams = torch.zeros(self.weight_qparams_shape(), dtype=torch.int32,
                                              device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.mask is None:
            return
        if prefix + "mask" in state_dict:
            # the loaded mask belongs to the loaded weights; keep the invariant "masked weights are 0"
            if self.config.mask_mode == "fixed" and prefix + "weight" in state_dict:
                with torch.no_grad():
                    self.weight.masked_fill_(~self.mask, 0)
            self._mask_ready = True
        elif prefix + "weight" in state_dict:
            self._mask_ready = False  # new weights without a mask: recompute it at the next forward
        self._cache_key = None

    # ---- forward ---------------------------------------------------------------------------------------------------

    def _quant(self, x: torch.Tensor, args, mask: Optional[torch.Tensor],
               qparams: Optional[torch.Tensor] = None) -> torch.Tensor:
        name, group, rounding, saturate, scale_mode, observer, compat = args
        if x.dtype not in _functional.SUPPORTED_DTYPES:
            raise TypeError(f"BFPLinear with format {name!r} got a {x.dtype} tensor; fake quantization takes "
                            "float32, float16 or bfloat16 (convert the layer with .float() or .to(torch.bfloat16))")
        seed = 0
        if rounding == 1:  # stochastic
            seed = self._compile_seed if torch.compiler.is_compiling() else _functional.draw_seed()
        mask_mode = _ops.MASK_NONE
        if mask is not None:
            mask_mode = _ops.MASK_BEFORE if self.config.sparsify_first else _ops.MASK_AFTER
        if qparams is not None:
            return _ops.fake_quant_qparams(x, qparams, name, group, rounding, seed, saturate, scale_mode, compat,
                                           mask, mask_mode)
        return _ops.fake_quant(x, name, group, rounding, seed, saturate, scale_mode, observer, compat, mask,
                               mask_mode)

    _compile_seed = 0x5EED  # stochastic rounding under torch.compile uses a fixed key (a traced graph has no RNG draw)

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer multiplies by: masked and fake-quantized (rotated first with a transform, so the
        product with the rotated input is the layer's output)."""
        mask = self._current_mask()
        cacheable = (not self.training and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
                     and not (self._w_args is not None and self._w_args[2] == 1))
        if cacheable:
            qp = self.weight_qparams
            key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype,
                   None if mask is None else (mask._version, mask.data_ptr()),
                   None if qp is None else (qp._version, qp.data_ptr()))
            if key == self._cache_key:
                return self._cache
        w = self.weight
        if self.config.transform is not None:
            w = _ops.hadamard(w.contiguous(), self.config.transform_group)
        if self._w_args is not None:
            w = self._quant(w, self._w_args, mask, self.weight_qparams)
        elif mask is not None:
            w = torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        if cacheable:
            self._cache_key, self._cache = key, w
        return w

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.config.is_dense:
            return F.linear(input, self.weight, self.bias)
        w = self.effective_weight()
        if self.config.transform is not None:
            input = _ops.hadamard(input.contiguous(), self.config.transform_group)
        if self._a_args is not None:
            input = self._quant(input, self._a_args, None)
        return F.linear(input, w, self.bias)

    def train(self, mode: bool = True):
        self._cache_key = self._cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.config}"

