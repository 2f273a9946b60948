"""Layer-wise sensitivity (the seed's opt-6.7b-layerwise-sensitivity experiment): compress one layer (type x decoder
index) at a time, evaluate, and tabulate the perplexity change against the uncompressed model.

Each cell's layer config is the compression config's entry for that layer type (or ``sensitivity.layers[type]``),
applied to that one decoder layer of a fresh copy of the model. Progress is saved after every cell
(``sensitivity.json``, atomically); a rerun with the same model, layer configs and evaluation skips the cells it has.
Outputs: ``sensitivity.json``, ``sensitivity.csv`` (layer_type, layer, ppl, delta), ``sensitivity.png`` (a heatmap
of the perplexity change, layer types x indices; matplotlib, extra ``plot``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

from ..config import atomic_write_text

logger = logging.getLogger("qsparse")

SECTION_KEYS = {"layer_types", "layer_ids", "layers"}


def _entry_keys(comp: Optional[dict], layer_type: str) -> Optional[dict]:
    if not comp or "config_groups" in comp:
        return None
    body = comp["hbfp"] if set(comp) == {"hbfp"} else comp
    entries = body.get(layer_type)
    if entries is None:
        return None
    e = dict(entries[0] if isinstance(entries, list) else entries)
    e.pop("layer_ids", None)
    return e


def cell_configs(cfg: dict, layer_types: Sequence[str]) -> Dict[str, dict]:
    """layer type -> the layer keys applied to one layer of that type."""
    sec = cfg.get("sensitivity") or {}
    layers = sec.get("layers") or {}
    out = {}
    for lt in layer_types:
        keys = layers.get(lt) or _entry_keys(cfg.get("compression"), lt)
        if keys is None:
            raise ValueError(f"sensitivity: no layer config for layer type {lt!r}: list it under compression (the "
                             "per-layer form) or sensitivity.layers")
        out[lt] = keys
    return out


def _key(cfg: dict, layer_type: str, keys: dict, spec: dict) -> str:
    blob = json.dumps({"model": cfg["model"], "type": layer_type, "keys": keys, "eval": spec}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def heatmap(path: str, layer_types: Sequence[str], ids: Sequence[int], table: Dict[str, Dict[int, float]],
            title: str) -> None:
    """A PNG heatmap of the perplexity change (rows: layer types, columns: decoder layers)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the heatmap needs matplotlib: pip install 'qsparse[plot]'") from None
    import numpy as np

    data = np.full((len(layer_types), len(ids)), np.nan)
    for r, lt in enumerate(layer_types):
        for c, i in enumerate(ids):
            if i in table.get(lt, {}):
                data[r, c] = table[lt][i]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(ids) + 2), max(2.0, 0.6 * len(layer_types) + 1.2)))
    im = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(ids)), [str(i) for i in ids])
    ax.set_yticks(range(len(layer_types)), list(layer_types))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("layer type")
    ax.set_title(title, fontsize=9)
    if data.size <= 400:
        for r in range(data.shape[0]):
            for c in range(data.shape[1]):
                if not np.isnan(data[r, c]):
                    ax.text(c, r, f"{data[r, c]:.3g}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="perplexity change")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def sensitivity(cfg: dict, output_dir: str, layer_types: Optional[Sequence[str]] = None,
                layer_ids: Optional[Sequence[int]] = None, progress: bool = True) -> dict:
    """Run (or resume) the sensitivity sweep of a validated run config; returns the table."""
    from tqdm.auto import tqdm

    from .. import patch_model
    from ..integrations.transformers import decoder_layers
    from ..run import adapt_compression, evaluate_perplexity, load_model, perplexity_specs

    sec = cfg.get("sensitivity") or {}
    unknown = set(sec) - SECTION_KEYS
    if unknown:
        raise ValueError(f"sensitivity: unknown key(s) {sorted(unknown)}; allowed: {sorted(SECTION_KEYS)}")
    specs = perplexity_specs(cfg)
    if not specs:
        raise ValueError("sensitivity needs evaluation.perplexity in the config (the metric of each cell)")
    spec = specs[0]
    layer_types = list(layer_types or sec.get("layer_types") or [])
    if not layer_types:
        raise ValueError("sensitivity: give --layer-types (e.g. fc1,fc2) or sensitivity.layer_types")
    keys_of = cell_configs(cfg, layer_types)
    model, tok = load_model(cfg["model"], cfg.get("tokenizer"), cfg.get("dtype", "float32"),
                            cfg.get("device", "auto"))
    n = len(decoder_layers(model)[1])
    ids = list(layer_ids if layer_ids is not None else
               (range(n) if sec.get("layer_ids", "all") == "all" else sec["layer_ids"]))
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
    if bad:
        raise ValueError(f"sensitivity layer ids {bad} are out of range; {type(model).__name__} has {n} decoder "
                         f"layers (0..{n - 1})")
    adapt = cfg.get("adapt", "auto") is True or (cfg.get("adapt", "auto") == "auto" and cfg.get("_model_overridden"))
    # every cell's config is checked against the model before the first evaluation
    cells = []
    for lt in layer_types:
        for i in ids:
            comp = {lt: [{"layer_ids": [i], **keys_of[lt]}]}
            notes: List[str] = []
            if adapt:
                comp, notes = adapt_compression(comp, model)
            from ..integrations.transformers import resolve

            resolve(model, comp)
            cells.append((lt, i, comp, notes, _key(cfg, lt, keys_of[lt], spec)))
    os.makedirs(output_dir, exist_ok=True)
    state_path = os.path.join(output_dir, "sensitivity.json")
    state = {"cells": {}}
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    base_key = _key(cfg, "-", {}, spec)
    if state.get("baseline", {}).get("key") != base_key:
        r = evaluate_perplexity(model, tok, spec, cfg, progress=False)
        state["baseline"] = {"key": base_key, **r}
        atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
    base = state["baseline"]["ppl"]
    todo = [c for c in cells if state["cells"].get(f"{c[0]}:{c[1]}", {}).get("key") != c[4]]
    logger.info("sensitivity: %d of %d cells to evaluate (%d done before)", len(todo), len(cells),
                len(cells) - len(todo))
    for lt, i, comp, notes, key in tqdm(todo, desc="sensitivity", unit="layer", disable=not progress):
        m = copy.deepcopy(model)
        patch_model(m, comp)
        r = evaluate_perplexity(m, tok, spec, cfg, progress=False)
        del m
        state["cells"][f"{lt}:{i}"] = {"key": key, "layer_type": lt, "layer": i, "ppl": r["ppl"],
                                       "delta": r["ppl"] - base, "compression": comp, "adapted": notes}
        atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
    table: Dict[str, Dict[int, float]] = {lt: {} for lt in layer_types}
    rows = ["layer_type,layer,ppl,delta"]
    for lt, i, *_ in cells:
        c = state["cells"][f"{lt}:{i}"]
        table[lt][i] = c["delta"]
        rows.append(f"{lt},{i},{c['ppl']:.6f},{c['delta']:.6f}")
    atomic_write_text(os.path.join(output_dir, "sensitivity.csv"), "\n".join(rows) + "\n")
    heatmap(os.path.join(output_dir, "sensitivity.png"), layer_types, ids, table,
            f"{cfg.get('name', '')}: perplexity change (baseline {base:.3f})")
    return {"baseline": base, "table": table, "layer_types": layer_types, "layer_ids": ids,
            "metric": f"token perplexity (GPTQ protocol) on {spec['label']}"}


__all__ = ["sensitivity", "cell_configs", "heatmap"]
