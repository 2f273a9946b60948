"""Layer configurations: what a BFPLinear does to its weight and input.

Two spellings describe the same thing:

- the explicit form, :class:`LayerConfig` (frozen, versioned, ``to_dict``/``from_dict``; YAML is its ``to_dict``)::

      LayerConfig(weight=Format("int4_asym", group_size=32), activation=Format("fp16"),
                  sparsity=SparsityConfig(keep=2, group=4), sparsify_first=True, mask_mode="fixed")

- the seed's per-layer keys (FORMATS.md section 10, the HBFP-sparsity fork), translated by
  :meth:`LayerConfig.from_seed`::

      sparsity_num_format: bfp, a_num_format: fp, a_mant_bits: 16, w_num_format: int, w_mant_bits: 4,
      block_size: 32, w_sparsity: True, N: 2, M: 4, first: s, sparsity_mode: structured, sparsify: True, ...

Seed semantics, as the fork implements them (differences are deliberate and listed):
- ``sparsify: False`` with ``sparsity_num_format: fp`` is a plain dense full-precision layer (the fork bypasses
  its op); otherwise the weight and activation formats below apply.
- activations ``a_num_format``: ``fp`` with ``a_mant_bits`` 32 (none), 16 (``fp16`` cast) or 8 (``fp8_e5m2``,
  IEEE, Inf on overflow: ``saturate=False``); ``int`` -> ``int{a_mant_bits}_asym`` and ``bfp`` ->
  ``bfp{a_mant_bits+1}``, both in groups of ``block_size``.
- weights ``w_num_format``: ``int`` -> ``int{w_mant_bits}_asym`` (GPTQ's asymmetric quantizer, per group of
  ``block_size``); ``bfp`` -> ``bfp{w_mant_bits+1}`` (w_mant_bits magnitude bits, sign extra); ``fp`` as for
  activations (the fork raises for fp weights; qsparse accepts the same three widths).
- ``w_sparsity: True`` sparsifies the weight: ``sparsity_mode: structured`` keeps ``N`` of every ``M`` along the
  input dimension; ``unstructured`` prunes the ``sparsity_frac`` fraction of smallest magnitudes per tensor.
- ``first: s`` sparsifies then quantizes; ``first: q`` quantizes then sparsifies.
- ``rounding_mode`` (``stoc`` | ``determ``) applies to BFP formats, as in the fork (its INT quantizer always rounds
  to nearest even). Deviation: absent, it means ``determ`` (round half to even); the fork's default is ``stoc``.
- Deviation: the fork recomputes the mask from the dense weight at every forward; qsparse's default
  ``mask_mode: fixed`` computes it once and keeps masked weights at exactly 0 (``mask_mode: dynamic`` is the
  fork's behaviour). ``mask_mode`` is the one qsparse key accepted among seed keys.
- ``device`` is accepted and not used for placement (a module lives where ``.to()`` puts it); ``epsilon`` must
  be HBFP's 1e-8; ``in_sparsity`` and ``grad_sparsity`` must be False (the fork has no effect for them with fp
  activations and qsparse sparsifies weights only).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from .formats import Format

CONFIG_VERSION = 1
MASK_MODES = ("fixed", "dynamic")
MAX_NM_GROUP = 256

# The seed's keys and defaults (the fork's bfp_util.unpack_bfp_args), except rounding_mode (see module doc).
SEED_DEFAULTS = {
    "sparsity_num_format": "fp",
    "a_num_format": "fp",
    "a_mant_bits": 32,
    "w_num_format": "fp",
    "w_mant_bits": 32,
    "rounding_mode": "determ",
    "epsilon": 1e-8,
    "block_size": 0,
    "in_sparsity": False,
    "w_sparsity": False,
    "grad_sparsity": False,
    "N": 0,
    "M": 0,
    "first": "s",
    "sparsity_mode": "unstructured",
    "sparsity_frac": 0.0,
    "sparsify": False,
    "device": "cpu",
}
SEED_KEYS = frozenset(SEED_DEFAULTS)
EXPLICIT_KEYS = frozenset({"weight", "activation", "sparsity", "sparsify_first", "mask_mode", "transform",
                           "transform_group"})
TRANSFORMS = ("hadamard",)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{key}={value!r} is not allowed; {allowed}")


def _as_int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, f"expected an int in [{lo}, {hi}]")
    if not lo <= value <= hi:
        _fail(key, value, f"expected an int in [{lo}, {hi}]")
    return value


def _as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(key, value, "expected True or False")
    return value


def _as_choice(key: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        _fail(key, value, f"allowed values: {', '.join(map(repr, choices))}")
    return value


@dataclass(frozen=True)
class SparsityConfig:
    """Weight sparsity: N:M (``keep`` of every ``group`` along the input dimension) or an unstructured
    ``fraction`` of pruned weights (per tensor, or per output row with ``per_row``)."""

    keep: Optional[int] = None
    group: Optional[int] = None
    fraction: Optional[float] = None
    per_row: bool = False

    def __post_init__(self):
        if self.fraction is not None:
            if self.keep is not None or self.group is not None:
                raise ValueError("sparsity: give either keep/group (N:M) or fraction (unstructured), not both")
            if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)):
                _fail("sparsity.fraction", self.fraction, "expected a number in [0, 1]")
            if not 0.0 <= self.fraction <= 1.0:
                _fail("sparsity.fraction", self.fraction, "expected a number in [0, 1]")
            object.__setattr__(self, "fraction", float(self.fraction))
        else:
            if self.keep is None or self.group is None:
                raise ValueError("sparsity: N:M needs both keep and group (or give fraction)")
            _as_int("sparsity.group", self.group, 1, MAX_NM_GROUP)
            _as_int("sparsity.keep", self.keep, 0, self.group)
            if self.per_row:
                raise ValueError("sparsity.per_row applies to unstructured (fraction) sparsity only")
        _as_bool("sparsity.per_row", self.per_row)

    @property
    def structured(self) -> bool:
        return self.fraction is None

    @classmethod
    def parse(cls, spec) -> Optional["SparsityConfig"]:
        """None, a SparsityConfig, "2:4" (keep:group), (2, 4), a fraction (0.5), or a to_dict() dict."""
        if spec is None or isinstance(spec, SparsityConfig):
            return spec
        if isinstance(spec, str):
            parts = spec.split(":")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                _fail("sparsity", spec, "write N:M as 'keep:group', e.g. '2:4'")
            return cls(keep=int(parts[0]), group=int(parts[1]))
        if isinstance(spec, (tuple, list)):
            if len(spec) != 2:
                _fail("sparsity", spec, "a pair (keep, group)")
            return cls(keep=spec[0], group=spec[1])
        if isinstance(spec, float) or (isinstance(spec, int) and not isinstance(spec, bool)):
            return cls(fraction=float(spec))
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        _fail("sparsity", spec, "None, 'keep:group', (keep, group), a fraction, or a dict")

    def to_dict(self) -> dict:
        if self.structured:
            return {"keep": self.keep, "group": self.group}
        return {"fraction": self.fraction, "per_row": self.per_row}

    @classmethod
    def from_dict(cls, d: dict) -> "SparsityConfig":
        unknown = set(d) - {"keep", "group", "fraction", "per_row"}
        if unknown:
            raise ValueError(f"unknown sparsity keys {sorted(unknown)}; allowed: keep, group, fraction, per_row")
        return cls(**d)

    def __str__(self) -> str:
        if self.structured:
            return f"{self.keep}:{self.group}"
        return f"{self.fraction:g} unstructured{' per row' if self.per_row else ''}"


def _as_format(key: str, value) -> Optional[Format]:
    if value is None or isinstance(value, Format):
        return value
    if isinstance(value, str):
        return Format(value)
    if isinstance(value, dict):
        return Format.from_dict(value)
    _fail(key, value, "a format name, a qsparse.Format, a Format dict, or None")


@dataclass(frozen=True)
class LayerConfig:
    """What a BFPLinear does: weight format, input-activation format, weight sparsity and mask policy.

    weight / activation: a :class:`Format` (or name) or None (full precision). sparsity: a
    :class:`SparsityConfig` (or "2:4", (2, 4), 0.5) or None (dense). sparsify_first: mask before quantizing the
    weight (the seed's ``first: s``) or after. mask_mode: ``"fixed"`` (computed once, masked weights kept at 0)
    or ``"dynamic"`` (recomputed from the weight at every forward). transform: None or ``"hadamard"``: the input
    and the weight are rotated by the normalized Walsh-Hadamard transform of every ``transform_group`` consecutive
    input features (a power of two dividing in_features, 128 by default) before they are quantized, as FP-Quant
    does; the rotations cancel in the product (H is orthonormal and symmetric), so only the quantization sees them.
    """

    weight: Optional[Format] = None
    activation: Optional[Format] = None
    sparsity: Optional[SparsityConfig] = None
    sparsify_first: bool = True
    mask_mode: str = "fixed"
    transform: Optional[str] = None
    transform_group: int = 128
    version: int = CONFIG_VERSION

    def __post_init__(self):
        object.__setattr__(self, "weight", _as_format("weight", self.weight))
        object.__setattr__(self, "activation", _as_format("activation", self.activation))
        object.__setattr__(self, "sparsity", SparsityConfig.parse(self.sparsity))
        _as_bool("sparsify_first", self.sparsify_first)
        _as_choice("mask_mode", self.mask_mode, MASK_MODES)
        if self.transform is not None:
            _as_choice("transform", self.transform, TRANSFORMS)
            g = self.transform_group
            if isinstance(g, bool) or not isinstance(g, int) or g < 1 or g > 8192 or g & (g - 1):
                _fail("transform_group", g, "a power of two from 1 to 8192")
            if self.sparsity is not None:
                _fail("transform", self.transform, "not with sparsity: a mask of the rotated weight is not a mask of "
                      "the weight (rotate dense layers, or prune without a transform)")
        if self.version != CONFIG_VERSION:
            _fail("version", self.version, f"this qsparse reads version {CONFIG_VERSION}")

    @property
    def is_dense(self) -> bool:
        """True when the layer is a plain full-precision linear."""
        return self.weight is None and self.activation is None and self.sparsity is None

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "weight": self.weight.to_dict() if self.weight else None,
            "activation": self.activation.to_dict() if self.activation else None,
            "sparsity": self.sparsity.to_dict() if self.sparsity else None,
            "sparsify_first": self.sparsify_first,
            "mask_mode": self.mask_mode,
            **({"transform": self.transform, "transform_group": self.transform_group} if self.transform else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LayerConfig":
        allowed = EXPLICIT_KEYS | {"version"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown layer config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "LayerConfig":
        """From BFPLinear's keyword arguments: seed keys, or explicit keys, not both (``mask_mode`` goes with
        either); no keys at all is a dense layer."""
        keys = set(kwargs)
        unknown = keys - SEED_KEYS - EXPLICIT_KEYS
        if unknown:
            raise ValueError(
                f"unknown layer config key(s) {sorted(unknown)}; seed keys: {sorted(SEED_KEYS)}; "
                f"explicit keys: {sorted(EXPLICIT_KEYS)}"
            )
        seed, explicit = keys & SEED_KEYS, keys & (EXPLICIT_KEYS - {"mask_mode"})
        if seed and explicit:
            raise ValueError(f"mixing seed keys {sorted(seed)} with explicit keys {sorted(explicit)}; use one form")
        if seed:
            return cls.from_seed(kwargs)
        return cls(**kwargs)

    @classmethod
    def from_seed(cls, d: dict) -> "LayerConfig":
        """Translate the seed's per-layer keys (see the module docstring for the semantics)."""
        unknown = set(d) - SEED_KEYS - {"mask_mode"}
        if unknown:
            raise ValueError(f"unknown seed key(s) {sorted(unknown)}; allowed: {sorted(SEED_KEYS)} and mask_mode")
        c = {**SEED_DEFAULTS, **d}
        _as_choice("sparsity_num_format", c["sparsity_num_format"], ("fp", "bfp", "int"))
        _as_choice("a_num_format", c["a_num_format"], ("fp", "bfp", "int"))
        _as_choice("w_num_format", c["w_num_format"], ("fp", "bfp", "int"))
        _as_choice("first", c["first"], ("s", "q"))
        _as_choice("sparsity_mode", c["sparsity_mode"], ("structured", "unstructured"))
        rounding = _as_choice("rounding_mode", c["rounding_mode"], ("determ", "stoc", "rne", "stochastic"))
        for flag in ("w_sparsity", "sparsify", "in_sparsity", "grad_sparsity"):
            _as_bool(flag, c[flag])
        for flag in ("in_sparsity", "grad_sparsity"):
            if c[flag]:
                _fail(flag, c[flag], "qsparse sparsifies weights only (set it to False)")
        if c["epsilon"] != 1e-8:
            _fail("epsilon", c["epsilon"], "only HBFP's 1e-8 is supported")
        if not isinstance(c["device"], str) or not (c["device"] in ("cpu", "cuda") or c["device"].startswith("cuda:")):
            _fail("device", c["device"], "'cpu', 'cuda' or 'cuda:N' (not used for placement)")
        mask_mode = _as_choice("mask_mode", d.get("mask_mode", "fixed"), MASK_MODES)

        if not c["sparsify"] and c["sparsity_num_format"] == "fp":
            return cls(mask_mode=mask_mode)  # the fork's bypass: dense, full precision

        def fmt(kind: str) -> Optional[Format]:
            num_format, bits_key = c[f"{kind}_num_format"], f"{kind}_mant_bits"
            bits = c[bits_key]
            if num_format == "fp":
                _as_int(bits_key, bits, 8, 32)
                if bits == 32:
                    return None
                if bits == 16:
                    return Format("fp16")
                if bits == 8:
                    return Format("fp8_e5m2", saturate=False)
                _fail(bits_key, bits, "with fp: 32 (no quantization), 16 (fp16) or 8 (fp8 e5m2)")
            block = _as_int("block_size", c["block_size"], 1, 1 << 30)
            if num_format == "int":
                return Format(f"int{_as_int(bits_key, bits, 2, 8)}_asym", group_size=block)
            return Format(f"bfp{_as_int(bits_key, bits, 1, 15) + 1}", group_size=block,
                          rounding="stochastic" if rounding in ("stoc", "stochastic") else "rne")

        sparsity = None
        if c["w_sparsity"]:
            if c["sparsity_mode"] == "structured":
                m = _as_int("M", c["M"], 1, MAX_NM_GROUP)
                sparsity = SparsityConfig(keep=_as_int("N", c["N"], 1, m), group=m)
            else:
                frac = c["sparsity_frac"]
                if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac <= 1.0:
                    _fail("sparsity_frac", frac, "expected a fraction in (0, 1] for unstructured sparsity")
                sparsity = SparsityConfig(fraction=float(frac))
        return cls(weight=fmt("w"), activation=fmt("a"), sparsity=sparsity, sparsify_first=c["first"] == "s",
                   mask_mode=mask_mode)

    def __str__(self) -> str:
        if self.is_dense:
            return "dense"
        parts = [f"weight={self.weight or 'fp'}", f"activation={self.activation or 'fp'}"]
        if self.sparsity:
            parts.append(f"sparsity={self.sparsity}")
            parts.append("sparsify_first" if self.sparsify_first else "quantize_first")
            parts.append(f"mask={self.mask_mode}")
        return ", ".join(parts)


