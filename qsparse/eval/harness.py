"""lm-eval-harness tasks on a loaded (patched) model, through lm-eval's ``HFLM`` wrapper (extra ``eval``).

``lm_eval_tasks(model, tokenizer, tasks=["piqa"], limit=100)`` runs the named tasks on the model as it is (its
BFPLinear modules included) and returns the per-task metrics. Named tasks download their data from the hub; for
offline use, ``text=PATH`` adds a task ``qsparse_text`` over a local text / jsonl file: lm-eval's rolling
log-likelihood over documents (the rows grouped into articles at WikiText's `` = Title = `` headings), with its
``word_perplexity``, ``byte_perplexity`` and ``bits_per_byte`` metrics, the ones lm-eval's ``wikitext`` task reports.

Word perplexity is per whitespace-separated word over whole documents; qsparse.eval.perplexity is *token* perplexity
over fixed windows (the GPTQ protocol). The two are different numbers and are reported under different labels.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Sequence

logger = logging.getLogger("qsparse")

SPEC_KEYS = {"tasks", "limit", "batch_size", "num_fewshot", "include_path", "text", "max_length"}
TEXT_TASK = "qsparse_text"
_HEADING = re.compile(r"^ = [^=].* = \s*$")


def check_lm_eval_spec(spec) -> None:
    if not isinstance(spec, dict):
        raise ValueError(f"evaluation.lm_eval must be a mapping of {sorted(SPEC_KEYS)}, got {type(spec).__name__}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"evaluation.lm_eval: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
    tasks = spec.get("tasks", [])
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, str) and t for t in tasks):
        raise ValueError(f"evaluation.lm_eval.tasks={tasks!r} is not allowed; a list of task names")
    if not tasks and not spec.get("text"):
        raise ValueError("evaluation.lm_eval: give tasks (lm-eval task names) or text (a local file)")
    for k in ("limit", "batch_size", "num_fewshot", "max_length"):
        v = spec.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"evaluation.lm_eval.{k}={v!r} is not allowed; expected an int >= 0")


def documents(rows: Sequence[str]) -> List[str]:
    """WikiText rows grouped into articles (a new article at each `` = Title = `` heading row); other text: one
    document per row (a plain text file is one row, hence one document)."""
    if not any(_HEADING.match(r) for r in rows):
        return [r for r in rows if r.strip()]
    docs, cur = [], []
    for r in rows:
        if _HEADING.match(r) and cur:
            docs.append("\n\n".join(cur))
            cur = []
        cur.append(r)
    if cur:
        docs.append("\n\n".join(cur))
    return [d for d in docs if d.strip()]


def write_text_task(folder: str, source: str) -> str:
    """Write a local lm-eval task (``qsparse_text``) over ``source`` into ``folder``; returns the task name."""
    from ..data import rows_of

    docs = documents(rows_of(source))
    data = os.path.join(folder, "qsparse_text.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"page": d}) + "\n")
    with open(os.path.join(folder, "qsparse_text.yaml"), "w", encoding="utf-8") as f:
        f.write(f"task: {TEXT_TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(data)}\n"
                "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: \"\"\n"
                "doc_to_target: \"{{page}}\"\nmetric_list:\n  - metric: word_perplexity\n"
                "  - metric: byte_perplexity\n  - metric: bits_per_byte\n")
    return TEXT_TASK


def _import_lm_eval():
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ImportError("lm-eval tasks need lm-eval-harness: pip install 'qsparse[eval]' (or pip install lm-eval)"
                          ) from None
    return simple_evaluate, HFLM, TaskManager


def lm_eval_tasks(model, tokenizer, tasks: Sequence[str] = (), *, limit: Optional[int] = None, batch_size: int = 1,
                  num_fewshot: Optional[int] = None, include_path: Optional[str] = None, text: Optional[str] = None,
                  max_length: Optional[int] = None, evaluator=None) -> Dict[str, Any]:
    """Run lm-eval tasks on ``model`` as loaded (patched modules included) through ``HFLM``.

    Returns ``{"results": {task: {metric: value}}, "tasks": [...], "limit": limit, "note": ...}`` with lm-eval's
    metric names without the ``,none`` filter suffix. ``evaluator`` replaces ``lm_eval.simple_evaluate`` (tests)."""
    spec = {"tasks": list([tasks] if isinstance(tasks, str) else tasks), "limit": limit, "batch_size": batch_size,
            "num_fewshot": num_fewshot, "include_path": include_path, "text": text, "max_length": max_length}
    check_lm_eval_spec(spec)
    simple_evaluate, HFLM, TaskManager = _import_lm_eval()
    evaluator = evaluator or simple_evaluate
    device = str(next(model.parameters()).device)
    ctx = getattr(model.config, "max_position_embeddings", None)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
              max_length=max_length or ctx)
    task_list = list(spec["tasks"])
    with tempfile.TemporaryDirectory(prefix="qsparse-lm-eval-") as tmp:
        paths = [p for p in (include_path,) if p]
        if text:
            task_list.append(write_text_task(tmp, text))
            paths.append(tmp)
        tm = TaskManager(include_path=paths if paths else None)
        out = evaluator(model=lm, tasks=task_list, task_manager=tm, limit=limit, num_fewshot=num_fewshot)
    results = {}
    for task, metrics in (out or {}).get("results", {}).items():
        results[task] = {k.split(",")[0]: v for k, v in metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}
    logger.info("lm-eval: %s", results)
    return {"results": results, "tasks": task_list, "limit": limit,
            "note": "lm-eval metrics (word_perplexity is per word over whole documents, not the GPTQ token "
                    "perplexity)"}


__all__ = ["lm_eval_tasks", "documents", "write_text_task", "check_lm_eval_spec", "TEXT_TASK"]
