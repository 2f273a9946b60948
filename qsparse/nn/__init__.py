"""Modules: BFPLinear, the drop-in nn.Linear with sparsity and fake quantization."""
from .linear import BFPLinear

__all__ = ["BFPLinear"]
