"""Patching models: which modules a :class:`~qsparse.config.ModelConfig` names, and swapping them for BFPLinear.

Works on any ``nn.Module`` tree; the conventions are those of Hugging Face causal LMs (OPT, Llama, Mistral, Qwen2,
GPT-2 and kin), whose decoder is a ``ModuleList`` of identical blocks.

Layer types (the per-layer-type form) name a linear module inside a decoder block, by any of:
- its attribute name, when that is unique in the block (``fc1``, ``q_proj``, ``down_proj``, ``c_attn``);
- its dotted path inside the block (``self_attn.q_proj``, ``attn.c_proj``, ``mlp.c_proj``: GPT-2 has two
  ``c_proj``), or the path of a submodule, meaning every linear under it (``self_attn``, ``mlp``);
- ``attn``: every linear under the block's attention submodule, whatever its name (the HBFP fork's layer type for
  q/k/v/out_proj).
Decoder layer indices are positions in that ``ModuleList``.

Targets (the recipe form) match linear modules by their full name: ``re:<regex>`` (``re.match``, as
compressed-tensors does), an exact module name, or a class name (``Linear`` matches ``nn.Linear`` and
transformers' ``Conv1D``; any other name the module's class or a base class). When several groups match one
module, the more specific match wins: exact name, then regex, then class name; two groups matching at the same
level are an error. ``ignore`` uses the same patterns.

Everything is resolved and validated before the first module changes, so a failed ``patch_model`` leaves the
model as it was.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import formats as _formats
from ..config import LayerConfig, LayerTypeRule, TargetRule, load_config
from ..functional import SUPPORTED_DTYPES
from ..nn.linear import BFPLinear, is_conv1d

logger = logging.getLogger("qsparse")

_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")


def is_linear_like(module: nn.Module) -> bool:
    """nn.Linear (BFPLinear included) or transformers' Conv1D: the modules qsparse patches."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def decoder_layers(model: nn.Module) -> Tuple[str, nn.ModuleList]:
    """(name, ModuleList) of the model's decoder blocks: the ModuleList of same-class blocks holding linear
    modules with the most parameters (of ``config.num_hidden_layers`` blocks when the model says so)."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) and len({type(c) for c in m}) == 1 and \
                any(is_linear_like(x) for x in m[0].modules()):
            found.append((name, m))
    if not found:
        raise ValueError(f"{type(model).__name__} has no ModuleList of decoder blocks with linear layers; use a "
                         "recipe with targets instead of layer types")
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if n is not None and any(len(m) == n for _, m in found):
        found = [(name, m) for name, m in found if len(m) == n]
    return max(found, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def _block_linears(block: nn.Module) -> List[str]:
    return [name for name, m in block.named_modules() if name and is_linear_like(m)]


def _layer_type_matches(layer_type: str, rel_paths: List[str]) -> List[str]:
    if layer_type == "attn" and not any(p == "attn" or p.startswith("attn.") for p in rel_paths):
        return [p for p in rel_paths if p.split(".")[0] in _ATTENTION_NAMES]
    exact = [p for p in rel_paths if p == layer_type or p.startswith(layer_type + ".")]
    if exact:
        return exact
    return [p for p in rel_paths if p.rsplit(".", 1)[-1] == layer_type]


def layer_types(model: nn.Module) -> List[str]:
    """The layer types of the model's decoder blocks, as the per-layer-type form accepts them (attribute names
    where unique, dotted paths otherwise)."""
    _, layers = decoder_layers(model)
    paths = _block_linears(layers[0])
    short = [p.rsplit(".", 1)[-1] for p in paths]
    return [s if short.count(s) == 1 else p for p, s in zip(paths, short)]


def _class_names(module: nn.Module) -> set:
    names = {c.__name__ for c in type(module).__mro__}
    if is_linear_like(module):
        names.add("Linear")
    return names


def _match_level(pattern: str, name: str, module: nn.Module) -> int:
    """3 exact name, 2 regex, 1 class name, 0 no match."""
    if pattern.startswith("re:"):
        return 2 if re.match(pattern[3:], name) else 0
    if pattern == name:
        return 3
    return 1 if pattern in _class_names(module) else 0


@dataclass(frozen=True)
class PatchPlan:
    """The resolved config of a model: module name -> (LayerConfig, where it came from), in module order."""

    entries: Tuple[Tuple[str, LayerConfig, str], ...]

    def as_dict(self) -> Dict[str, LayerConfig]:
        return {name: cfg for name, cfg, _ in self.entries}


def resolve(model: nn.Module, config) -> PatchPlan:
    """Which module gets which LayerConfig, validated against the model (nothing is changed). Raises ValueError
    naming the config path: unknown layer type, layer index out of range, a layer listed twice, a target that
    matches no linear module, a module that cannot be patched."""
    cfg = load_config(config)
    src = f"{cfg.source}: " if cfg.source else ""
    modules = dict(model.named_modules())
    chosen: Dict[str, Tuple[LayerConfig, str]] = {}
    if cfg.form == "layer_types":
        if cfg.rules:
            prefix, layers = decoder_layers(model)
            rel_paths = _block_linears(layers[0])
        for rule in cfg.rules:
            assert isinstance(rule, LayerTypeRule)
            rels = _layer_type_matches(rule.layer_type, rel_paths)
            if not rels:
                raise ValueError(f"{src}{rule.path}: no linear module of type {rule.layer_type!r} in the decoder "
                                 f"layers of {type(model).__name__}; layer types: {', '.join(layer_types(model))}")
            ids = range(len(layers)) if rule.layer_ids is None else rule.layer_ids
            for idx in ids:
                if idx >= len(layers):
                    raise ValueError(f"{src}{rule.path}.layer_ids: layer {idx} is out of range; "
                                     f"{type(model).__name__} has {len(layers)} decoder layers (0..{len(layers) - 1})")
                for rel in rels:
                    name = f"{prefix}.{idx}.{rel}" if prefix else f"{idx}.{rel}"
                    if name not in modules:
                        raise ValueError(f"{src}{rule.path}: decoder layer {idx} has no module {rel!r}")
                    if name in chosen:
                        raise ValueError(f"{src}{rule.path}: {name} is also configured by {chosen[name][1]}; "
                                         "list each layer once")
                    chosen[name] = (rule.config, rule.path)
    else:
        best: Dict[str, Tuple[int, TargetRule]] = {}
        for rule in cfg.rules:
            assert isinstance(rule, TargetRule)
            hits = 0
            for name, m in modules.items():
                if not name or not is_linear_like(m):
                    continue
                level = max(_match_level(t, name, m) for t in rule.targets)
                if not level:
                    continue
                if any(_match_level(t, name, m) for t in rule.ignore + cfg.ignore):
                    hits += 1  # matched, then ignored on purpose
                    continue
                hits += 1
                prev = best.get(name)
                if prev is not None and prev[0] == level:
                    raise ValueError(f"{src}{rule.path}: {name} is also matched by {prev[1].path} with a target "
                                     "of the same kind; make one of them more specific or add an ignore")
                if prev is None or level > prev[0]:
                    best[name] = (level, rule)
            if not hits:
                raise ValueError(f"{src}{rule.path}.targets: {list(rule.targets)} match no linear module of "
                                 f"{type(model).__name__}")
        chosen = {name: (r.config, r.path) for name, (_, r) in best.items()}
    order = {name: i for i, name in enumerate(modules)}
    entries = tuple(sorted(((n, c, p) for n, (c, p) in chosen.items()), key=lambda e: order[e[0]]))
    plan = PatchPlan(entries)
    _check_plan(model, plan, src)
    return plan


def _check_plan(model: nn.Module, plan: PatchPlan, src: str) -> None:
    modules = dict(model.named_modules())
    owners: Dict[int, List[str]] = {}
    for name, m in modules.items():
        for pname, p in m.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(f"{name}.{pname}" if name else pname)
    for name, cfg, path in plan.entries:
        m = modules[name]
        if not is_linear_like(m):
            raise ValueError(f"{src}{path}: {name} is a {type(m).__name__}, not a linear layer")
        if cfg.is_dense:
            continue
        if m.weight.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{src}{path}: {name} has {m.weight.dtype} weights; qsparse kernels take float32, "
                             "float16 or bfloat16 (convert the model with .float() or .to(torch.bfloat16))")
        tied = [o for o in owners.get(id(m.weight), []) if o != f"{name}.weight"]
        if tied and cfg.sparsity is not None and cfg.mask_mode == "fixed":
            raise ValueError(f"{src}{path}: {name}.weight is tied to {', '.join(tied)}; pruning it in place would "
                             "prune that too (ignore this module, untie the weights, or use mask_mode: dynamic)")


def patch_model(model: nn.Module, config) -> nn.Module:
    """Replace the linear modules that ``config`` names with :class:`~qsparse.BFPLinear`, in place; returns
    ``model``.

    ``config``: a path to a YAML file, a YAML string, a dict or a :class:`~qsparse.config.ModelConfig`, in the
    per-layer-type form (the seed's YAML) or the recipe form (``config_groups`` with ``targets``/``ignore``); see
    :mod:`qsparse.config`. Unlisted modules stay as they are. Each new BFPLinear shares its Parameters with the
    module it replaces (a Conv1D's weight is transposed into a new Parameter); with sparsity, its mask is computed
    from the current weights and masked weights are set to 0 (``mask_mode: fixed``). A module that is already a
    BFPLinear takes the new config (its mask is recomputed). On a Hugging Face model the config is recorded in
    ``model.config.quantization_config`` (``quant_method: qsparse``), so ``save_pretrained`` / ``from_pretrained``
    restore the same model.

    All validation happens first: on error (ValueError naming the YAML path) the model is unchanged."""
    cfg = load_config(config)
    plan = resolve(model, cfg)
    modules = dict(model.named_modules())
    staged = []
    for name, layer_cfg, _ in plan.entries:  # build everything first: nothing of the model is modified here
        new = BFPLinear.wrap(modules[name], layer_cfg)
        mask = new.compute_mask() if new.mask is not None and new.weight.device.type != "meta" else None
        staged.append((name, new, mask))
    for name, new, mask in staged:
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, new)
        if mask is not None:
            new.set_mask(mask)
    logger.info("qsparse: patched %d modules of %s", len(staged), type(model).__name__)
    from . import hf_quantizer

    hf_quantizer.attach(model, cfg)
    return model


def patched_modules(model: nn.Module) -> List[Tuple[str, BFPLinear]]:
    """(name, module) of every BFPLinear in the model, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BFPLinear)]


