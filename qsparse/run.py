"""Experiments as configs: ``qsparse run CONFIG.yaml`` (and :func:`run` from Python).

A run config is one YAML file::

    name: opt-125m-inference          # default output folder: runs/<name>
    model: facebook/opt-125m          # a hub id, a Hugging Face folder, or a llama2.c .bin (tokenizer next to it)
    tokenizer: null                   # default: the model's (llama2.c: tok*.bin / tokenizer.bin next to the .bin)
    dtype: float32                    # float32 | float16 | bfloat16
    device: auto                      # auto (cuda when available) | cpu | cuda | cuda:N
    seed: 0
    adapt: auto                       # fit layer types / indices written for another model (see adapt_compression):
                                      # auto = when --model replaces the config's model; true; false
    source_layers: 32                 # decoder depth the compression's layer_ids were written for (adapting scales
                                      # them to the model's depth; without it, indices beyond the model are dropped)
    data_dir: null                    # local copies of named datasets: <data_dir>/wikitext2/test.txt (default
                                      # $QSPARSE_DATA_DIR)
    compression: {...}                # per-layer YAML (the seed's) or a recipe, as qsparse.patch_model takes; or a path
    stages:                           # one-shot compression (qsparse.integrations.compress), in order; a `finetune`
      - sparsegpt: {sparsity: "2:4"}  # entry marks where fine-tuning runs (default: after the last stage)
      - finetune
      - gptq: {weight: {name: int4}}
    true_sequential: true
    calibration: {source: wikitext2, nsamples: 128, seqlen: 2048, seed: 0}
    finetune:                         # the HF Trainer, masks and quantizers in place
      text: wikitext2                 # path (text / jsonl) or dataset name
      split: train
      rows: [0.0, 1.0]                # a fraction slice of the rows
      seqlen: 2048
      args: {max_steps: 1000, learning_rate: 5.0e-4, ...}   # TrainingArguments
    evaluation:
      baseline: false                 # also evaluate the model before any compression
      perplexity:                     # a mapping or a list of them: GPTQ-protocol token perplexity
        - {dataset: wikitext2, seqlen: 2048, batch_size: 1, max_windows: null, rows: null, label: null}
      lm_eval: {tasks: [wikitext, piqa], limit: null, batch_size: 1, num_fewshot: null, include_path: null}
    save: false                       # save_pretrained the final model into OUTPUT_DIR/model

The pipeline: load the model, patch it with ``compression`` (round-to-nearest formats and masks), run the one-shot
``stages`` and fine-tuning in the order given, evaluate, and write ``OUTPUT_DIR/results.txt`` (the seed's style:
``Perplexity: ...`` then ``Config:`` and the per-layer YAML that was applied) and ``results.json`` (everything,
with the summary of every linear module). Files are written atomically and only at the end, so a failed run leaves
the results of an earlier run as they were.

Overrides (``key=value``, dotted paths, list indices as numbers, values parsed as YAML) change the config before
it is validated: ``evaluation.perplexity.0.seqlen=128 finetune.args.max_steps=10``.
"""
from __future__ import annotations

import copy
import glob
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .config import atomic_write_text, load_config

logger = logging.getLogger("qsparse")

RUN_KEYS = {"name", "model", "tokenizer", "dtype", "device", "seed", "adapt", "source_layers", "data_dir",
            "compression", "stages",
            "true_sequential", "calibration", "finetune", "evaluation", "save", "sensitivity", "search"}
