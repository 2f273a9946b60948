"""One-shot compression of a whole model: GPTQ, SparseGPT, Wanda and magnitude pruning, layer by layer.

As the references do it (IST-DASLab/gptq ``*_sequential``, IST-DASLab/sparsegpt, locuslab/wanda): the inputs of
decoder block 0 are captured for every calibration window; for block i, every targeted linear's input statistics
(a Hessian ``H = (2/n) sum x x^T``, or Wanda's column norms) are accumulated over all windows, one accumulator per
distinct input (q/k/v share one, gate/up share one), the linears are compressed, and the block's outputs are
recomputed with the compressed weights to become the inputs of block i + 1. With ``true_sequential`` (default) the
linears of a block are compressed in the order the block runs them, in groups that share an input, each group's
statistics taken after the groups before it were compressed (GPTQ's ``--true-sequential``). Only the block being
compressed and its statistics live on ``device``; the rest of the model stays where it is.

A recipe is a list of stages, each a full pass over the model::

    stages:
      - sparsegpt: {sparsity: "2:4"}                       # keep 2 of 4; or 0.5 (unstructured); weight: joint quantization
      - gptq: {weight: {name: int4, group_size: 128}, actorder: true}
    true_sequential: true

Stage options: ``targets`` / ``ignore`` (the patterns of qsparse recipes; default ``[Linear]`` / ``[lm_head]``; only
linears inside decoder blocks are compressed), ``blocksize`` and ``percdamp`` (GPTQ/SparseGPT), ``weight`` (the
format: required by gptq, joint quantization for sparsegpt), ``group_size``, ``actorder``, ``static_groups``
(gptq), ``sparsity`` (``"keep:group"``, a fraction, ``{keep, group}`` or ``{group, prune_n}``), ``activation``
(an input format to set on the module). Pruning stages leave a fixed mask in the module (``mask_mode: fixed``), and
a later gptq stage keeps it (its zeros stay zero), so fine-tuning and further stages continue from there.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..config import LayerConfig, SparsityConfig, _layer_config, _str_list, _check_pattern
from ..data import rows_of
from ..formats import Format
from ..functional import op_args
from ..nn.linear import BFPLinear
from .transformers import _match_level, decoder_layers, is_linear_like

logger = logging.getLogger("qsparse")

METHODS = ("gptq", "sparsegpt", "wanda", "magnitude")
_COMMON = {"targets", "ignore"}
_OPTIONS = {
    "gptq": _COMMON | {"weight", "group_size", "actorder", "static_groups", "blocksize", "percdamp", "activation",
                       "transform", "transform_group"},
    "sparsegpt": _COMMON | {"sparsity", "weight", "group_size", "static_groups", "blocksize", "percdamp",
                            "activation"},
    "wanda": _COMMON | {"sparsity", "activation"},
    "magnitude": _COMMON | {"sparsity", "per_row", "activation"},
}
RECIPE_KEYS = {"stages", "true_sequential", "version"}


# ---- recipe ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One pass of a compression recipe (see the module doc); ``path`` locates it in the recipe for errors."""

    method: str
    targets: Tuple[str, ...]
    ignore: Tuple[str, ...]
    weight: Optional[Format]
    activation: Optional[Format]
    sparsity: Optional[SparsityConfig]
    options: Tuple[Tuple[str, Any], ...]  # the algorithm's own keyword arguments
    path: str

    def layer_keys(self) -> Dict[str, Any]:
        """The LayerConfig keys this stage sets on the modules it compresses (weight, activation, sparsity)."""
        d: Dict[str, Any] = {}
        for key in ("weight", "activation", "sparsity"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v.to_dict()
        return d

    def to_dict(self) -> dict:
        d: Dict[str, Any] = {"targets": list(self.targets), "ignore": list(self.ignore), **self.layer_keys()}
        d.update(dict(self.options))
        return {self.method: d}


@dataclass(frozen=True)
class CompressionRecipe:
    stages: Tuple[Stage, ...]
    true_sequential: bool = True

    def to_dict(self) -> dict:
        return {"stages": [s.to_dict() for s in self.stages], "true_sequential": self.true_sequential}


def _stage(entry, path: str) -> Stage:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ValueError(f"{path}: a stage is a mapping with one key, the method ({', '.join(METHODS)}), got "
                         f"{entry!r}")
    (method, opts), = entry.items()
    if method not in METHODS:
        raise ValueError(f"{path}: unknown method {method!r}; allowed: {', '.join(METHODS)}")
    opts = dict(opts or {})
    where = f"{path}.{method}"
    unknown = set(opts) - _OPTIONS[method]
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}; allowed: {sorted(_OPTIONS[method])}")
    targets = _str_list(opts.pop("targets", ["Linear"]), f"{where}.targets")
    ignore = _str_list(opts.pop("ignore", ["lm_head"]), f"{where}.ignore")
    for t in targets + ignore:
        _check_pattern(t, where)
    group_size = opts.pop("group_size", None)
    weight = opts.pop("weight", None)
    activation = opts.pop("activation", None)
    sparsity = opts.pop("sparsity", None)
    # LayerConfig validates formats and sparsity exactly as patch configs do, with the same messages
    cfg = _layer_config({k: v for k, v in (("weight", weight), ("activation", activation), ("sparsity", sparsity))
                         if v is not None}, where)
    w = cfg.weight
    if w is not None and group_size is not None:
        try:
            w = Format.parse(w, group_size=group_size)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{where}.group_size: {e}") from None
    elif group_size is not None:
        raise ValueError(f"{where}.group_size: applies to the weight format; give weight too")
    if method == "gptq" and w is None:
        raise ValueError(f"{where}: gptq needs weight (the format to quantize to)")
    if method in ("sparsegpt", "wanda", "magnitude") and cfg.sparsity is None:
        raise ValueError(f"{where}: {method} needs sparsity ('keep:group' such as '2:4', or a fraction)")
    if cfg.sparsity is not None and cfg.sparsity.per_row and method != "magnitude":
        raise ValueError(f"{where}.sparsity: per_row applies to magnitude pruning (wanda prunes per row, sparsegpt "
                         "per block)")
    for k in ("actorder", "static_groups", "per_row"):
        if k in opts and not isinstance(opts[k], bool):
            raise ValueError(f"{where}.{k}={opts[k]!r} is not allowed; expected true or false")
    grouped = w is not None and op_args(w)[1] > 0
    if method == "gptq" and opts.get("actorder") and grouped:
        # a BFPLinear keeps one record per group of consecutive columns: act-order with groups fitted in the
        # permuted order would need a g_idx; static groups (fitted up front, consecutive) keep the records usable
        if opts.get("static_groups") is False:
            raise ValueError(f"{where}: actorder with a grouped format needs static_groups: true here (a module "
                             "keeps one scale per run of consecutive columns); qsparse.algorithms.gptq has both")
        opts["static_groups"] = True
    if "transform_group" in opts and "transform" not in opts:
        raise ValueError(f"{where}.transform_group: give transform: hadamard too")
    if "transform" in opts:
        try:
            LayerConfig(transform=opts["transform"], transform_group=opts.get("transform_group", 128))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    if "blocksize" in opts and (isinstance(opts["blocksize"], bool) or not isinstance(opts["blocksize"], int)
                                or opts["blocksize"] < 1):
        raise ValueError(f"{where}.blocksize={opts['blocksize']!r} is not allowed; expected an int >= 1")
    if "percdamp" in opts and (isinstance(opts["percdamp"], bool) or not isinstance(opts["percdamp"], (int, float))
                               or not opts["percdamp"] > 0):
        raise ValueError(f"{where}.percdamp={opts['percdamp']!r} is not allowed; expected a number > 0")
    return Stage(method, targets, ignore, w, cfg.activation, cfg.sparsity, tuple(sorted(opts.items())), path)