def unpatch_model(model: nn.Module, materialize: bool = True) -> nn.Module:
    """Replace every BFPLinear by a plain nn.Linear, in place. ``materialize=True``: the new weight is the
    effective weight (masked and fake-quantized); False: the stored weight."""
    modules = dict(model.named_modules())
    for name, m in patched_modules(model):
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, m.to_linear(materialize=materialize))
    from . import hf_quantizer

    hf_quantizer.detach(model)
    return model


# ---- summary -----------------------------------------------------------------------------------------------------


def _weight_bits(m: nn.Module, cfg: Optional[LayerConfig]) -> float:
    """Storage bits per weight position: kept elements at the element width, per-group scales over the dense
    groups, and mask metadata (N:M: ceil(log2 M) bits per kept element, as 2:4 hardware stores it; unstructured:
    one bit per position)."""
    dense_bits = float(torch.finfo(m.weight.dtype).bits)
    if cfg is None:
        return dense_bits
    cols = m.weight.shape[-1]
    if cfg.weight is not None:
        f = cfg.weight
        d = _formats.describe(f, row_length=cols) if f.group_size in (None, "row") else _formats.describe(f)
        elem, overhead = float(d.element_bits), float(d.overhead_bits or 0.0)
        overhead += d.tensor_scale_bits / max(m.weight.numel(), 1)
    else:
        elem, overhead = dense_bits, 0.0
    sp = cfg.sparsity
    if sp is None:
        return elem + overhead
    if sp.structured:
        kept = sp.keep / sp.group
        meta = kept * max(sp.group - 1, 0).bit_length()
    else:
        kept = 1.0 - sp.fraction
        meta = 1.0
    return kept * elem + overhead + meta


