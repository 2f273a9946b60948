"""Tiny Hugging Face causal LMs built from their configs, with random weights (no downloads)."""
import torch

ARCHS = ("opt", "llama", "mistral", "qwen2", "gpt2")


def tiny_model(arch: str, seed: int = 0, layers: int = 3, vocab: int = 128):
    import transformers as T

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=64)
    if arch == "opt":
        cfg = T.OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
                          **common)
        cls = T.OPTForCausalLM
    elif arch == "llama":
        cfg = T.LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **common)
        cls = T.LlamaForCausalLM
    elif arch == "mistral":
        cfg = T.MistralConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, sliding_window=None,
                              **common)
        cls = T.MistralForCausalLM
    elif arch == "qwen2":
        cfg = T.Qwen2Config(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **common)
        cls = T.Qwen2ForCausalLM
    elif arch == "gpt2":
        cfg = T.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=layers, n_head=4, n_positions=64, resid_pdrop=0.0,
                           embd_pdrop=0.0, attn_pdrop=0.0)
        cls = T.GPT2LMHeadModel
    else:
        raise ValueError(arch)
    model = cls(cfg)
    # random init of the tiny configs gives nearly constant logits; wider weights make masks and formats matter
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model.eval()


def tokens(batch: int = 2, length: int = 16, vocab: int = 128, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