FINETUNE_KEYS = {"text", "split", "rows", "seqlen", "args"}
EVAL_KEYS = {"baseline", "perplexity", "lm_eval"}
PPL_KEYS = {"dataset", "protocol", "split", "seqlen", "batch_size", "max_windows", "rows", "label"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
STAGE_METHODS = ("gptq", "sparsegpt", "wanda", "magnitude")

# Layer types of one architecture family and their counterparts in the others (used by adapt_compression): OPT's
# fc1 is Llama's gate and up projections, fc2 its down projection, out_proj its o_proj; GPT-2 fuses q/k/v.
LAYER_TYPE_MAP = {
    "llama": {"fc1": ["gate_proj", "up_proj"], "fc2": ["down_proj"], "out_proj": ["o_proj"],
              "c_fc": ["gate_proj", "up_proj"], "mlp.c_proj": ["down_proj"], "attn.c_proj": ["o_proj"],
              "c_attn": ["q_proj", "k_proj", "v_proj"]},
    "opt": {"gate_proj": ["fc1"], "up_proj": ["fc1"], "down_proj": ["fc2"], "o_proj": ["out_proj"],
            "c_fc": ["fc1"], "mlp.c_proj": ["fc2"], "attn.c_proj": ["out_proj"], "c_attn": ["q_proj", "k_proj",
                                                                                             "v_proj"]},
    "gpt2": {"fc1": ["c_fc"], "fc2": ["mlp.c_proj"], "gate_proj": ["c_fc"], "up_proj": ["c_fc"],
             "down_proj": ["mlp.c_proj"], "out_proj": ["attn.c_proj"], "o_proj": ["attn.c_proj"],
             "q_proj": ["c_attn"], "k_proj": ["c_attn"], "v_proj": ["c_attn"]},
}


class RunError(ValueError):
    """An invalid run config (a ValueError: the CLI reports it with exit status 2)."""


# ---- config ------------------------------------------------------------------------------------------------------


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: dict, overrides: Sequence[str]) -> dict:
    """A copy of ``cfg`` with ``key.path=value`` overrides applied (values parsed as YAML; numeric path parts index
    lists; missing mappings are created)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise RunError(f"override {item!r} is not allowed; write key.path=value (e.g. finetune.args.max_steps=10)")
        key, _, text = item.partition("=")
        parts = [p for p in key.strip().split(".")]
        if not all(parts):
            raise RunError(f"override {item!r}: empty key part in {key!r}")
        node: Any = cfg
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise RunError(f"override {item!r}: {'.'.join(parts[:i]) or 'top level'} is a list of "
                                   f"{len(node)} entries; {p!r} is not an index into it")
                if last:
                    node[int(p)] = _parse_value(text)
                else:
                    node = node[int(p)]
            elif isinstance(node, dict):
                if last:
                    node[p] = _parse_value(text)
                else:
                    if node.get(p) is None:
                        node[p] = {}
                    node = node[p]
            else:
                raise RunError(f"override {item!r}: {'.'.join(parts[:i])} is a {type(node).__name__}, not a mapping")
    return cfg


def _fraction_slice(value, where: str) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0.0 <= value[0] < value[1] <= 1.0):
        raise RunError(f"{where}={value!r} is not allowed; expected [start, stop] fractions with 0 <= start < stop <= 1")
    return float(value[0]), float(value[1])


def _pos_int(value, where: str, lo: int = 1, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise RunError(f"{where}={value!r} is not allowed; expected an int >= {lo}")
    return value


def perplexity_specs(cfg: dict) -> List[dict]:
    ev = cfg.get("evaluation") or {}
    spec = ev.get("perplexity")
    if spec is None:
        return []
    specs = spec if isinstance(spec, list) else [spec]
    out = []
    for i, s in enumerate(specs):
        where = f"evaluation.perplexity[{i}]"
        if isinstance(s, str):
            s = {"dataset": s}
        if not isinstance(s, dict):
            raise RunError(f"{where}: expected a mapping with dataset, seqlen, ..., got {type(s).__name__}")
        unknown = set(s) - PPL_KEYS
        if unknown:
            raise RunError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PPL_KEYS)}")
        s = {"dataset": "wikitext2", "protocol": None, "split": "test", "seqlen": None, "batch_size": 1,
             "max_windows": None, "rows": None, "label": None, **s}
        _pos_int(s["seqlen"], f"{where}.seqlen", 2)
        _pos_int(s["batch_size"], f"{where}.batch_size", 1, allow_none=False)
        _pos_int(s["max_windows"], f"{where}.max_windows", 1)
        _fraction_slice(s["rows"], f"{where}.rows")
        if not isinstance(s["dataset"], str) or not s["dataset"]:
            raise RunError(f"{where}.dataset={s['dataset']!r} is not allowed; a path or a dataset name")
        if s["label"] is None:
            s["label"] = os.path.splitext(os.path.basename(s["dataset"]))[0] if os.sep in s["dataset"] else s["dataset"]
        out.append(s)
    return out


def split_stages(stages) -> List[Any]:
    """The stages list as runs of one-shot stages (lists) and the string ``"finetune"``."""
    if stages is None:
        return []
    if not isinstance(stages, list):
        raise RunError(f"stages={stages!r} is not allowed; expected a list such as [{{sparsegpt: {{sparsity: '2:4'}}}}, "
                       "finetune, {gptq: {weight: int4}}]")
    out: List[Any] = []
    for i, s in enumerate(stages):
        if s == "finetune" or (isinstance(s, dict) and list(s) == ["finetune"] and not s["finetune"]):
            out.append("finetune")
            continue
        if not isinstance(s, dict) or len(s) != 1 or next(iter(s)) not in STAGE_METHODS:
            raise RunError(f"stages[{i}]={s!r} is not allowed; a stage is one of {', '.join(STAGE_METHODS)} with its "
                           "options, or finetune")
        if out and isinstance(out[-1], list):
            out[-1].append(s)
        else:
            out.append([s])
    return out


def validate(cfg: dict, source: str = "config") -> dict:
    """Check what needs no model: keys, types, the compression config. Returns ``cfg``. Errors name ``source``."""
    try:
        return _validate(cfg, source)
    except (ValueError, TypeError) as e:
        if str(e).startswith(f"{source}:"):
            raise
        raise RunError(f"{source}: {e}") from None


def _validate(cfg: dict, source: str) -> dict:
    if not isinstance(cfg, dict):
        raise RunError(f"{source}: a run config is a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - RUN_KEYS
    if unknown:
        raise RunError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RUN_KEYS)}")
    if not isinstance(cfg.get("model"), str) or not cfg["model"]:
        raise RunError(f"{source}: model={cfg.get('model')!r}; give a hub id, a Hugging Face folder or a llama2.c "
                       ".bin (or --model)")
    if cfg.get("dtype", "float32") not in DTYPES:
        raise RunError(f"{source}: dtype={cfg.get('dtype')!r} is not allowed; allowed: {', '.join(DTYPES)}")
    if cfg.get("adapt", "auto") not in ("auto", True, False):
        raise RunError(f"{source}: adapt={cfg.get('adapt')!r} is not allowed; auto, true or false")
    comp = cfg.get("compression")
    if comp is not None:
        try:
            load_config(comp)
        except (ValueError, TypeError) as e:
            raise RunError(f"{source}: compression: {e}") from None
    split_stages(cfg.get("stages"))
    ft = cfg.get("finetune")
    if ft is not None:
        if not isinstance(ft, dict):
            raise RunError(f"{source}: finetune must be a mapping of {sorted(FINETUNE_KEYS)}")
        unknown = set(ft) - FINETUNE_KEYS
        if unknown:
            raise RunError(f"{source}: finetune: unknown key(s) {sorted(unknown)}; allowed: {sorted(FINETUNE_KEYS)}"
                           " (Trainer arguments go under finetune.args)")
        _fraction_slice(ft.get("rows"), "finetune.rows")
        _pos_int(ft.get("seqlen"), "finetune.seqlen", 2)
        if not isinstance(ft.get("args", {}), dict):
            raise RunError(f"{source}: finetune.args must be a mapping of TrainingArguments")
    ev = cfg.get("evaluation") or {}
    if not isinstance(ev, dict):
        raise RunError(f"{source}: evaluation must be a mapping of {sorted(EVAL_KEYS)}")
    unknown = set(ev) - EVAL_KEYS
    if unknown:
        raise RunError(f"{source}: evaluation: unknown key(s) {sorted(unknown)}; allowed: {sorted(EVAL_KEYS)}")
    perplexity_specs(cfg)
    if ev.get("lm_eval") is not None:
        from .eval.harness import check_lm_eval_spec

        check_lm_eval_spec(ev["lm_eval"])
    return cfg


def load_run_config(path: str, overrides: Sequence[str] = (), model: Optional[str] = None) -> dict:
    """The run config of ``path`` with overrides applied and ``model`` (``--model``) substituted, validated.
    A ``compression`` given as a path is read relative to the config's folder."""
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            cfg = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise RunError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{path}: a run config is a mapping, got {type(cfg).__name__}")
    cfg = apply_overrides(cfg, overrides)
    cfg.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    cfg["_config_dir"] = os.path.dirname(os.path.abspath(path))
    if model is not None:
        cfg["_model_overridden"] = cfg.get("model") != model
        if cfg["_model_overridden"]:
            cfg.pop("tokenizer", None)  # the config's tokenizer belongs to its model
        cfg["model"] = model
    for key in ("model", "tokenizer", "data_dir"):  # local paths: as given, else relative to the config's folder
        v = cfg.get(key)
        if isinstance(v, str) and not os.path.isabs(v) and not os.path.exists(v) and \
                os.path.exists(os.path.join(cfg["_config_dir"], v)):
            cfg[key] = os.path.join(cfg["_config_dir"], v)
    comp = cfg.get("compression")
    if isinstance(comp, str) and "\n" not in comp:
        p = comp if os.path.isabs(comp) or os.path.exists(comp) else os.path.join(cfg["_config_dir"], comp)
        if not os.path.exists(p):
            raise FileNotFoundError(f"{path}: compression file {comp!r} does not exist")
        with open(p, encoding="utf-8") as f:
            try:
                cfg["compression"] = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise RunError(f"{p}: not valid YAML ({e})") from None
    private = {k: cfg.pop(k) for k in list(cfg) if k.startswith("_")}
    validate(cfg, path)
    cfg.update(private)
    return cfg


