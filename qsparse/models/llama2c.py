"""Load a llama2.c checkpoint (karpathy/llama2.c ``model.bin`` + ``tokenizer.bin``) as a Hugging Face
``LlamaForCausalLM`` and a ``PreTrainedTokenizerFast``, so that the tiny real models trained with llama2.c
(stories15M, stories260K, ...) work everywhere a Hugging Face model does: patching, fine-tuning, evaluation.

Checkpoint layout (llama2.c's legacy export, version 0): a header of 7 int32
``dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`` (a negative vocab_size means the output
layer is not tied to the embedding), then float32 tensors in this order::

    token_embedding [V, dim]   rms_att [L, dim]   wq [L, dim, dim]   wk [L, kv_dim, dim]   wv [L, kv_dim, dim]
    wo [L, dim, dim]   rms_ffn [L, dim]   w1 [L, hidden, dim]   w2 [L, dim, hidden]   w3 [L, hidden, dim]
    rms_final [dim]    freq_cis_real [seq_len, head/2]   freq_cis_imag [seq_len, head/2]   (wcls [V, dim])

w1 is the gate, w3 the up and w2 the down projection. llama2.c rotates interleaved pairs (2i, 2i+1) of each head
with RoPE; Hugging Face's Llama rotates (i, i + head/2). The rows of wq and wk are permuted accordingly, so that the
converted model computes the same function.

Tokenizer layout: int32 max_token_length, then per token {float32 score, int32 length, bytes}. Tokens 0, 1, 2 are
<unk>, BOS and EOS; 3..258 are the byte-fallback tokens <0x00>..<0xFF>; a space stands for sentencepiece's "▁".
llama2.c encodes by prepending one space, splitting into characters (bytes for characters not in the vocabulary)
and repeatedly merging the adjacent pair whose concatenation is a token with the highest score (the leftmost pair
on ties). That is exactly byte-fallback BPE with one merge rule per split of every token, ranked by the token's
score, which is what the ``tokenizers`` model below is.
"""
from __future__ import annotations

import os
import struct
from typing import List, Tuple

import torch

HEADER = struct.Struct("<7i")
_SPECIALS = ("<unk>", "<s>", "</s>")
_N_BYTE_TOKENS = 256


