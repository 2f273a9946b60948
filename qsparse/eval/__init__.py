"""Evaluation: perplexity under the GPTQ protocol."""
from .perplexity import PerplexityResult, c4_windows, perplexity, wikitext_windows

__all__ = ["perplexity", "PerplexityResult", "wikitext_windows", "c4_windows"]
