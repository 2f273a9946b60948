"""The HBFP-sparsity fork's module path: ``from qsparse.bfp_ops import BFPLinear`` works as ``from
transformers.bfp.bfp_ops import BFPLinear`` did. (The fork's BFPConv2d and F_matmul_bfp are not provided: LLM
linears are what qsparse patches.)"""
from .nn.linear import BFPLinear

__all__ = ["BFPLinear"]