def load_recipe(recipe) -> CompressionRecipe:
    """A validated CompressionRecipe from a dict ``{stages: [...], true_sequential: ...}``, a list of stages, a
    YAML string or a path."""
    if isinstance(recipe, CompressionRecipe):
        return recipe
    if isinstance(recipe, str):
        import os

        import yaml

        text = open(recipe, encoding="utf-8").read() if os.path.exists(recipe) else recipe
        recipe = yaml.safe_load(text)
    if isinstance(recipe, (list, tuple)):
        recipe = {"stages": list(recipe)}
    if not isinstance(recipe, dict):
        raise ValueError(f"a compression recipe is a mapping with stages, or a list of stages; got "
                         f"{type(recipe).__name__}")
    unknown = set(recipe) - RECIPE_KEYS
    if unknown:
        raise ValueError(f"unknown recipe key(s) {sorted(unknown)}; allowed: {sorted(RECIPE_KEYS)}")
    stages = recipe.get("stages")
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ValueError("stages: expected a non-empty list of stages such as {gptq: {weight: int4}}")
    ts = recipe.get("true_sequential", True)
    if not isinstance(ts, bool):
        raise ValueError(f"true_sequential={ts!r} is not allowed; expected true or false")
    return CompressionRecipe(tuple(_stage(s, f"stages[{i}]") for i, s in enumerate(stages)), ts)