# ---- model configs: which layers of a model get which LayerConfig ------------------------------------------------
#
# Two forms, told apart by their keys (see ModelConfig.from_dict):
#
# 1. Per layer type (the seed's per-layer YAML, FORMATS.md section 10): top-level keys are layer types, each a
#    list of entries with ``layer_ids`` (decoder layer indices, or ``all``) and a layer config in seed keys or in
#    explicit keys. The fork's file wraps this in ``hbfp:``; that wrapper is accepted. Layers not listed stay dense.
# 2. A recipe (the shape llm-compressor writes): ``config_groups`` of named groups, each with ``targets`` (class
#    names, exact module names, ``re:`` regexes), optional ``ignore`` and explicit layer keys; a top-level
#    ``ignore`` applies to every group.
#
# What a layer type or a target means for a concrete model is resolved by qsparse.integrations.transformers;
# everything that can be checked without a model is checked here, with the YAML path of the offending value.

MODEL_CONFIG_VERSION = 1
RECIPE_KEYS = frozenset({"version", "ignore", "config_groups"})
GROUP_KEYS = frozenset({"targets", "ignore"}) | EXPLICIT_KEYS


def _where(source: Optional[str], path: str) -> str:
    return f"{source}: {path}" if source else path


def _layer_config(keys: dict, where: str) -> LayerConfig:
    try:
        return LayerConfig.from_kwargs(**keys)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: {e}") from None