@dataclass(frozen=True)
class SummaryRow:
    name: str
    in_features: int
    out_features: int
    weight: str
    activation: str
    sparsity: str
    density: float  # nonzero fraction of the effective weight's mask (1.0 when dense)
    bits_per_weight: float
    params: int


@dataclass(frozen=True)
class Summary:
    """What :func:`summary` reports: one row per linear module (patched or not), and totals over them."""

    rows: Tuple[SummaryRow, ...]
    total_params: int  # every parameter of the model (tied ones once)
    linear_params: int
    patched_params: int
    bits_per_weight: float  # mean over all linear weights, weighted by size
    patched_bits_per_weight: float  # mean over the patched linear weights

    def __str__(self) -> str:
        head = ("module", "in", "out", "weight", "activation", "sparsity", "density", "bits/w", "params")
        lines = [head] + [(r.name, str(r.in_features), str(r.out_features), r.weight, r.activation, r.sparsity,
                           f"{r.density:.3f}", f"{r.bits_per_weight:.3f}", f"{r.params:,}") for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        fmt = lambda line: "  ".join(c.ljust(w) if i < 6 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        out = [fmt(lines[0]), "  ".join("-" * w for w in widths)] + [fmt(line) for line in lines[1:]]
        patched = sum(1 for r in self.rows if r.weight != "-" or r.activation != "-" or r.sparsity != "-")
        out.append("")
        out.append(f"{patched} of {len(self.rows)} linear modules patched; parameters: {self.total_params:,} total, "
                   f"{self.linear_params:,} in linear modules, {self.patched_params:,} patched")
        out.append(f"bits per weight: {self.patched_bits_per_weight:.3f} over patched modules, "
                   f"{self.bits_per_weight:.3f} over all linear modules")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {"rows": [r.__dict__ for r in self.rows], "total_params": self.total_params,
                "linear_params": self.linear_params, "patched_params": self.patched_params,
                "bits_per_weight": self.bits_per_weight, "patched_bits_per_weight": self.patched_bits_per_weight}


def summary(model: nn.Module) -> Summary:
    """A table of every linear module: formats, sparsity, measured density, storage bits per weight (elements,
    scales and mask metadata; see ``_weight_bits``), parameters; and totals. ``print(qsparse.summary(model))``."""
    rows = []
    seen = set()
    bits_all = bits_patched = 0.0
    n_all = n_patched = 0
    for name, m in model.named_modules():
        if not name or not is_linear_like(m) or id(m.weight) in seen:
            continue
        seen.add(id(m.weight))
        cfg = m.config if isinstance(m, BFPLinear) else None
        n = m.weight.numel()
        if isinstance(m, BFPLinear) and m.mask is not None and m.weight.device.type != "meta":
            density = float(m._current_mask().float().mean()) if n else 1.0
        else:
            density = 1.0
        out_f, in_f = (m.weight.shape[1], m.weight.shape[0]) if is_conv1d(m) else tuple(m.weight.shape)
        bits = _weight_bits(m, cfg if cfg is not None and not cfg.is_dense else None)
        active = cfg is not None and not cfg.is_dense
        rows.append(SummaryRow(name, in_f, out_f, str(cfg.weight) if active and cfg.weight else "-",
                               str(cfg.activation) if active and cfg.activation else "-",
                               str(cfg.sparsity) if active and cfg.sparsity else "-", density, bits,
                               n + (m.bias.numel() if m.bias is not None else 0)))
        bits_all += bits * n
        n_all += n
        if active:
            bits_patched += bits * n
            n_patched += n
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return Summary(tuple(rows), total, sum(r.params for r in rows),
                   sum(r.params for r in rows if r.weight != "-" or r.activation != "-" or r.sparsity != "-"),
                   bits_all / n_all if n_all else 0.0, bits_patched / n_patched if n_patched else 0.0)


__all__ = ["patch_model", "unpatch_model", "resolve", "PatchPlan", "summary", "Summary", "SummaryRow",
           "decoder_layers", "layer_types", "patched_modules", "is_linear_like"]