def _read_exact(f, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{path}: truncated while reading {what} ({len(data)} of {n} bytes)")
    return data


def read_llama2c_checkpoint(model_bin: str) -> Tuple[dict, dict]:
    """(header, tensors) of a llama2.c legacy checkpoint; tensors by llama2.c's names, float32."""
    path = os.fspath(model_bin)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = HEADER.unpack(
            _read_exact(f, HEADER.size, path, "the header"))
        shared = vocab > 0
        vocab = abs(vocab)
        header = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                      vocab_size=vocab, seq_len=seq_len, shared_classifier=shared)
        for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"):
            if header[k] <= 0:
                raise ValueError(f"{path}: header field {k}={header[k]} must be positive (not a llama2.c checkpoint?)")
        if dim % n_heads or n_heads % n_kv_heads or (dim // n_heads) % 2:
            raise ValueError(f"{path}: dim={dim}, n_heads={n_heads}, n_kv_heads={n_kv_heads} do not form valid "
                             "heads (dim divisible by n_heads, n_heads by n_kv_heads, even head size)")
        head = dim // n_heads
        kv_dim = head * n_kv_heads
        shapes = [
            ("token_embedding", (vocab, dim)), ("rms_att", (n_layers, dim)), ("wq", (n_layers, dim, dim)),
            ("wk", (n_layers, kv_dim, dim)), ("wv", (n_layers, kv_dim, dim)), ("wo", (n_layers, dim, dim)),
            ("rms_ffn", (n_layers, dim)), ("w1", (n_layers, hidden, dim)), ("w2", (n_layers, dim, hidden)),
            ("w3", (n_layers, hidden, dim)), ("rms_final", (dim,)), ("freq_cis_real", (seq_len, head // 2)),
            ("freq_cis_imag", (seq_len, head // 2)),
        ]
        if not shared:
            shapes.append(("wcls", (vocab, dim)))
        expected = HEADER.size + 4 * sum(torch.Size(s).numel() for _, s in shapes)
        if size != expected:
            raise ValueError(f"{path}: {size} bytes, but a llama2.c checkpoint with header {header} has "
                             f"{expected} bytes")
        tensors = {}
        for name, shape in shapes:
            n = torch.Size(shape).numel()
            buf = bytearray(_read_exact(f, 4 * n, path, name))
            tensors[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(shape).clone()
    return header, tensors


def _rope_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of a q/k projection from llama2.c's interleaved RoPE pairs to Hugging Face's half-split order: within
    each head, HF row a * head/2 + i is llama2.c row 2i + a."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def llama2c_to_hf(header: dict, tensors: dict, dtype: torch.dtype = torch.float32):
    """A ``LlamaForCausalLM`` computing what llama2.c's run.c computes for this checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dim, n_heads, n_kv = header["dim"], header["n_heads"], header["n_kv_heads"]
    config = LlamaConfig(
        vocab_size=header["vocab_size"], hidden_size=dim, intermediate_size=header["hidden_dim"],
        num_hidden_layers=header["n_layers"], num_attention_heads=n_heads, num_key_value_heads=n_kv,
        max_position_embeddings=header["seq_len"], rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu",
        tie_word_embeddings=header["shared_classifier"], bos_token_id=1, eos_token_id=2, pad_token_id=None,
        attention_bias=False, mlp_bias=False,
    )
    model = LlamaForCausalLM(config).to(dtype)
    t = tensors
    sd = {"model.embed_tokens.weight": t["token_embedding"], "model.norm.weight": t["rms_final"]}
    for i in range(header["n_layers"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = t["rms_att"][i]
        sd[p + "post_attention_layernorm.weight"] = t["rms_ffn"][i]
        sd[p + "self_attn.q_proj.weight"] = _rope_permute(t["wq"][i], n_heads)
        sd[p + "self_attn.k_proj.weight"] = _rope_permute(t["wk"][i], n_kv)
        sd[p + "self_attn.v_proj.weight"] = t["wv"][i]
        sd[p + "self_attn.o_proj.weight"] = t["wo"][i]
        sd[p + "mlp.gate_proj.weight"] = t["w1"][i]
        sd[p + "mlp.down_proj.weight"] = t["w2"][i]
        sd[p + "mlp.up_proj.weight"] = t["w3"][i]
    if not header["shared_classifier"]:
        sd["lm_head.weight"] = t["wcls"]
    own = model.state_dict()
    missing = sorted(set(own) - set(sd) - ({"lm_head.weight"} if header["shared_classifier"] else set()))
    if missing:
        raise RuntimeError(f"llama2.c conversion: no tensor for {missing} (an unexpected LlamaForCausalLM layout)")
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v)
    model.eval()
    return model


def read_llama2c_tokenizer(tokenizer_bin: str, vocab_size: int) -> Tuple[List[str], List[float]]:
    """(pieces, scores) of a llama2.c tokenizer file with ``vocab_size`` tokens (raw strings, spaces as written)."""
    path = os.fspath(tokenizer_bin)
    pieces, scores = [], []
    with open(path, "rb") as f:
        (max_len,) = struct.unpack("<i", _read_exact(f, 4, path, "max_token_length"))
        for i in range(vocab_size):
            score, length = struct.unpack("<fi", _read_exact(f, 8, path, f"the record of token {i}"))
            if not 0 < length <= max_len:
                raise ValueError(f"{path}: token {i} has length {length} (max_token_length {max_len})")
            raw = _read_exact(f, length, path, f"the bytes of token {i}")
            pieces.append(raw.decode("utf-8", errors="strict"))
            scores.append(score)
        if f.read(1):
            raise ValueError(f"{path}: more than {vocab_size} tokens (the model's vocab_size)")
    return pieces, scores


def llama2c_tokenizer(pieces: List[str], scores: List[float]):
    """A ``PreTrainedTokenizerFast`` that encodes and decodes exactly as llama2.c's run.c (see the module doc)."""
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    n_fixed = len(_SPECIALS) + _N_BYTE_TOKENS
    if len(pieces) < n_fixed:
        raise ValueError(f"a llama2.c tokenizer has at least {n_fixed} tokens, got {len(pieces)}")
    for b in range(_N_BYTE_TOKENS):
        if pieces[3 + b] != f"<0x{b:02X}>":
            raise ValueError(f"token {3 + b} is {pieces[3 + b]!r}; llama2.c's byte tokens are <0x00>..<0xFF> at 3..258")
    vocab = {}
    for i, p in enumerate(pieces):
        p = _SPECIALS[i] if i < len(_SPECIALS) else p.replace(" ", "\u2581")
        if p in vocab:
            raise ValueError(f"token {i} ({p!r}) repeats token {vocab[p]}")
        vocab[p] = i
    # One merge rule per split of each mergeable token into two tokens, ranked by the token's score (descending;
    # Python's sort is stable, so equal scores keep token order).
    mergeable = sorted(range(n_fixed, len(pieces)), key=lambda i: -scores[i])
    names = {i: p for p, i in vocab.items()}
    merges = []
    for i in mergeable:
        tok = names[i]
        for cut in range(1, len(tok)):
            a, b = tok[:cut], tok[cut:]
            if a in vocab and b in vocab and vocab[a] >= n_fixed and vocab[b] >= n_fixed:
                merges.append((a, b))
    model = BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    for s in _SPECIALS:
        tok.add_special_tokens([s])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def load_llama2c(model_bin: str, tokenizer_bin: str, dtype: torch.dtype = torch.float32):
    """(LlamaForCausalLM, PreTrainedTokenizerFast) from a llama2.c checkpoint and tokenizer file.

    >>> model, tok = load_llama2c("stories260K.bin", "tok512.bin")
    >>> ids = model.generate(torch.tensor([[1]]), max_new_tokens=30, do_sample=False)
    >>> tok.decode(ids[0], skip_special_tokens=True)   # 'Once upon a time, there was a little girl named Lily. ...'
    """
    header, tensors = read_llama2c_checkpoint(model_bin)
    model = llama2c_to_hf(header, tensors, dtype=dtype)
    pieces, scores = read_llama2c_tokenizer(tokenizer_bin, header["vocab_size"])
    tokenizer = llama2c_tokenizer(pieces, scores)
    return model, tokenizer


__all__ = ["load_llama2c", "read_llama2c_checkpoint", "llama2c_to_hf", "read_llama2c_tokenizer", "llama2c_tokenizer"]
