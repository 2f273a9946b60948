"""qsparse: emulate sparse, low-precision LLMs in PyTorch.

Fake quantization in the number formats of the literature, N:M and unstructured sparsity masks, and ``BFPLinear``,
a drop-in ``nn.Linear`` that keeps a mask and quantizes its weight and input. Hot paths are C (CPU) and CUDA
kernels called through ctypes and exposed as torch.library custom ops.
"""
__version__ = "0.1.0"

from . import algorithms, formats
from .config import LayerConfig, ModelConfig, SparsityConfig, load_config
from .errors import QsparseError
from .formats import Format
from .functional import decode, encode, fake_quant, group_choices, hadamard, magnitude_mask, nm_mask
from .integrations import patch_model, summary, unpatch_model
from .integrations.compress import Calibration, compress
from .integrations import hf_quantizer as _hf_quantizer
from .integrations.hf_quantizer import save_pretrained
from .nn import BFPLinear

_hf_quantizer.install_import_hook()  # quant_method "qsparse" for from_pretrained, once transformers loads models

__all__ = [
    "QsparseError",
    "Format",
    "LayerConfig",
    "SparsityConfig",
    "ModelConfig",
    "load_config",
    "patch_model",
    "compress",
    "Calibration",
    "algorithms",
    "unpatch_model",
    "summary",
    "save_pretrained",
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
