"""Mixed-precision search with Optuna (extra ``search``): which format, group size and sparsity each layer gets.

The ``search`` section of a run config::

    search:
      granularity: block        # layer: a choice per module (type x decoder index); block: per layer type, shared
                                # by every decoder block; model: one choice for all searched modules
      layer_types: [fc1, fc2]   # default: every layer type of the model's decoder blocks
      space:
        weight: ["int{bits}_asym", mxfp4, nvfp4, none]   # format names; {bits} expands over bits; none = full precision
        bits: [3, 4, 8]
        group_size: [32, 128]   # for formats that take one; block formats (MX, NVFP4) keep their block
        sparsity: [dense, "2:4", "1:4"]
        activation: [none]      # input formats to choose from
      objectives: [perplexity, bits_per_weight, throughput]   # or lm_eval:<task>:<metric> (maximized)
      mode: pareto              # pareto: a Pareto front over the objectives; weighted: one weighted score
      weights: {perplexity: 1.0, bits_per_weight: 1.0, throughput: 0.0}
      sampler: tpe              # random | tpe | nsga2 | nsga3 | qmc | grid (every combination: a sweep)
      n_trials: 50              # in total: a resumed study runs only the missing ones
      seed: 0
      throughput: {tokens: 64}  # parameters of the analytic model (qsparse.search.cost)

Objectives: ``perplexity`` (the config's first evaluation.perplexity, minimized), ``bits_per_weight`` (storage bits
per weight of the searched modules as qsparse.summary counts them, minimized), ``throughput`` (tokens/s of the
searched modules under qsparse.search.cost's roofline, maximized), ``lm_eval:<task>:<metric>`` (maximized). The
weighted score (minimized) is ``w_ppl * ln(ppl) + w_bits * bits / 16 - w_tput * ln(throughput) - w_acc * acc``; on a
Pareto front the reported best is the front's trial with the lowest weighted score.

The study lives in ``OUTPUT_DIR/study.db`` (Optuna's SQLite storage): rerunning resumes it. Outputs: ``trials.json``,
``pareto.json`` and ``pareto.png`` (perplexity against bits per weight, the front marked), ``best_layers.yaml`` (the
best per-layer YAML) and ``best_run.yaml`` (the run config with that compression: ``qsparse run best_run.yaml``).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import atomic_write_text

logger = logging.getLogger("qsparse")

SECTION_KEYS = {"granularity", "layer_types", "space", "objectives", "mode", "weights", "sampler", "n_trials",
                "seed", "throughput", "study_name"}
SPACE_KEYS = {"weight", "bits", "group_size", "sparsity", "activation"}
SAMPLERS = ("random", "tpe", "nsga2", "nsga3", "qmc", "grid")
GRANULARITIES = ("layer", "block", "model")
DIRECTIONS = {"perplexity": "minimize", "bits_per_weight": "minimize", "throughput": "maximize"}
NONE = ("none", "dense", None)


def _err(msg: str) -> ValueError:
    return ValueError(f"search: {msg}")


def weight_choices(space: dict) -> List[str]:
    """The weight options as strings ``name`` / ``name/g<G>`` / ``none``, each a valid Format."""
    from ..formats import Format

    names = space.get("weight", ["int4_asym"])
    bits = space.get("bits", [4])
    groups = space.get("group_size", [None])
    out: List[str] = []
    for name in names:
        if name in NONE:
            out.append("none")
            continue
        expanded = [name.format(bits=b) for b in bits] if "{bits}" in name else [name]
        for n in expanded:
            ok = []
            try:
                block = Format(n).info.default_group  # BFP, MX, NVFP4: their block, not the searched group sizes
            except (ValueError, TypeError):
                block = None
            for g in ([None] if block is not None else groups):
                try:
                    Format(n, group_size=g)
                    ok.append(n if g is None else f"{n}/g{g}")
                except (ValueError, TypeError):
                    continue
            if not ok:
                try:
                    Format(n)
                    ok.append(n)
                except (ValueError, TypeError) as e:
                    if "{bits}" in name:
                        continue  # e.g. mxfp{bits} at 3 bits: not a format, skipped
                    raise _err(f"space.weight: {e}") from None
            out.extend(o for o in ok if o not in out)
    if not out:
        raise _err(f"space.weight={names!r} with bits={bits!r} gives no valid format")
    return out


def _format_dict(choice: str) -> Optional[dict]:
    if choice == "none":
        return None
    name, _, g = choice.partition("/g")
    return {"name": name, "group_size": int(g)} if g else {"name": name}


def check_section(sec: dict) -> dict:
    if not isinstance(sec, dict):
        raise _err("the search section must be a mapping")
    unknown = set(sec) - SECTION_KEYS
    if unknown:
        raise _err(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(SECTION_KEYS)}")
    s = {"granularity": "block", "layer_types": None, "space": {}, "objectives": ["perplexity", "bits_per_weight"],
         "mode": "pareto", "weights": {}, "sampler": "tpe", "n_trials": 20, "seed": 0, "throughput": {}, **sec}
    if s["granularity"] not in GRANULARITIES:
        raise _err(f"granularity={s['granularity']!r} is not allowed; allowed: {', '.join(GRANULARITIES)}")
    if s["sampler"] not in SAMPLERS:
        raise _err(f"sampler={s['sampler']!r} is not allowed; allowed: {', '.join(SAMPLERS)}")
    if s["mode"] not in ("pareto", "weighted"):
        raise _err(f"mode={s['mode']!r} is not allowed; pareto or weighted")
    if isinstance(s["n_trials"], bool) or not isinstance(s["n_trials"], int) or s["n_trials"] < 1:
        raise _err(f"n_trials={s['n_trials']!r} is not allowed; an int >= 1")
    unknown = set(s["space"]) - SPACE_KEYS
    if unknown:
        raise _err(f"space: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPACE_KEYS)}")
    objs = s["objectives"]
    if isinstance(objs, str):
        objs = [objs]
    if not objs or not all(isinstance(o, str) and (o in DIRECTIONS or o.startswith("lm_eval:")) for o in objs):
        raise _err(f"objectives={objs!r} is not allowed; perplexity, bits_per_weight, throughput or "
                   "lm_eval:<task>:<metric>")
    for o in objs:
        if o.startswith("lm_eval:") and len(o.split(":")) != 3:
            raise _err(f"objective {o!r}: write lm_eval:<task>:<metric>, e.g. lm_eval:piqa:acc")
    s["objectives"] = list(objs)
    bad = set(s["weights"]) - set(objs)
    if bad:
        raise _err(f"weights name objectives not searched: {sorted(bad)}")
    return s


def _direction(obj: str) -> str:
    return DIRECTIONS.get(obj, "maximize")


def weighted_score(metrics: Dict[str, float], weights: Dict[str, float], objectives: Sequence[str]) -> float:
    score = 0.0
    for o in objectives:
        w = float(weights.get(o, 1.0))
        v = metrics[o]
        if o == "perplexity":
            score += w * math.log(v)
        elif o == "bits_per_weight":
            score += w * v / 16.0
        elif o == "throughput":
            score -= w * math.log(v) if v > 0 else -math.inf
        else:
            score -= w * v
    return score


def _sampler(name: str, seed: int, grid: Optional[dict] = None):
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed)
    import warnings

    with warnings.catch_warnings():  # NSGA-III and QMC are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make_sampler(name, seed)


def _make_sampler(name: str, seed: int):
    import optuna

    return {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
            "nsga3": lambda: optuna.samplers.NSGAIIISampler(seed=seed),
            "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, qmc_type="sobol", warn_independent_sampling=False),
            }[name]()


def slots(model, sec: dict, adapt: bool) -> Tuple[List[Tuple[str, Optional[int]]], List[str]]:
    """The searched slots ((layer type, index or None)) and the layer types they cover."""
    from ..integrations.transformers import decoder_layers, layer_types
    from ..run import LAYER_TYPE_MAP, model_family

    types = sec["layer_types"] or layer_types(model)
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    have = set(layer_types(model)) | {"attn", "mlp", "self_attn"}
    mapped: List[str] = []
    for t in types:
        if t not in have and adapt and t in LAYER_TYPE_MAP[model_family(model)]:
            mapped.extend(x for x in LAYER_TYPE_MAP[model_family(model)][t] if x not in mapped)
        elif t not in mapped:
            mapped.append(t)
    n = len(decoder_layers(model)[1])
    if sec["granularity"] == "layer":
        return [(t, i) for t in mapped for i in range(n)], mapped
    if sec["granularity"] == "block":
        return [(t, None) for t in mapped], mapped
    return [("*", None)], mapped


def compression_of(choices: Dict[Tuple[str, Optional[int]], Tuple[str, str, str]], types: Sequence[str],
                   n_layers: int) -> dict:
    """The per-layer YAML (explicit keys) of one assignment: slot -> (weight, activation, sparsity) choices."""
    per: Dict[str, Dict[int, Tuple[str, str, str]]] = {t: {} for t in types}
    for (t, i), c in choices.items():
        targets = types if t == "*" else [t]
        for tt in targets:
            for idx in (range(n_layers) if i is None else [i]):
                per[tt][idx] = c
    out: Dict[str, list] = {}
    for t in types:
        groups: Dict[Tuple[str, str, str], List[int]] = {}
        for idx in sorted(per[t]):
            groups.setdefault(per[t][idx], []).append(idx)
        for (w, a, s), ids in groups.items():
            if w == "none" and a == "none" and s == "dense":
                continue
            entry: Dict[str, Any] = {"layer_ids": "all" if len(ids) == n_layers else ids}
            if w != "none":
                entry["weight"] = _format_dict(w)
            if a != "none":
                entry["activation"] = _format_dict(a)
            if s != "dense":
                entry["sparsity"] = s
            out.setdefault(t, []).append(entry)
    return out


def _plot_front(path: str, points: List[dict], front: List[int], objectives: Sequence[str]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the Pareto plot needs matplotlib: pip install 'qsparse[plot]'") from None
    x_key = "bits_per_weight" if "bits_per_weight" in objectives else objectives[-1]
    y_key = "perplexity" if "perplexity" in objectives else objectives[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["metrics"][x_key] for p in points]
    ys = [p["metrics"][y_key] for p in points]
    ax.scatter(xs, ys, s=14, c="0.6", label="trials")
    fx = [p["metrics"][x_key] for p in points if p["number"] in front]
    fy = [p["metrics"][y_key] for p in points if p["number"] in front]
    ax.scatter(fx, fy, s=30, c="C3", label="Pareto front" if len(objectives) > 1 else "best")
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def search(cfg: dict, output_dir: str, n_trials: Optional[int] = None, sampler: Optional[str] = None,
           progress: bool = True) -> dict:
    """Run (or resume) the search of a validated run config. Returns the best trial and the front."""
    try:
        import optuna
    except ImportError:
        raise ImportError("qsparse search needs Optuna: pip install 'qsparse[search]'") from None
    import yaml

    from .. import patch_model
    from ..integrations.transformers import decoder_layers
    from ..run import evaluate_perplexity, load_model, perplexity_specs
    from .cost import bits_per_weight, throughput

    sec = check_section({**(cfg.get("search") or {}), **({"n_trials": n_trials} if n_trials else {}),
                         **({"sampler": sampler} if sampler else {})})
    objectives = sec["objectives"]
    specs = perplexity_specs(cfg)
    if "perplexity" in objectives and not specs:
        raise _err("the perplexity objective needs evaluation.perplexity in the config")
    space = sec["space"]
    w_opts = weight_choices(space)
    a_opts = [("none" if a in NONE else a) for a in space.get("activation", ["none"])]
    for a in a_opts:
        if a != "none":
            from ..formats import Format

            try:
                Format(a)
            except (ValueError, TypeError) as e:
                raise _err(f"space.activation: {e}") from None
    s_opts = [("dense" if s in NONE else str(s)) for s in space.get("sparsity", ["dense"])]
    from ..config import SparsityConfig

    for s in s_opts:
        if s != "dense":
            try:
                SparsityConfig.parse(s)
            except ValueError as e:
                raise _err(f"space.sparsity: {e}") from None
    model, tok = load_model(cfg["model"], cfg.get("tokenizer"), cfg.get("dtype", "float32"),
                            cfg.get("device", "auto"))
    adapt = cfg.get("adapt", "auto") is True or (cfg.get("adapt", "auto") == "auto" and cfg.get("_model_overridden"))
    slot_list, types = slots(model, sec, adapt)
    n_layers = len(decoder_layers(model)[1])
    from ..integrations.transformers import resolve

    probe = compression_of({s: (w_opts[0] if w_opts[0] != "none" else "int4_asym", "none", "dense")
                            for s in slot_list}, types, n_layers)
    plan = resolve(model, probe)  # unknown layer types fail here, before any trial
    searched = [name for name, _, _ in plan.entries]
    def label(slot):
        return f"{slot[0]}" if slot[1] is None else f"{slot[0]}.{slot[1]}"

    os.makedirs(output_dir, exist_ok=True)
    study_name = sec.get("study_name") or f"{cfg.get('name', 'search')}-{sec['granularity']}-{sec['sampler']}"
    storage = f"sqlite:///{os.path.abspath(os.path.join(output_dir, 'study.db'))}"
    directions = [_direction(o) for o in objectives] if sec["mode"] == "pareto" else ["minimize"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {f"{label(slot)}:{kind}": opts for slot in slot_list
            for kind, opts in (("weight", w_opts), ("activation", a_opts), ("sparsity", s_opts)) if len(opts) > 1}
    if sec["sampler"] == "grid":
        combos = math.prod(len(v) for v in grid.values()) if grid else 1
        sec["n_trials"] = min(sec["n_trials"], combos) if n_trials else combos
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=directions, sampler=_sampler(sec["sampler"], sec["seed"], grid))
    if len(study.directions) != len(directions):
        raise _err(f"study {study_name!r} in {storage} has {len(study.directions)} objectives, this config "
                   f"{len(directions)}; use another study_name or output dir")
    lm_spec = (cfg.get("evaluation") or {}).get("lm_eval") or {}

    def objective(trial):
        choices = {}
        for slot in slot_list:
            vals = []
            for kind, opts in (("weight", w_opts), ("activation", a_opts), ("sparsity", s_opts)):
                key = f"{label(slot)}:{kind}"
                if len(opts) == 1:
                    vals.append(opts[0])
                elif sec["sampler"] == "qmc":  # QMC samples numbers: choices by index
                    vals.append(opts[trial.suggest_int(key, 0, len(opts) - 1)])
                else:
                    vals.append(trial.suggest_categorical(key, opts))
            choices[slot] = tuple(vals)
        comp = compression_of(choices, types, n_layers)
        m = copy.deepcopy(model)
        if comp:
            patch_model(m, comp)
        metrics: Dict[str, float] = {}
        for o in objectives:
            if o == "perplexity":
                metrics[o] = evaluate_perplexity(m, tok, specs[0], cfg, progress=False)["ppl"]
            elif o == "bits_per_weight":
                metrics[o] = bits_per_weight(m, searched)
            elif o == "throughput":
                metrics[o] = throughput(m, searched, **sec["throughput"])
            else:
                from ..eval.harness import lm_eval_tasks

                _, task, metric = o.split(":")
                r = lm_eval_tasks(m, tok, **{**lm_spec, "tasks": [task]})
                metrics[o] = float(r["results"][task][metric])
        del m
        trial.set_user_attr("compression", comp)
        trial.set_user_attr("metrics", metrics)
        if sec["mode"] == "weighted":
            return weighted_score(metrics, sec["weights"], objectives)
        return tuple(metrics[o] for o in objectives)

    done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    todo = max(0, sec["n_trials"] - done)
    logger.info("search: %d trials done, %d to run (%s sampler, %s granularity)", done, todo, sec["sampler"],
                sec["granularity"])
    if todo:
        study.optimize(objective, n_trials=todo, show_progress_bar=progress)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = [{"number": t.number, "params": t.params, "values": list(t.values), "metrics": t.user_attrs["metrics"],
               "compression": t.user_attrs["compression"],
               "score": weighted_score(t.user_attrs["metrics"], sec["weights"], objectives)} for t in complete]
    front = [t.number for t in study.best_trials] if sec["mode"] == "pareto" else [study.best_trial.number]
    best = min((p for p in points if p["number"] in front), key=lambda p: p["score"])
    atomic_write_text(os.path.join(output_dir, "trials.json"), json.dumps(points, indent=2) + "\n")
    atomic_write_text(os.path.join(output_dir, "pareto.json"), json.dumps(
        {"objectives": objectives, "directions": [_direction(o) for o in objectives], "mode": sec["mode"],
         "front": [p for p in points if p["number"] in front], "best": best["number"]}, indent=2) + "\n")
    _plot_front(os.path.join(output_dir, "pareto.png"), points, front, objectives)
    layers_yaml = yaml.safe_dump(best["compression"], sort_keys=False)
    atomic_write_text(os.path.join(output_dir, "best_layers.yaml"), layers_yaml)
    run_cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("search", "sensitivity",
                                                                                  "stages", "finetune")}
    run_cfg["name"] = f"{cfg.get('name', 'search')}-best"
    run_cfg["compression"] = best["compression"]
    atomic_write_text(os.path.join(output_dir, "best_run.yaml"), yaml.safe_dump(run_cfg, sort_keys=False))
    return {"best": best, "front": front, "trials": len(points), "study": study_name, "storage": storage}


__all__ = ["search", "weight_choices", "compression_of", "weighted_score", "check_section", "SAMPLERS"]
