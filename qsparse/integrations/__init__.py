"""Walking models: patching from configs, summaries, and the Hugging Face save/load route."""
from .transformers import patch_model, patched_modules, resolve, summary, unpatch_model

__all__ = ["patch_model", "unpatch_model", "patched_modules", "resolve", "summary"]