# ---- calibration data ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Calibration windows (FORMATS.md section 11): ``nsamples`` windows of ``seqlen`` tokens from ``source`` (a
    text/jsonl path, a list of rows, or ``wikitext2`` / ``c4`` from the hub), drawn with ``seed``."""

    source: Any = "wikitext2"
    nsamples: int = 128
    seqlen: int = 2048
    seed: int = 0
    split: str = "train"

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        unknown = set(d) - {"source", "nsamples", "seqlen", "seed", "split"}
        if unknown:
            raise ValueError(f"unknown calibration key(s) {sorted(unknown)}; allowed: source, nsamples, seqlen, "
                             "seed, split")
        c = cls(**d)
        for k, lo in (("nsamples", 1), ("seqlen", 2), ("seed", 0)):
            v = getattr(c, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"calibration.{k}={v!r} is not allowed; expected an int >= {lo}")
        return c


def calibration_windows(tokenizer, source="wikitext2", nsamples: int = 128, seqlen: int = 2048, seed: int = 0,
                        split: str = "train") -> torch.Tensor:
    """[nsamples, seqlen] token ids, drawn as GPTQ's datautils draws them: for C4, a random document of at least
    seqlen tokens and a random window in it; otherwise the rows joined with "\\n\\n", tokenized once, and
    ``nsamples`` windows at random offsets (Python's ``random`` seeded with ``seed``: the reference's draws)."""
    rng = random.Random(seed)
    rows = rows_of(source, split=split)
    out = []
    if source == "c4":
        tries = 0
        while len(out) < nsamples:
            i = rng.randint(0, len(rows) - 1)
            ids = tokenizer(rows[i], return_tensors="pt").input_ids[0]
            if ids.numel() < seqlen:
                tries += 1
                if tries > 1000 * nsamples:
                    raise ValueError(f"too few documents have {seqlen} tokens")
                continue
            j = rng.randint(0, ids.numel() - seqlen - 1)
            out.append(ids[j: j + seqlen])
        return torch.stack(out)
    ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[0]
    if ids.numel() < seqlen + 1:
        raise ValueError(f"the calibration text has {ids.numel()} tokens; windows of {seqlen} need more")
    for _ in range(nsamples):
        i = rng.randint(0, ids.numel() - seqlen - 1)
        out.append(ids[i: i + seqlen])
    return torch.stack(out)


# ---- the layer-by-layer pass -----------------------------------------------------------------------------------------


class _Captured(Exception):
    pass


@dataclass
class ModuleReport:
    name: str
    stage: str
    loss: Optional[float]
    damp: Optional[float]
    dead_columns: int
    seconds: float
    density: float


@dataclass
class CompressionReport:
    """What :func:`compress` did: one row per compressed module and stage, in order."""

    modules: List[ModuleReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "modules": [m.__dict__ for m in self.modules]}


def _targets(model: nn.Module, stage: Stage, prefix: str, n_layers: int) -> Dict[int, List[str]]:
    """Decoder block index -> names (relative to the block) of the linears the stage compresses."""
    per_layer: Dict[int, List[str]] = {}
    hits = 0
    for name, m in model.named_modules():
        if not name or not is_linear_like(m):
            continue
        if not any(_match_level(t, name, m) for t in stage.targets):
            continue
        if any(_match_level(t, name, m) for t in stage.ignore):
            continue
        hits += 1
        head = f"{prefix}." if prefix else ""
        rest = name[len(head):] if name.startswith(head) else None
        idx, _, rel = (rest or "").partition(".")
        if rest is None or not idx.isdigit() or int(idx) >= n_layers or not rel:
            raise ValueError(f"{stage.path}: {name} is not inside a decoder block; one-shot compression works block "
                             f"by block (add it to ignore)")
        per_layer.setdefault(int(idx), []).append(rel)
    if not hits:
        raise ValueError(f"{stage.path}.targets: {list(stage.targets)} match no linear module")
    return per_layer


def _check_modules(model: nn.Module, stage: Stage, prefix: str, per_layer: Dict[int, List[str]]) -> None:
    modules = dict(model.named_modules())
    for idx, rels in per_layer.items():
        for rel in rels:
            name = f"{prefix}.{idx}.{rel}" if prefix else f"{idx}.{rel}"
            m = modules[name]
            if m.weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise ValueError(f"{stage.path}: {name} has {m.weight.dtype} weights; compress float32, float16 or "
                                 "bfloat16 models")
            try:
                cfg = _new_config(m, stage)
            except ValueError as e:
                raise ValueError(f"{stage.path}: {name}: {e}") from None
            in_f = m.weight.shape[1] if isinstance(m, nn.Linear) else m.weight.shape[0]
            if cfg.transform is not None and in_f % cfg.transform_group:
                raise ValueError(f"{stage.path}: {name} has {in_f} input features, not a multiple of transform_group="
                                 f"{cfg.transform_group}")
            if isinstance(m, BFPLinear) and m.config.mask_mode == "dynamic" and stage.sparsity is not None:
                raise ValueError(f"{stage.path}: {name} recomputes its mask every forward (mask_mode: dynamic), "
                                 "which would discard the pruning; patch it with mask_mode: fixed")


def _new_config(m: nn.Module, stage: Stage) -> LayerConfig:
    old = m.config if isinstance(m, BFPLinear) else LayerConfig()
    d = {**old.to_dict(), **stage.layer_keys()}
    if stage.sparsity is not None:
        d["mask_mode"] = "fixed"
    opts = dict(stage.options)
    if "transform" in opts:
        d["transform"] = opts["transform"]
        d["transform_group"] = opts.get("transform_group", 128)
    return LayerConfig.from_dict(d)


def _capture_inputs(model: nn.Module, layers: nn.ModuleList, windows: torch.Tensor, batch_size: int,
                    device: torch.device) -> List[Tuple[torch.Tensor, tuple, dict]]:
    """(hidden states, args, kwargs) of decoder block 0 for each batch of windows, on ``device``. The model runs
    up to block 0 where its embeddings are (the windows go to the input embedding's device)."""
    captured = []
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    in_dev = emb.weight.device if emb is not None else device

    def hook(module, args, kwargs):
        captured.append((_to(args[0], device), _to(args[1:], device), _to(kwargs, device)))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for b in range(0, windows.shape[0], batch_size):
            try:
                model(windows[b: b + batch_size].to(in_dev), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    if len(captured) != -(-windows.shape[0] // batch_size):
        raise RuntimeError("decoder block 0 was not called once per calibration batch")
    return captured


def _to(obj, device: torch.device):
    """obj with every tensor in it (tuples, lists, dicts) moved to device."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _block_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _sharing_groups(layer: nn.Module, rels: List[str], batch) -> List[List[str]]:
    """The targeted linears of a block in the order the block runs them, grouped by shared input tensor."""
    order: List[Tuple[torch.Tensor, str]] = []  # holds the inputs, so that identity comparisons stay valid
    modules = dict(layer.named_modules())

    def make(rel):
        def hook(module, args):
            order.append((args[0], rel))
        return hook

    handles = [modules[rel].register_forward_pre_hook(make(rel)) for rel in rels]
    try:
        with torch.no_grad():
            layer(batch[0], *batch[1], **batch[2])
    finally:
        for h in handles:
            h.remove()
    groups: List[Tuple[torch.Tensor, List[str]]] = []
    for x, rel in order:
        group = next((g for t, g in groups if t is x), None)
        if group is None:
            groups.append((x, [rel]))
        elif rel not in group:
            group.append(rel)
    missing = set(rels) - {r for _, g in groups for r in g}
    if missing:
        raise RuntimeError(f"modules {sorted(missing)} were not called by their decoder block")
    return [g for _, g in groups]


def _accumulate(layer: nn.Module, rels: List[str], batches, stat_cls) -> Dict[str, Any]:
    """One statistics object per distinct input of ``rels`` (modules reading the same tensor share one), fed with
    every batch through hooks on the block's forward."""
    modules = dict(layer.named_modules())
    stats: Dict[str, Any] = {}
    seen: List[Tuple[torch.Tensor, Any]] = []  # this forward's inputs and their statistics

    def make(rel):
        def hook(module, args):
            x = args[0]
            st = next((s for t, s in seen if t is x), None)
            if st is None:
                st = stats.get(rel)
                if st is None:
                    st = stat_cls(x.shape[-1], device=x.device)
                st.add_batch(x.detach())
                seen.append((x, st))
            stats[rel] = st
        return hook

    handles = [modules[rel].register_forward_pre_hook(make(rel)) for rel in rels]
    try:
        with torch.no_grad():
            for batch in batches:
                seen.clear()
                layer(batch[0], *batch[1], **batch[2])
    finally:
        for h in handles:
            h.remove()
    return stats


def _hadamard(x: torch.Tensor, group: int) -> torch.Tensor:
    from .. import ops

    return ops.hadamard(x.contiguous(), group)


def _apply_result(parent_layer: nn.Module, rel: str, stage: Stage, weight: Optional[torch.Tensor],
                  mask: Optional[torch.Tensor], qparams: Optional[torch.Tensor] = None) -> BFPLinear:
    modules = dict(parent_layer.named_modules())
    old = modules[rel]
    cfg = _new_config(old, stage)
    new = old if isinstance(old, BFPLinear) and cfg == old.config else BFPLinear.wrap(old, cfg)
    if new is not old:
        if isinstance(old, BFPLinear) and old.mask is not None and new.mask is not None:
            new.mask.copy_(old.mask)
            new._mask_ready = True
        parent, _, attr = rel.rpartition(".")
        setattr(modules[parent] if parent else parent_layer, attr, new)
    with torch.no_grad():
        if weight is not None:
            new.weight.copy_(weight.to(new.weight.dtype))
        if mask is not None:
            new.set_mask(mask.to(new.weight.device))
    if qparams is not None:  # the weights lie on the grid of these parameters: keep them
        new.set_weight_qparams(qparams)
    elif stage.weight is not None and new.weight_qparams is not None:
        new.set_weight_qparams(None)
    new._cache_key = None
    return new


def _compress_group(layer: nn.Module, rels: List[str], stage: Stage, stats: Dict[str, Any], report, layer_name: str):
    from .. import algorithms as alg

    modules = dict(layer.named_modules())
    opts = dict(stage.options)
    for rel in rels:
        m = modules[rel]
        t0 = time.perf_counter()
        W = m.weight.detach()
        if isinstance(m, nn.Linear):
            W = W.float()
        else:  # Conv1D: [in, out]
            W = W.t().float()
        existing = m.mask if isinstance(m, BFPLinear) and m.mask is not None else None
        sp = stage.sparsity
        nm = {"keep": sp.keep, "group": sp.group} if sp is not None and sp.structured else \
            ({"sparsity": sp.fraction} if sp is not None else {})
        loss = damp = None
        dead = 0
        weight = mask = qparams = None
        if stage.method == "gptq":
            cfg = _new_config(m, stage)
            H = stats[rel].H
            if cfg.transform is not None:  # quantize the rotated weight under the rotated inputs' Hessian R H R
                g = cfg.transform_group
                W = _hadamard(W, g)
                H = _hadamard(_hadamard(H, g).t().contiguous(), g).t()
            res = alg.gptq(W, H, stage.weight, preserve_mask=existing,
                           **{k: v for k, v in opts.items() if k in ("actorder", "static_groups", "blocksize",
                                                                      "percdamp")})
            weight, qparams, loss, damp, dead = res.weight, res.qparams, res.loss, res.damp, res.dead_columns
            if cfg.transform is not None:  # stored in the input's basis; the module rotates it back at forward
                weight = _hadamard(weight, cfg.transform_group)
        elif stage.method == "sparsegpt":
            res = alg.sparsegpt(W, stats[rel].H, fmt=stage.weight, **nm,
                                **{k: v for k, v in opts.items() if k in ("static_groups", "blocksize", "percdamp")})
            weight, mask, qparams = res.weight, res.mask, res.qparams
            loss, damp, dead = res.loss, res.damp, res.dead_columns
        elif stage.method == "wanda":
            mask = alg.wanda_mask(W, stats[rel].x_norm_sq, **nm)
        else:
            mask = alg.magnitude_prune(W, per_row=opts.get("per_row", False), **nm)
        new = _apply_result(layer, rel, stage, weight, mask, qparams)
        density = float(new.mask.float().mean()) if new.mask is not None else 1.0
        report.modules.append(ModuleReport(f"{layer_name}.{rel}", stage.method, loss, damp, dead,
                                           time.perf_counter() - t0, density))
        logger.debug("%s %s: loss %s, density %.3f", stage.method, f"{layer_name}.{rel}", loss, density)


def _matmul_precisions():
    from ..algorithms import MATMUL_PRECISIONS

    return MATMUL_PRECISIONS


def _run_stage(model, stage: Stage, windows: torch.Tensor, true_sequential: bool, batch_size: int,
               device: torch.device, report: CompressionReport, progress: bool, hessian_matmul: str = "fp32") -> None:
    from tqdm.auto import tqdm

    from .. import algorithms as alg

    prefix, layers = decoder_layers(model)
    per_layer = _targets(model, stage, prefix, len(layers))
    _check_modules(model, stage, prefix, per_layer)
    needs_data = stage.method != "magnitude"
    inputs = _capture_inputs(model, layers, windows, batch_size, device) if needs_data else None
    stat_cls = alg.InputNorms if stage.method == "wanda" else functools.partial(alg.Hessian, matmul=hessian_matmul)
    for i in tqdm(range(len(layers)), desc=stage.method, unit="layer", disable=not progress):
        layer = layers[i]
        rels = per_layer.get(i, [])
        if not rels and not needs_data:
            continue
        home = next(layer.parameters()).device
        layer.to(device)
        name = f"{prefix}.{i}" if prefix else str(i)
        if rels:
            if not needs_data:
                _compress_group(layer, rels, stage, {}, report, name)
            else:
                groups = _sharing_groups(layer, rels, inputs[0]) if true_sequential else [rels]
                for group in groups:
                    stats = _accumulate(layer, group, inputs, stat_cls)
                    _compress_group(layer, group, stage, stats, report, name)
        if needs_data:
            with torch.no_grad():
                inputs = [(_block_output(layer(h, *a, **k)), a, k) for h, a, k in inputs]
        layer.to(home)


def _snapshot(model: nn.Module, rec: CompressionRecipe, prefix: str, n_layers: int):
    """What a failed compress restores: every targeted module object and a CPU copy of its tensors."""
    modules = dict(model.named_modules())
    names = set()
    for stage in rec.stages:
        for idx, rels in _targets(model, stage, prefix, n_layers).items():
            names.update(f"{prefix}.{idx}.{r}" if prefix else f"{idx}.{r}" for r in rels)
    return {n: (modules[n], {k: v.detach().to("cpu", copy=True) for k, v in modules[n].state_dict().items()})
            for n in names}


def _restore(model: nn.Module, snap) -> None:
    modules = dict(model.named_modules())
    for name, (module, state) in snap.items():
        parent, _, attr = name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, module)
        with torch.no_grad():
            for k, v in module.state_dict().items():
                v.copy_(state[k])


def compress(model: nn.Module, recipe, calibration=None, *, tokenizer=None, batch_size: int = 8,
             device: Union[str, torch.device, None] = None, atomic: bool = True, progress: bool = True,
             hessian_matmul: str = "fp32") -> CompressionReport:
    """Compress ``model`` in place with a recipe of one-shot stages (see the module doc); returns a report.

    calibration: a LongTensor of windows ``[nsamples, seqlen]``, a :class:`Calibration`, or its dict (``{source,
        nsamples, seqlen, seed}``; needs ``tokenizer``). Not needed for magnitude-only recipes.
    device: where each decoder block runs while it is compressed (default: where the model's parameters are).
    hessian_matmul: the precision of the Hessians' matmuls (``fp32``, ``tf32`` or ``bf16``; accumulated in float32
        either way: qsparse.algorithms.Hessian).
    atomic: keep a CPU copy of the targeted weights and restore them if anything fails midway (an error, an
        interrupt), so that a failed call leaves the model as it was; False saves that memory.
    Everything is validated before the first module changes. On a Hugging Face model the result is recorded as
    patch_model records it, so ``save_pretrained`` / ``from_pretrained`` round-trip it."""
    rec = load_recipe(recipe)
    if hessian_matmul not in _matmul_precisions():
        raise ValueError(f"hessian_matmul={hessian_matmul!r} is not allowed; expected one of "
                         f"{', '.join(_matmul_precisions())}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; expected an int >= 1")
    prefix, layers = decoder_layers(model)
    for stage in rec.stages:  # validate every stage against the model before changing anything
        _check_modules(model, stage, prefix, _targets(model, stage, prefix, len(layers)))
    windows = None
    if any(s.method != "magnitude" for s in rec.stages):
        if isinstance(calibration, torch.Tensor):
            windows = calibration
        else:
            if calibration is None:
                raise ValueError("calibration is needed for gptq, sparsegpt and wanda: token windows or "
                                 "{source, nsamples, seqlen, seed}")
            cal = calibration if isinstance(calibration, Calibration) else Calibration.from_dict(dict(calibration))
            if tokenizer is None:
                raise ValueError("a tokenizer is needed to draw calibration windows from text")
            windows = calibration_windows(tokenizer, cal.source, cal.nsamples, cal.seqlen, cal.seed, cal.split)
        if windows.dim() != 2 or windows.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"calibration windows must be an int64 tensor [nsamples, seqlen], got "
                             f"{windows.dtype} {tuple(windows.shape)}")
        windows = windows.long()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    report = CompressionReport()
    t0 = time.perf_counter()
    cfg = getattr(model, "config", None)
    use_cache = getattr(cfg, "use_cache", None)
    was_training = model.training
    model.eval()
    snap = _snapshot(model, rec, prefix, len(layers)) if atomic else None
    try:
        if use_cache is not None:
            cfg.use_cache = False
        for stage in rec.stages:
            _run_stage(model, stage, windows, rec.true_sequential, batch_size, dev, report, progress, hessian_matmul)
    except BaseException:
        if snap is not None:
            _restore(model, snap)
            logger.warning("compress failed; the model was restored to its state before the call")
        raise
    finally:
        if use_cache is not None:
            cfg.use_cache = use_cache
        model.train(was_training)
    report.seconds = time.perf_counter() - t0
    from . import hf_quantizer
    from ..config import ModelConfig

    hf_quantizer.attach(model, ModelConfig(()), compression=rec.to_dict())
    logger.info("compressed %d modules in %.1f s", len(report.modules), report.seconds)
    return report


__all__ = ["compress", "load_recipe", "CompressionRecipe", "Stage", "Calibration", "calibration_windows",
           "CompressionReport", "ModuleReport", "METHODS"]