def _str_list(value, where: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}={value!r} is not allowed; expected a list of non-empty strings")
    return tuple(value)


@dataclass(frozen=True)
class LayerTypeRule:
    """``config`` for the module of type ``layer_type`` in decoder layers ``layer_ids`` (None: every one).

    ``keys`` are the entry's keys as written (without ``layer_ids``): seed keys or explicit keys."""

    layer_type: str
    layer_ids: Optional[Tuple[int, ...]]
    config: LayerConfig
    keys: Tuple[Tuple[str, Any], ...]
    path: str  # e.g. "fc1[0]", for error messages


@dataclass(frozen=True)
class TargetRule:
    """``config`` for the linear modules matched by ``targets`` and not by ``ignore``."""

    name: str
    targets: Tuple[str, ...]
    ignore: Tuple[str, ...]
    config: LayerConfig
    path: str  # e.g. "config_groups.attention"


Rule = Union[LayerTypeRule, TargetRule]


@dataclass(frozen=True)
class ModelConfig:
    """Per-layer configs of a model: a tuple of LayerTypeRule (per-layer-type form) or of TargetRule (recipe form),
    and, for recipes, module patterns that no group applies to. ``source`` names the file it came from (error
    messages only). Build with :func:`load_config` or :meth:`from_dict`; ``to_dict`` gives the same form back."""

    rules: Tuple[Rule, ...]
    ignore: Tuple[str, ...] = ()
    source: Optional[str] = None
    version: int = MODEL_CONFIG_VERSION

    def __post_init__(self):
        kinds = {type(r) for r in self.rules}
        if len(kinds) > 1:
            raise ValueError("a model config holds either layer-type entries or config_groups, not both")
        if self.version != MODEL_CONFIG_VERSION:
            _fail("version", self.version, f"this qsparse reads model config version {MODEL_CONFIG_VERSION}")

    @property
    def form(self) -> str:
        """``"layer_types"`` (the seed's per-layer YAML) or ``"recipe"``."""
        return "recipe" if self.rules and isinstance(self.rules[0], TargetRule) else "layer_types"

    @classmethod
    def from_dict(cls, d: dict, source: Optional[str] = None) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{_where(source, 'top level')}: expected a mapping, got {type(d).__name__}")
        if "config_groups" in d:
            return cls._recipe_from_dict(d, source)
        if set(d) == {"hbfp"} and isinstance(d["hbfp"], dict):  # the fork's bfp_layer_config.yaml wrapper
            d = d["hbfp"]
        rules = []
        seen: Dict[str, Dict[Optional[int], str]] = {}
        for layer_type, entries in d.items():
            if not isinstance(layer_type, str) or not layer_type:
                raise ValueError(f"{_where(source, repr(layer_type))}: a layer type must be a non-empty string")
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list) or not entries:
                raise ValueError(f"{_where(source, layer_type)}: expected a list of entries with layer_ids")
            for i, entry in enumerate(entries):
                path = f"{layer_type}[{i}]"
                where = _where(source, path)
                if not isinstance(entry, dict):
                    raise ValueError(f"{where}: expected a mapping of layer keys, got {type(entry).__name__}")
                if "layer_ids" not in entry:
                    raise ValueError(f"{where}: missing layer_ids (a list of decoder layer indices, or 'all')")
                ids = _layer_ids(entry["layer_ids"], f"{where}.layer_ids")
                keys = {k: v for k, v in entry.items() if k != "layer_ids"}
                cfg = _layer_config(keys, where)
                listed = seen.setdefault(layer_type, {})  # index (None: all) -> path of the entry listing it
                clash = [listed[k] for k in listed if ids is None or k is None or k in ids]
                if clash:
                    which = "every layer" if ids is None else f"layers {list(ids)}"
                    raise ValueError(f"{where}: {layer_type} {which} overlap(s) {clash[0]}; list each layer once")
                listed.update((k, path) for k in (ids if ids is not None else (None,)))
                rules.append(LayerTypeRule(layer_type, ids, cfg, tuple(keys.items()), path))
        return cls(tuple(rules), source=source)

    @classmethod
    def _recipe_from_dict(cls, d: dict, source: Optional[str]) -> "ModelConfig":
        unknown = set(d) - RECIPE_KEYS
        if unknown:
            raise ValueError(f"{_where(source, 'top level')}: unknown recipe key(s) {sorted(unknown)}; allowed: "
                             f"{sorted(RECIPE_KEYS)}")
        version = d.get("version", MODEL_CONFIG_VERSION)
        if version != MODEL_CONFIG_VERSION:
            _fail(_where(source, "version"), version, f"this qsparse reads version {MODEL_CONFIG_VERSION}")
        ignore = _str_list(d.get("ignore", []), _where(source, "ignore"))
        groups = d["config_groups"]
        if not isinstance(groups, dict) or not groups:
            raise ValueError(f"{_where(source, 'config_groups')}: expected a non-empty mapping of named groups")
        rules = []
        for name, g in groups.items():
            path = f"config_groups.{name}"
            where = _where(source, path)
            if not isinstance(g, dict):
                raise ValueError(f"{where}: expected a mapping, got {type(g).__name__}")
            unknown = set(g) - GROUP_KEYS
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(GROUP_KEYS)}")
            if "targets" not in g:
                raise ValueError(f"{where}: missing targets (class names such as Linear, module names, re: regexes)")
            targets = _str_list(g["targets"], f"{where}.targets")
            group_ignore = _str_list(g.get("ignore", []), f"{where}.ignore")
            for t in targets + group_ignore:
                _check_pattern(t, where)
            cfg = _layer_config({k: v for k, v in g.items() if k in EXPLICIT_KEYS}, where)
            rules.append(TargetRule(str(name), targets, group_ignore, cfg, path))
        for t in ignore:
            _check_pattern(t, _where(source, "ignore"))
        return cls(tuple(rules), ignore=ignore, source=source)

    def to_dict(self) -> dict:
        if self.form == "recipe":
            groups = {}
            for r in self.rules:
                g = {"targets": list(r.targets)}
                if r.ignore:
                    g["ignore"] = list(r.ignore)
                g.update({k: v for k, v in r.config.to_dict().items() if k != "version"})
                groups[r.name] = g
            d = {"version": self.version}
            if self.ignore:
                d["ignore"] = list(self.ignore)
            d["config_groups"] = groups
            return d
        d: dict = {}
        for r in self.rules:
            d.setdefault(r.layer_type, []).append(
                {"layer_ids": "all" if r.layer_ids is None else list(r.layer_ids), **dict(r.keys)})
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str) -> None:
        """Write the YAML atomically (a temporary file in the same folder, then a rename)."""
        atomic_write_text(path, self.to_yaml())


