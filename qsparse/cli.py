"""The ``qsparse`` command (also ``python -m qsparse``).

    qsparse run CONFIG.yaml [--model ID_OR_PATH] [--output-dir DIR] [key=value ...]
    qsparse eval --model ID_OR_PATH [--compression LAYERS.yaml] [--dataset D] [--tasks piqa,...]
    qsparse compress CONFIG.yaml --model ID_OR_PATH --output-dir DIR
    qsparse sensitivity CONFIG.yaml --layer-types fc1,fc2 [--layer-ids 0,1,2]
    qsparse search CONFIG.yaml [--sampler tpe] [--n-trials 50]
    qsparse describe [FORMAT ...] [--group-size G]

Errors in what the user gave (a missing file, an unknown format, an invalid config) print one line and exit with
status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

logger = logging.getLogger("qsparse")

USER_ERRORS = (FileNotFoundError, ValueError, TypeError, ImportError)

EPILOG = ("Config files: docs/cli.md. Overrides are key.path=value (values parsed as YAML), e.g. "
          "evaluation.perplexity.0.max_windows=8 finetune.args.max_steps=20.")


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> List[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _common(p: argparse.ArgumentParser, config: bool = True, out: str = "runs/<config name>") -> None:
    if config:
        p.add_argument("config", help="run config (YAML): model, compression, stages, finetune, evaluation")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="change the config before it runs (dotted keys, list indices as numbers, YAML values)")
    p.add_argument("--model", default=None,
                   help="model to use instead of the config's: a hub id, a Hugging Face folder, a llama2.c .bin or "
                        "a folder holding one (its tokenizer is the tok*.bin next to it); layer types and indices "
                        "written for another model are adapted (see adapt in docs/cli.md)")
    p.add_argument("--output-dir", default=None, help=f"where results go (default {out})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qsparse", description="Emulate sparse, low-precision LLMs: run experiments "
                                "from configs, evaluate, compress, measure layer sensitivity, search "
                                "mixed-precision configurations, describe number formats.", epilog=EPILOG)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: one line, exit 2)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="logging level of the qsparse logger (default INFO)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run an experiment config end to end (patch, one-shot stages, fine-tune, "
                       "evaluate) and write OUTPUT_DIR/results.txt and results.json", epilog=EPILOG)
    _common(r)

    e = sub.add_parser("eval", help="evaluate a model (optionally patched): GPTQ-protocol token perplexity and "
                       "lm-eval tasks")
    _common(e, config=False, out="runs/eval")
    e.add_argument("--compression", default=None, help="per-layer YAML or recipe to patch the model with first")
    e.add_argument("--dataset", action="append", default=None,
                   help="text to measure perplexity on: a path (text or jsonl) or wikitext2 / c4 (repeatable; "
                        "default wikitext2)")
    e.add_argument("--seqlen", type=int, default=None, help="window length (default 2048 capped by the context)")
    e.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    e.add_argument("--max-windows", type=int, default=None,
                   help="evaluate only the first N windows (a quick estimate, not the protocol's figure)")
    e.add_argument("--tasks", type=_csv, default=None, help="lm-eval tasks, comma-separated (needs lm-eval)")
    e.add_argument("--lm-eval-text", default=None,
                   help="a local text / jsonl file for lm-eval's word perplexity (task qsparse_text)")
    e.add_argument("--limit", type=int, default=None, help="lm-eval: at most this many documents per task")
    e.add_argument("--data-dir", default=None,
                   help="folder with local copies of named datasets (<dir>/wikitext2/test.txt)")

    c = sub.add_parser("compress", help="one-shot compression (GPTQ, SparseGPT, Wanda, magnitude) of a model by the "
                       "config's stages; saves the compressed model to OUTPUT_DIR/model")
    _common(c)

    s = sub.add_parser("sensitivity", help="compress one layer (type x index) at a time, evaluate, and write a table "
                       "and a heatmap of the perplexity change (resumable)", epilog=EPILOG)
    _common(s, out="runs/<config name>-sensitivity")
    s.add_argument("--layer-types", type=_csv, default=None,
                   help="comma-separated layer types (default: the config's sensitivity.layer_types)")
    s.add_argument("--layer-ids", type=_ints, default=None, help="comma-separated decoder indices (default all)")

    q = sub.add_parser("search", help="mixed-precision search with Optuna over formats, bits, group sizes and "
                       "sparsity; writes the Pareto front and the best config (resumable)", epilog=EPILOG)
    _common(q, out="runs/<config name>-search")
    q.add_argument("--sampler", choices=("random", "tpe", "nsga2", "nsga3", "qmc", "grid"), default=None,
                   help="Optuna sampler (default: the config's search.sampler, else tpe); grid: every combination")
    q.add_argument("--n-trials", type=int, default=None, help="trials in total (a resumed study runs the rest)")

    d = sub.add_parser("describe", help="number formats: grid, range and storage cost")
    d.add_argument("formats", nargs="*", help="format names (default: list every format)")
    d.add_argument("--group-size", type=int, default=None, help="group size to describe them with")
    d.add_argument("--json", action="store_true", help="JSON instead of text")
    return p


def _load(args, overrides=None):
    from .run import load_run_config

    return load_run_config(args.config, overrides if overrides is not None else args.overrides, model=args.model)


def _out(args, cfg) -> str:
    return args.output_dir or os.path.join("runs", str(cfg.get("name", "run")))


def cmd_run(args) -> int:
    from .run import results_text, run

    cfg = _load(args)
    res = run(cfg, _out(args, cfg), progress=not args.no_progress)
    print(results_text(res), end="")
    return 0


def cmd_eval(args) -> int:
    from .run import results_text, run, validate

    datasets = args.dataset or ["wikitext2"]
    cfg = {"name": "eval", "model": args.model, "evaluation": {"perplexity": [
        {"dataset": d, "seqlen": args.seqlen, "batch_size": args.batch_size, "max_windows": args.max_windows}
        for d in datasets]}}
    if args.model is None:
        raise ValueError("eval needs --model (a hub id, a Hugging Face folder or a llama2.c .bin)")
    if args.data_dir:
        cfg["data_dir"] = args.data_dir
    if args.compression:
        if not os.path.exists(args.compression):
            raise FileNotFoundError(f"compression file {args.compression!r} does not exist")
        cfg["compression"] = args.compression
    if args.tasks or args.lm_eval_text:
        cfg["evaluation"]["lm_eval"] = {"tasks": args.tasks or [], "limit": args.limit,
                                        "batch_size": args.batch_size, "text": args.lm_eval_text}
    validate(cfg, "eval")
    if args.compression:
        import yaml

        with open(args.compression, encoding="utf-8") as f:
            cfg["compression"] = yaml.safe_load(f)
    res = run(cfg, args.output_dir or os.path.join("runs", "eval"), progress=not args.no_progress)
    print(results_text(res), end="")
    return 0


def cmd_compress(args) -> int:
    from .integrations.hf_quantizer import save_pretrained
    from .run import load_model, prepare_compression, run_stages, split_stages
    from .config import atomic_write_text

    cfg = _load(args)
    plan = [s for s in split_stages(cfg.get("stages")) if s != "finetune"]
    if not plan:
        raise ValueError(f"{args.config}: compress needs stages (e.g. [{{sparsegpt: {{sparsity: '2:4'}}}}])")
    out = _out(args, cfg)
    model, tok = load_model(cfg["model"], cfg.get("tokenizer"), cfg.get("dtype", "float32"), cfg.get("device", "auto"))
    comp, _ = prepare_compression(cfg, model)
    if comp is not None:  # formats set by patching (activations, ...) before the one-shot stages, as qsparse run does
        from . import patch_model

        patch_model(model, comp)
    reports = [run_stages(model, tok, [s for run_ in plan for s in run_], cfg, progress=not args.no_progress)]
    os.makedirs(out, exist_ok=True)
    save_pretrained(model, os.path.join(out, "model"))
    tok.save_pretrained(os.path.join(out, "model"))
    atomic_write_text(os.path.join(out, "compress_report.json"), json.dumps(reports, indent=2, default=str) + "\n")
    print(f"compressed model saved to {os.path.join(out, 'model')}")
    return 0


def cmd_sensitivity(args) -> int:
    from .search.sensitivity import sensitivity

    cfg = _load(args)
    out = args.output_dir or os.path.join("runs", f"{cfg.get('name', 'run')}-sensitivity")
    res = sensitivity(cfg, out, layer_types=args.layer_types, layer_ids=args.layer_ids,
                      progress=not args.no_progress)
    ids = res["layer_ids"]
    print(f"{res['metric']}; baseline {res['baseline']:.4f}; change per layer type (rows) x decoder layer (columns)")
    print("type".ljust(14) + "".join(str(i).rjust(10) for i in ids))
    for lt in res["layer_types"]:
        print(lt.ljust(14) + "".join(f"{res['table'][lt][i]:10.4f}" for i in ids))
    print(f"written: {os.path.join(out, 'sensitivity.csv')}, sensitivity.png, sensitivity.json")
    return 0


def cmd_search(args) -> int:
    from .search.optuna_search import search

    cfg = _load(args)
    out = args.output_dir or os.path.join("runs", f"{cfg.get('name', 'run')}-search")
    res = search(cfg, out, n_trials=args.n_trials, sampler=args.sampler, progress=not args.no_progress)
    b = res["best"]
    print(f"{res['trials']} trials; best #{b['number']}: " + ", ".join(f"{k} {v:.4f}" for k, v in b["metrics"].items()))
    print(f"written: {os.path.join(out, 'best_run.yaml')} (qsparse run it), best_layers.yaml, pareto.json, "
          "pareto.png, trials.json")
    return 0


def cmd_describe(args) -> int:
    from . import formats

    if not args.formats:
        for name in formats.names():
            d = formats.describe(name)
            print(f"{name:<16} {d.element_bits:>2} bits  {d.bits_per_element:g} bits/element  max {d.max:g}")
        return 0
    out = []
    for name in args.formats:
        d = formats.describe(name, args.group_size)
        if args.json:
            out.append({k: v for k, v in d.__dict__.items() if k not in ("grid", "grids")})
            continue
        print(f"{d.name}: {d.element_bits}-bit elements, group {d.group_size or 'default'}, scale mode {d.scale_mode}, "
              f"max {d.max:g}, min subnormal {d.min_subnormal:g}; {d.bits_per_element:g} bits per element"
              + (f" + {d.tensor_scale_bits} bits per tensor" if d.tensor_scale_bits else ""))
        if d.grid is not None and len(d.grid) <= 64:
            print("  grid (non-negative): " + ", ".join(f"{v:g}" for v in d.grid))
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


COMMANDS = {"run": cmd_run, "eval": cmd_eval, "compress": cmd_compress, "sensitivity": cmd_sensitivity,
            "search": cmd_search, "describe": cmd_describe}


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (argparse stops collecting positionals at the first option)
    overrides = [x for x in extra if "=" in x and not x.startswith("-")]
    rest = [x for x in extra if x not in overrides]
    if rest or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(rest or overrides)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(h)
    logger.setLevel(args.log_level)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"qsparse {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsparse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
