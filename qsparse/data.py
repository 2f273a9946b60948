"""Text sources for calibration and evaluation: local files (plain text, jsonl), lists of rows, and the
Hugging Face ``datasets`` hub when online. Nothing here tokenizes; callers choose the protocol.

Named datasets (FORMATS.md sections 11 and 13), loaded through ``datasets`` when it is installed and online:
``wikitext2`` (``wikitext``/``wikitext-2-raw-v1``, split test or train) and ``c4`` (``allenai/c4``, the first
validation shard ``en/c4-validation.00000-of-00008.json.gz`` or the first train shard).
"""
from __future__ import annotations

import json
import os
from typing import List, Sequence, Union

DATASETS = ("wikitext2", "c4")


def read_rows(path: str) -> List[str]:
    """The text rows of a file: a ``.jsonl``/``.json`` file of objects with a ``"text"`` field (one a line), or a
    plain text file (a single row)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"text file {path!r} does not exist")
    if path.endswith((".jsonl", ".json")):
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON object ({e})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise ValueError(f"{path}:{n}: expected an object with a string field 'text'")
                rows.append(obj["text"])
        return rows
    with open(path, encoding="utf-8") as f:
        return [f.read()]


def hub_rows(name: str, split: str) -> List[str]:
    """Rows of a named dataset from the Hugging Face hub (needs ``datasets`` and a network)."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not known; named datasets: {', '.join(DATASETS)} (or give a path)")
    if split not in ("test", "validation", "train"):
        raise ValueError(f"split={split!r} is not allowed; use 'test', 'validation' or 'train'")
    try:
        from datasets import load_dataset
    except ImportError:
        raise ImportError(f"dataset {name!r} is loaded with the `datasets` package: pip install datasets, or give "
                          "a local text or jsonl file") from None
    if name == "wikitext2":
        ds = load_dataset("wikitext", "wikitext-2-raw-v1", split="validation" if split == "validation" else split)
    else:
        shard = ("en/c4-train.00000-of-01024.json.gz" if split == "train"
                 else "en/c4-validation.00000-of-00008.json.gz")
        key = "train" if split == "train" else "validation"
        ds = load_dataset("allenai/c4", data_files={key: shard}, split=key)
    return list(ds["text"])


def rows_of(source: Union[str, Sequence[str], object], split: str = "test") -> List[str]:
    """Rows from a path, a named dataset, a list of strings or a ``datasets.Dataset`` with a text column."""
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if os.path.exists(s):
            return read_rows(s)
        if s in DATASETS:
            return hub_rows(s, split)
        raise FileNotFoundError(f"{s!r} is neither a file nor a named dataset ({', '.join(DATASETS)})")
    if hasattr(source, "column_names") and "text" in getattr(source, "column_names"):
        return list(source["text"])
    if isinstance(source, (list, tuple)) and all(isinstance(r, str) for r in source):
        return list(source)
    raise TypeError(f"a text source must be a path, a dataset name, a list of strings or a datasets.Dataset, got "
                    f"{type(source).__name__}")


__all__ = ["read_rows", "hub_rows", "rows_of", "DATASETS"]
