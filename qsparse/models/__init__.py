"""Model loaders for checkpoints outside the Hugging Face format (llama2.c)."""
from .llama2c import load_llama2c

__all__ = ["load_llama2c"]