# ---- model and text ----------------------------------------------------------------------------------------------


def _llama2c_files(spec: str) -> Optional[Tuple[str, Optional[str]]]:
    """(model.bin, tokenizer.bin or None) when spec is a llama2.c checkpoint or a folder holding one."""
    from .models.llama2c import HEADER

    def is_ckpt(p):
        try:
            with open(p, "rb") as f:
                h = f.read(HEADER.size)
            if len(h) != HEADER.size:
                return False
            vals = HEADER.unpack(h)
            return all(v > 0 for i, v in enumerate(vals) if i != 5) and vals[5] != 0 and vals[0] < 1 << 16
        except OSError:
            return False

    if os.path.isfile(spec) and spec.endswith(".bin") and is_ckpt(spec):
        folder, bin_ = os.path.dirname(os.path.abspath(spec)), spec
    elif os.path.isdir(spec) and not os.path.exists(os.path.join(spec, "config.json")):
        cands = [p for p in sorted(glob.glob(os.path.join(spec, "*.bin")))
                 if not os.path.basename(p).startswith("tok") and is_ckpt(p)]
        if len(cands) != 1:
            return None
        folder, bin_ = spec, cands[0]
    else:
        return None
    toks = [p for p in sorted(glob.glob(os.path.join(folder, "tok*.bin"))) if p != bin_]
    return bin_, (toks[0] if len(toks) == 1 else None)


