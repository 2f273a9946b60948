"""qsparse: emulate sparse, low-precision LLMs in PyTorch.

Fake quantization in the number formats of the literature, N:M and unstructured sparsity masks, and ``BFPLinear``,
a drop-in ``nn.Linear`` that keeps a mask and quantizes its weight and input. Hot paths are C (CPU) and CUDA
kernels called through ctypes and exposed as torch.library custom ops.
"""
from . import formats
from .config import LayerConfig, SparsityConfig
from .errors import QsparseError
from .formats import Format
from .functional import decode, encode, fake_quant, group_choices, hadamard, magnitude_mask, nm_mask
from .nn import BFPLinear

__version__ = "0.1.0"

__all__ = [
    "QsparseError",
    "Format",
    "LayerConfig",
    "SparsityConfig",
    "BFPLinear",
    "formats",
    "fake_quant",
    "group_choices",
    "hadamard",
    "nm_mask",
    "magnitude_mask",
    "encode",
    "decode",
    "__version__",
]
