"""Perplexity as GPTQ, SparseGPT and their successors report it (FORMATS.md section 13), so that numbers compare
with the papers'.

WikiText-2: the test rows joined with ``"\\n\\n"`` and tokenized once; ``floor(N / seqlen)`` non-overlapping
windows (the partial tail is dropped); each window's loss is the mean cross entropy of tokens 1..seqlen-1 given
the ones before; ``ppl = exp(sum(loss_i * seqlen) / (windows * seqlen))`` (the reference scales each window's mean
by seqlen although it averages seqlen - 1 tokens; the factor cancels, as here). C4: 256 windows, each a random
slice of a random validation document of at least seqlen tokens (Python's ``random`` seeded with 0, exactly the
reference's draws).

This is *token* perplexity. lm-eval-harness's ``wikitext`` task reports *word* perplexity (per whitespace word,
over its own document split); the two are not comparable.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Optional

import torch

from ..data import rows_of

logger = logging.getLogger("qsparse")


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    nll_sum: float  # sum over windows of mean loss * seqlen
    windows: int
    seqlen: int
    tokens: int  # tokens in the evaluated windows (windows * seqlen)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_seqlen(model, seqlen: Optional[int] = None, default: int = 2048) -> int:
    """seqlen, or ``default`` capped by the model's context (``max_position_embeddings`` / ``n_positions``)."""
    cfg = getattr(model, "config", None)
    ctx = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if seqlen is None:
        seqlen = min(default, ctx) if ctx else default
    if isinstance(seqlen, bool) or not isinstance(seqlen, int) or seqlen < 2:
        raise ValueError(f"seqlen={seqlen!r} is not allowed; expected an int >= 2")
    if ctx and seqlen > ctx:
        raise ValueError(f"seqlen={seqlen} exceeds the model's context of {ctx} tokens")
    return seqlen


def wikitext_windows(tokenizer, rows, seqlen: int) -> torch.Tensor:
    """[windows, seqlen] token ids: the rows joined with "\\n\\n", tokenized once, cut into non-overlapping
    windows (tail dropped)."""
    ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[0]
    n = ids.numel() // seqlen
    if n == 0:
        raise ValueError(f"the text has {ids.numel()} tokens, fewer than one window of seqlen={seqlen}")
    return ids[: n * seqlen].view(n, seqlen)


def c4_windows(tokenizer, rows, seqlen: int, n: int = 256, seed: int = 0) -> torch.Tensor:
    """[n, seqlen] token ids: GPTQ's C4 validation windows (see the module doc)."""
    rng = random.Random(seed)
    out = []
    tries = 0
    for _ in range(n):
        while True:
            i = rng.randint(0, len(rows) - 1)
            ids = tokenizer(rows[i], return_tensors="pt").input_ids[0]
            if ids.numel() >= seqlen:
                break
            tries += 1
            if tries > 1000 * n:
                raise ValueError(f"after {tries} draws, too few documents have {seqlen} tokens for {n} windows")
        i = rng.randint(0, ids.numel() - seqlen - 1)
        out.append(ids[i: i + seqlen])
    return torch.stack(out)


@torch.no_grad()
def window_losses(model, windows: torch.Tensor, batch_size: int = 1, progress: bool = True) -> torch.Tensor:
    """float64 [windows]: each window's mean next-token cross entropy (tokens 1.. given the ones before)."""
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; expected an int >= 1")
    device = next(model.parameters()).device
    losses = []
    was_training = model.training
    model.eval()
    try:
        for b in tqdm(range(0, windows.shape[0], batch_size), desc="perplexity", unit="batch",
                      disable=not progress):
            batch = windows[b: b + batch_size].to(device)
            logits = model(batch).logits[:, :-1, :].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                    reduction="none").view(batch.shape[0], -1)
            losses.append(nll.mean(dim=1).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(losses)


def perplexity(model, tokenizer=None, text_or_dataset="wikitext2", *, seqlen: Optional[int] = None,
               batch_size: int = 1, protocol: Optional[str] = None, split: str = "test",
               max_windows: Optional[int] = None, progress: bool = True) -> PerplexityResult:
    """Token perplexity of a causal LM under the GPTQ protocol.

    text_or_dataset: a path (plain text, or jsonl rows with ``"text"``), ``"wikitext2"`` / ``"c4"`` (from the
        hub, needs ``datasets`` and a network), a list of rows, a ``datasets.Dataset``, or a LongTensor of token
        ids ([N] or [windows, seqlen]: used as given).
    protocol: ``"wikitext"`` (joined rows, consecutive windows) or ``"c4"`` (256 random windows); None picks
        ``c4`` for the dataset named c4, else ``wikitext``.
    seqlen: None = 2048 capped by the model's context.
    max_windows: evaluate only the first ``max_windows`` windows (a quick estimate, not the protocol's figure;
        ``windows`` in the result says how many were used). None: all of them."""
    if max_windows is not None and (isinstance(max_windows, bool) or not isinstance(max_windows, int)
                                    or max_windows < 1):
        raise ValueError(f"max_windows={max_windows!r} is not allowed; expected None or an int >= 1")
    seqlen = model_seqlen(model, seqlen)
    if isinstance(text_or_dataset, torch.Tensor):
        ids = text_or_dataset
        if ids.dtype not in (torch.int64, torch.int32) or ids.dim() not in (1, 2):
            raise ValueError("token ids must be an int64/int32 tensor [N] or [windows, seqlen]")
        if ids.dim() == 1:
            n = ids.numel() // seqlen
            if n == 0:
                raise ValueError(f"{ids.numel()} tokens are fewer than one window of seqlen={seqlen}")
            ids = ids[: n * seqlen].view(n, seqlen)
        windows = ids.long()
    else:
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to evaluate text")
        if protocol is None:
            protocol = "c4" if text_or_dataset == "c4" else "wikitext"
        if protocol not in ("wikitext", "c4"):
            raise ValueError(f"protocol={protocol!r} is not allowed; use 'wikitext' or 'c4'")
        rows = rows_of(text_or_dataset, split="validation" if protocol == "c4" else split)
        windows = c4_windows(tokenizer, rows, seqlen) if protocol == "c4" else wikitext_windows(tokenizer, rows,
                                                                                                 seqlen)
    if max_windows is not None:
        windows = windows[:max_windows]
    losses = window_losses(model, windows, batch_size=batch_size, progress=progress)
    s = windows.shape[1]
    nll_sum = float((losses * s).sum())
    n = windows.shape[0]
    ppl = math.exp(nll_sum / (n * s))
    logger.info("perplexity %.4f over %d windows of %d tokens", ppl, n, s)
    return PerplexityResult(ppl=ppl, nll_sum=nll_sum, windows=n, seqlen=s, tokens=n * s)