def _layer_ids(value, where: str) -> Optional[Tuple[int, ...]]:
    if value == "all":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"{where}={value!r} is not allowed; expected a non-empty list of layer indices >= 0, "
                         "or 'all'")
    if len(set(value)) != len(value):
        dup = sorted({v for v in value if list(value).count(v) > 1})
        raise ValueError(f"{where}: layer(s) {dup} listed twice; list each layer once")
    return tuple(value)


def _check_pattern(pattern: str, where: str) -> None:
    if pattern.startswith("re:"):
        import re

        try:
            re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"{where}: {pattern!r} is not a valid regular expression ({e})") from None


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so that readers see
    the old file or the new one, never a partial write."""
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_config(config) -> ModelConfig:
    """A validated :class:`ModelConfig` from a YAML/JSON file path, a YAML string, a dict, or a ModelConfig.

    Validation that needs no model happens here (unknown keys, value ranges, keep > group, unsupported bits, a layer
    listed twice, malformed regexes); :func:`qsparse.patch_model` checks the rest against the model before it
    changes anything. Errors are ValueError naming the file and the YAML path (``cfg.yaml: fc1[1].N: ...``)."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        return ModelConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        import yaml

        text, source = None, None
        if isinstance(config, os.PathLike) or ("\n" not in str(config) and os.path.exists(str(config))):
            source = os.fspath(config)
            with open(source, encoding="utf-8") as f:
                text = f.read()
        elif isinstance(config, str) and ("\n" in config or ":" in config):
            text = config
        else:
            raise FileNotFoundError(f"config file {config!r} does not exist")
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{source or 'config'}: not valid YAML ({e})") from None
        return ModelConfig.from_dict(d, source=source)
    raise TypeError(f"config must be a path, a YAML string, a dict or a qsparse.ModelConfig, got "
                    f"{type(config).__name__}")


__all__ = ["LayerConfig", "SparsityConfig", "ModelConfig", "LayerTypeRule", "TargetRule", "load_config",
           "atomic_write_text", "SEED_DEFAULTS", "SEED_KEYS", "EXPLICIT_KEYS", "MASK_MODES", "CONFIG_VERSION",
           "MODEL_CONFIG_VERSION"]
