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

from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

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
EXPLICIT_KEYS = frozenset({"weight", "activation", "sparsity", "sparsify_first", "mask_mode"})


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
    or ``"dynamic"`` (recomputed from the weight at every forward).
    """

    weight: Optional[Format] = None
    activation: Optional[Format] = None
    sparsity: Optional[SparsityConfig] = None
    sparsify_first: bool = True
    mask_mode: str = "fixed"
    version: int = CONFIG_VERSION

    def __post_init__(self):
        object.__setattr__(self, "weight", _as_format("weight", self.weight))
        object.__setattr__(self, "activation", _as_format("activation", self.activation))
        object.__setattr__(self, "sparsity", SparsityConfig.parse(self.sparsity))
        _as_bool("sparsify_first", self.sparsify_first)
        _as_choice("mask_mode", self.mask_mode, MASK_MODES)
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


__all__ = ["LayerConfig", "SparsityConfig", "SEED_DEFAULTS", "SEED_KEYS", "EXPLICIT_KEYS", "MASK_MODES",
           "CONFIG_VERSION"]
