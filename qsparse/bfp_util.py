"""The HBFP-sparsity fork's hand-patching API, for modeling files edited the fork's way.

The fork's modeling files build their linears as::

    from qsparse import bfp_util
    from qsparse.bfp_ops import BFPLinear

    self.bfp_args = bfp_util.get_bfp_args_per_layer(layer_type="fc1", layer_idx=self.layer_idx)
    self.fc1 = BFPLinear(embed_dim, ffn_dim, bias=True, **self.bfp_args)

The active config is the one given to :func:`set_config` (a per-layer YAML path, YAML string, dict or
ModelConfig), else the file named by the ``QSPARSE_CONFIG`` environment variable (read when first needed). The fork
read a ``bfp_layer_config.yaml`` next to its own sources; qsparse never reads files it was not pointed at.

Differences from the fork, on purpose: the entry that lists a layer applies (the fork let the last entry of the
list win, listed or not), and a layer listed twice is an error (see :func:`qsparse.load_config`).
"""
from __future__ import annotations

import os
from typing import Optional

from .config import SEED_DEFAULTS, SEED_KEYS, ModelConfig, load_config

ENV_VAR = "QSPARSE_CONFIG"

_active: Optional[ModelConfig] = None
_from_env: Optional[tuple] = None  # (path, ModelConfig) read from QSPARSE_CONFIG


def set_config(config) -> ModelConfig:
    """Make ``config`` (path, YAML string, dict, ModelConfig; None clears it) the active per-layer config."""
    global _active
    _active = None if config is None else load_config(config)
    if _active is not None and _active.form != "layer_types":
        _active = None
        raise ValueError("bfp_util takes the per-layer-type form (layer types with layer_ids); a recipe with "
                         "config_groups is applied with qsparse.patch_model(model, recipe)")
    return _active


def get_config() -> Optional[ModelConfig]:
    """The active config: set_config's, else QSPARSE_CONFIG's file, else None (every layer dense)."""
    global _from_env
    if _active is not None:
        return _active
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    if _from_env is None or _from_env[0] != path:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{ENV_VAR}={path!r}: no such file")
        cfg = load_config(path)
        if cfg.form != "layer_types":
            raise ValueError(f"{ENV_VAR}={path!r} is a recipe; bfp_util takes the per-layer-type form")
        _from_env = (path, cfg)
    return _from_env[1]


def unpack_bfp_args(kwargs: Optional[dict] = None) -> dict:
    """The seed keys of one layer with the defaults filled in (``rounding_mode`` defaults to ``determ`` here, see
    qsparse.config). Unknown keys raise ValueError."""
    kwargs = dict(kwargs or {})
    unknown = set(kwargs) - SEED_KEYS - {"mask_mode"}
    if unknown:
        raise ValueError(f"unknown seed key(s) {sorted(unknown)}; allowed: {sorted(SEED_KEYS)} and mask_mode")
    return {**SEED_DEFAULTS, **kwargs}


def get_bfp_args_per_layer(layer_type: str, layer_idx: int) -> dict:
    """Keyword arguments for ``BFPLinear(in, out, bias, **kwargs)`` for decoder layer ``layer_idx``'s module of
    type ``layer_type``, from the active config: the listing entry's keys (seed keys with defaults filled in, or
    its explicit keys), or the dense defaults when no entry lists the layer."""
    if not isinstance(layer_type, str):
        raise TypeError(f"layer_type must be a str, got {type(layer_type).__name__}")
    if isinstance(layer_idx, bool) or not isinstance(layer_idx, int) or layer_idx < 0:
        raise ValueError(f"layer_idx={layer_idx!r} is not allowed; expected an int >= 0")
    cfg = get_config()
    if cfg is not None:
        for rule in cfg.rules:
            if rule.layer_type == layer_type and (rule.layer_ids is None or layer_idx in rule.layer_ids):
                keys = dict(rule.keys)
                return unpack_bfp_args(keys) if set(keys) & SEED_KEYS else keys
    return unpack_bfp_args()


__all__ = ["set_config", "get_config", "get_bfp_args_per_layer", "unpack_bfp_args", "ENV_VAR"]