def load_model(spec: str, tokenizer: Optional[str] = None, dtype: str = "float32", device: str = "auto"):
    """(model, tokenizer): a llama2.c checkpoint (a .bin, or a folder with one; the tokenizer is the folder's
    ``tok*.bin`` unless given), a Hugging Face folder, or a hub id (needs a network)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; allowed: {', '.join(DTYPES)}")
    l2c = _llama2c_files(spec)
    if l2c is not None:
        from .models import load_llama2c

        bin_, tok = l2c
        tok = tokenizer or tok
        if tok is None:
            raise FileNotFoundError(f"no llama2.c tokenizer (tok*.bin) next to {bin_!r}; give tokenizer: PATH")
        model, tok = load_llama2c(bin_, tok)
    else:
        if os.path.isfile(spec):
            raise ValueError(f"model {spec!r} is a file but not a llama2.c checkpoint; give a Hugging Face folder, "
                             "a hub id or a llama2.c .bin")
        looks_local = spec.startswith((".", "/", "~")) or os.sep + os.sep in spec or spec.count("/") > 1
        if looks_local and not os.path.exists(spec):
            raise FileNotFoundError(f"model {spec!r} does not exist")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import transformers

        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # the keyword's name before 4.56
        model = AutoModelForCausalLM.from_pretrained(spec, **{key: DTYPES[dtype]})
        tok = AutoTokenizer.from_pretrained(tokenizer or spec)
    model = model.to(DTYPES[dtype])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tok


def resolve_text(source: str, cfg: dict, split: str = "test"):
    """A text source of a config: a path (as given, else relative to the config's folder), a named dataset with a
    local copy under ``data_dir`` (``<data_dir>/<name>/<split>.txt`` or ``.jsonl``), or the named dataset itself
    (the hub)."""
    from .data import DATASETS

    if os.path.exists(source):
        return source
    cdir = cfg.get("_config_dir")
    if cdir and not os.path.isabs(source) and os.path.exists(os.path.join(cdir, source)):
        return os.path.join(cdir, source)
    if source in DATASETS:
        data_dir = cfg.get("data_dir") or os.environ.get("QSPARSE_DATA_DIR")
        if data_dir:
            for ext in (".txt", ".jsonl", "_rows.jsonl"):
                p = os.path.join(data_dir, source, split + ext)
                if os.path.exists(p):
                    return p
        return source
    raise FileNotFoundError(f"text {source!r} is neither a file nor a named dataset ({', '.join(DATASETS)})")


def _slice_rows(rows: List[str], frac: Optional[Tuple[float, float]]) -> List[str]:
    if frac is None:
        return rows
    if len(rows) == 1:  # one document (a plain text file): slice its characters at line boundaries
        text = rows[0]
        a, b = int(len(text) * frac[0]), int(len(text) * frac[1])
        a = text.rfind("\n", 0, a) + 1 if a else 0
        return [text[a:b]]
    return rows[int(len(rows) * frac[0]): int(len(rows) * frac[1])]


# ---- compression -------------------------------------------------------------------------------------------------


def model_family(model) -> str:
    from .integrations.transformers import layer_types

    types = set(layer_types(model))
    if "fc1" in types:
        return "opt"
    if "c_fc" in types:
        return "gpt2"
    return "llama"


def _scale_ids(body: dict, n: int, source_layers: int, notes: List[str]) -> dict:
    """Layer indices of a source_layers-deep model mapped onto n layers: i -> floor(i * n / source_layers). When
    entries of one layer type land on the same index, the entry with more source layers there takes it (ties: the
    first entry)."""
    out = {}
    for lt, entries in body.items():
        entries = [dict(e) for e in (entries if isinstance(entries, list) else [entries])]
        votes: Dict[int, List[int]] = {}
        for k, e in enumerate(entries):
            if isinstance(e.get("layer_ids"), list):
                for i in e["layer_ids"]:
                    if isinstance(i, int) and 0 <= i < source_layers:
                        votes.setdefault(i * n // source_layers, [0] * len(entries))[k] += 1
        new = []
        for k, e in enumerate(entries):
            if isinstance(e.get("layer_ids"), list):
                ids = sorted(j for j, v in votes.items() if max(range(len(v)), key=lambda x: (v[x], -x)) == k)
                notes.append(f"{lt}[{k}]: layer ids {e['layer_ids']} of a {source_layers}-layer model -> {ids}")
                if not ids:
                    continue
                e["layer_ids"] = ids
            new.append(e)
        if new:
            out[lt] = new
    return out


def adapt_compression(comp: dict, model, source_layers: Optional[int] = None) -> Tuple[dict, List[str]]:
    """A per-layer-type config written for another model made to fit ``model``: layer types the model lacks are
    renamed through LAYER_TYPE_MAP (OPT's fc1 -> Llama's gate_proj and up_proj, ...); with ``source_layers`` (the
    decoder depth the config was written for) layer indices are scaled proportionally (i -> floor(i * n /
    source_layers), see _scale_ids), without it indices beyond the model's layers are dropped (an entry left with
    none is dropped). Returns (config, what changed). Recipes (config_groups) are returned unchanged."""
    from .integrations.transformers import decoder_layers, layer_types

    if not isinstance(comp, dict) or "config_groups" in comp:
        return comp, []
    wrapped = set(comp) == {"hbfp"} and isinstance(comp["hbfp"], dict)
    body = comp["hbfp"] if wrapped else comp
    types = set(layer_types(model))
    n = len(decoder_layers(model)[1])
    mapping = LAYER_TYPE_MAP[model_family(model)]
    notes: List[str] = []
    if source_layers and source_layers != n:
        body = _scale_ids(body, n, source_layers, notes)
    out: Dict[str, list] = {}
    for lt, entries in body.items():
        entries = entries if isinstance(entries, list) else [entries]
        targets = [lt]
        if lt not in types and lt in mapping and lt not in ("attn", "mlp", "self_attn"):
            targets = mapping[lt]
            notes.append(f"layer type {lt} -> {', '.join(targets)} ({type(model).__name__} has no {lt})")
        kept = []
        for e in entries:
            e = dict(e)
            ids = e.get("layer_ids")
            if isinstance(ids, list):
                inside = [i for i in ids if isinstance(i, int) and i < n]
                if len(inside) != len(ids):
                    notes.append(f"{lt}: layer ids {[i for i in ids if i not in inside]} dropped "
                                 f"({type(model).__name__} has {n} decoder layers)")
                if not inside:
                    continue
                e["layer_ids"] = inside
            kept.append(e)
        for t in targets:
            for e in kept:
                prev = out.setdefault(t, [])
                ids = e.get("layer_ids")
                if e in prev:
                    continue  # gate_proj and up_proj both mapped onto fc1 with the same entry
                clash = [p for p in prev if ids == "all" or p.get("layer_ids") == "all" or
                         set(p.get("layer_ids") or []) & set(ids or [])]
                if clash:
                    raise RunError(f"adapting the compression to {type(model).__name__}: {t} would get two "
                                   f"different configs for the same layers (from {lt}); write the config for this "
                                   "model or set adapt: false")
                prev.append(copy.deepcopy(e))
    return ({"hbfp": out} if wrapped else out), notes


def prepare_compression(cfg: dict, model) -> Tuple[Optional[dict], List[str]]:
    comp = cfg.get("compression")
    if comp is None:
        return None, []
    adapt = cfg.get("adapt", "auto")
    if adapt is True or (adapt == "auto" and cfg.get("_model_overridden")):
        comp, notes = adapt_compression(comp, model, cfg.get("source_layers"))
        for note in notes:
            logger.warning("qsparse run: %s", note)
        return comp, notes
    return comp, []


def run_stages(model, tok, stages: List[dict], cfg: dict, progress: bool = True) -> dict:
    """One-shot compression stages through qsparse.integrations.compress (imported here: it is optional)."""
    try:
        from .integrations.compress import compress
    except ImportError as e:
        raise ImportError(f"one-shot stages need qsparse.integrations.compress ({e})") from None
    recipe = {"stages": stages, "true_sequential": cfg.get("true_sequential", True)}
    calib = dict(cfg.get("calibration") or {})
    src = calib.get("source", "wikitext2")
    if isinstance(src, str):
        calib["source"] = resolve_text(src, cfg, split="train")
    device = None if cfg.get("device", "auto") == "auto" else cfg["device"]
    report = compress(model, recipe, calib, tokenizer=tok, batch_size=int(calib.pop("batch_size", 8)),
                      device=device, progress=progress)
    return report.to_dict()


def finetune(model, tok, cfg: dict, output_dir: str, progress: bool = True) -> dict:
    """Fine-tune with the HF Trainer on windows of ``finetune.text`` (masks stay fixed, quantizers in place)."""
    from transformers import Trainer, TrainingArguments

    from .data import rows_of
    from .eval.perplexity import model_seqlen, wikitext_windows

    ft = cfg["finetune"]
    seqlen = model_seqlen(model, ft.get("seqlen"))
    split = ft.get("split", "train")
    rows = _slice_rows(rows_of(resolve_text(ft.get("text", "wikitext2"), cfg, split), split=split),
                       _fraction_slice(ft.get("rows"), "finetune.rows"))
    windows = wikitext_windows(tok, rows, seqlen)
    train = [{"input_ids": x, "labels": x} for x in windows]
    args = {"output_dir": os.path.join(output_dir, "finetune"), "report_to": [], "save_strategy": "no",
            "per_device_train_batch_size": 1, "logging_steps": 10, "seed": cfg.get("seed", 0),
            "use_cpu": next(model.parameters()).device.type == "cpu", "disable_tqdm": not progress,
            **(ft.get("args") or {})}
    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    if "warmup_ratio" in args and "warmup_ratio" not in fields:
        # transformers 5 folded warmup_ratio into warmup_steps (a float in [0, 1) is a ratio of the total steps)
        ratio = args.pop("warmup_ratio")
        if args.get("warmup_steps"):
            raise RunError("finetune.args: give warmup_ratio or warmup_steps, not both")
        args["warmup_steps"] = float(ratio)
    try:
        targs = TrainingArguments(**args)
    except TypeError as e:
        raise RunError(f"finetune.args: {e}") from None
    t0 = time.perf_counter()
    out = Trainer(model=model, args=targs, train_dataset=train).train()
    model.eval()
    return {"windows": len(train), "seqlen": seqlen, "seconds": time.perf_counter() - t0,
            "train_loss": float(out.training_loss), "steps": int(out.global_step)}


# ---- evaluation --------------------------------------------------------------------------------------------------


def evaluate_perplexity(model, tok, spec: dict, cfg: dict, progress: bool = True) -> dict:
    from .data import rows_of
    from .eval import perplexity

    src = resolve_text(spec["dataset"], cfg, spec["split"])
    rows = _slice_rows(rows_of(src, split=spec["split"]), _fraction_slice(spec["rows"], "rows"))
    protocol = spec["protocol"] or ("c4" if spec["dataset"] == "c4" else "wikitext")
    r = perplexity(model, tok, rows, seqlen=spec["seqlen"], batch_size=spec["batch_size"], protocol=protocol,
                   split=spec["split"], max_windows=spec["max_windows"], progress=progress)
    return {"label": spec["label"], "dataset": spec["dataset"], "source": src if isinstance(src, str) else None,
            "protocol": protocol, "metric": "token perplexity (GPTQ protocol)", **r.to_dict()}


def evaluate(model, tok, cfg: dict, progress: bool = True) -> dict:
    out: Dict[str, Any] = {"perplexity": [evaluate_perplexity(model, tok, s, cfg, progress)
                                          for s in perplexity_specs(cfg)]}
    lm = (cfg.get("evaluation") or {}).get("lm_eval")
    if lm:
        from .eval.harness import lm_eval_tasks

        out["lm_eval"] = lm_eval_tasks(model, tok, **lm)
    return out


# ---- results -----------------------------------------------------------------------------------------------------


def results_text(results: dict) -> str:
    """results.txt in the seed's style: ``Perplexity: %3f`` (its first evaluation), other figures labelled, then
    ``Config:`` and the per-layer YAML that was applied."""
    import yaml

    lines = []
    ppls = results.get("evaluation", {}).get("perplexity", [])
    for i, p in enumerate(ppls):
        label = "Perplexity" if i == 0 else f"Perplexity ({p['label']})"
        lines.append(f"{label}: {p['ppl']:3f}")
    if ppls:
        p = ppls[0]
        lines.append(f"# token perplexity, GPTQ protocol: {p['label']}, {p['windows']} windows of {p['seqlen']} "
                     "tokens")
    for task, metrics in (results.get("evaluation", {}).get("lm_eval") or {}).get("results", {}).items():
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not k.endswith("_stderr"):
                lines.append(f"lm-eval {task} {k}: {v:.6f}")
    base = results.get("baseline")
    if base and base.get("perplexity"):
        lines.append(f"# before compression: {base['perplexity'][0]['ppl']:3f}")
    lines.append("Config:")
    comp = results.get("compression")
    comp = json.loads(json.dumps(comp))  # no YAML anchors for entries shared in the source file
    if comp is None:
        lines.append("{}  # no compression: the dense model")
        return "\n".join(lines) + "\n"
    if "config_groups" not in comp and set(comp) != {"hbfp"}:
        comp = {"hbfp": comp}  # the seed's file wraps its layer types in hbfp:
    return "\n".join(lines) + "\n" + yaml.safe_dump(comp, default_flow_style=False, sort_keys=False)


def write_results(output_dir: str, results: dict) -> None:
    """results.txt and results.json, each written atomically."""
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2, default=str) + "\n")
    atomic_write_text(os.path.join(output_dir, "results.txt"), results_text(results))


def public_config(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def run(cfg: dict, output_dir: Optional[str] = None, progress: bool = True) -> dict:
    """Run a (validated) config: load, patch, stages and fine-tuning, evaluate, write results. Returns them."""
    from . import patch_model, summary

    output_dir = output_dir or os.path.join("runs", str(cfg.get("name", "run")))
    t0 = time.perf_counter()
    torch.manual_seed(cfg.get("seed", 0))
    model, tok = load_model(cfg["model"], cfg.get("tokenizer"), cfg.get("dtype", "float32"),
                            cfg.get("device", "auto"))
    results: Dict[str, Any] = {"name": cfg.get("name"), "model": cfg["model"], "config": public_config(cfg)}
    ev = cfg.get("evaluation") or {}
    if ev.get("baseline"):
        results["baseline"] = evaluate(model, tok, {**cfg, "evaluation": {"perplexity": ev.get("perplexity")}},
                                       progress)
    comp, notes = prepare_compression(cfg, model)
    if notes:
        results["adapted"] = notes
    if comp is not None:
        patch_model(model, comp)
    results["compression"] = comp
    plan = split_stages(cfg.get("stages"))
    if cfg.get("finetune") and "finetune" not in plan:
        plan.append("finetune")
    if "finetune" in plan and not cfg.get("finetune"):
        raise RunError("stages name finetune but the config has no finetune section")
    results["stages"] = []
    for step in plan:
        if step == "finetune":
            results["finetune"] = finetune(model, tok, cfg, output_dir, progress)
        else:
            results["stages"].append(run_stages(model, tok, step, cfg, progress))
    results["evaluation"] = evaluate(model, tok, cfg, progress)
    s = summary(model)
    results["summary"] = s.to_dict()
    results["bits_per_weight"] = s.bits_per_weight
    if cfg.get("save"):
        from .integrations.hf_quantizer import save_pretrained

        save_pretrained(model, os.path.join(output_dir, "model"))
        tok.save_pretrained(os.path.join(output_dir, "model"))
    results["seconds"] = time.perf_counter() - t0
    write_results(output_dir, results)
    logger.info("qsparse run: results in %s", output_dir)
    return results


__all__ = ["load_run_config", "apply_overrides", "validate", "load_model", "run", "adapt_compression",
           "write_results", "results_text", "evaluate", "resolve_text", "RunError", "LAYER_TYPE_MAP"]
