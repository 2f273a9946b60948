"""The hand-patching route: an OPT-style decoder layer edited the way the HBFP-sparsity fork edits modeling_opt.py.

The change to a modeling file is three lines: two imports, and building each linear as ``BFPLinear(..., **args)``
with ``args = bfp_util.get_bfp_args_per_layer(layer_type=..., layer_idx=...)`` instead of ``nn.Linear(...)``::

    from qsparse import bfp_util                      # 1
    from qsparse.bfp_ops import BFPLinear             # 2
    self.fc1 = BFPLinear(embed_dim, ffn_dim, bias=True,
                         **bfp_util.get_bfp_args_per_layer(layer_type="fc1", layer_idx=layer_idx))   # 3

The per-layer YAML is chosen with ``bfp_util.set_config(path)`` or the ``QSPARSE_CONFIG`` environment variable.
Without one, every layer is dense. (For a Hugging Face model, ``qsparse.patch_model(model, path)`` does the same
without editing any file.)

Run: python examples/hand_patched_opt.py
"""
import logging

import torch
from torch import nn

import qsparse
from qsparse import bfp_util
from qsparse.bfp_ops import BFPLinear

LAYER_CONFIG = """
fc1:
  - layer_ids: [1, 2]
    sparsity_num_format: bfp
    a_num_format: fp
    a_mant_bits: 16
    w_num_format: int
    w_mant_bits: 4
    block_size: 32
    w_sparsity: true
    N: 2
    M: 4
    first: s
    sparsity_mode: structured
    sparsify: true
fc2:
  - layer_ids: [1, 2]
    sparsity_num_format: bfp
    a_num_format: fp
    a_mant_bits: 16
    w_num_format: int
    w_mant_bits: 4
    block_size: 32
    w_sparsity: true
    N: 1
    M: 4
    first: s
    sparsity_mode: structured
    sparsify: true
"""


class OPTStyleDecoderLayer(nn.Module):
    """Pre-LayerNorm attention + ReLU MLP, as OPT's decoder layer (no KV cache, no dropout: an example)."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, layer_idx: int):
        super().__init__()
        self.num_heads, self.layer_idx = num_heads, layer_idx
        attn_args = bfp_util.get_bfp_args_per_layer(layer_type="attn", layer_idx=layer_idx)
        self.q_proj = BFPLinear(embed_dim, embed_dim, bias=True, **attn_args)
        self.k_proj = BFPLinear(embed_dim, embed_dim, bias=True, **attn_args)
        self.v_proj = BFPLinear(embed_dim, embed_dim, bias=True, **attn_args)
        self.out_proj = BFPLinear(embed_dim, embed_dim, bias=True, **attn_args)
        self.fc1 = BFPLinear(embed_dim, ffn_dim, bias=True,
                             **bfp_util.get_bfp_args_per_layer(layer_type="fc1", layer_idx=layer_idx))
        self.fc2 = BFPLinear(ffn_dim, embed_dim, bias=True,
                             **bfp_util.get_bfp_args_per_layer(layer_type="fc2", layer_idx=layer_idx))
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [batch, seq, embed]
        b, t, d = x.shape
        h = self.self_attn_layer_norm(x)
        q, k, v = (p(h).view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out_proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(torch.relu(self.fc1(self.final_layer_norm(x))))


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    bfp_util.set_config(LAYER_CONFIG)
    model = nn.Sequential(*(OPTStyleDecoderLayer(256, 1024, 8, i) for i in range(4)))
    x = torch.randn(2, 16, 256)
    with torch.no_grad():
        y = model(x)
    logging.info("output %s, finite: %s", tuple(y.shape), bool(torch.isfinite(y).all()))
    logging.info("%s", qsparse.summary(model))


if __name__ == "__main__":
    main()
