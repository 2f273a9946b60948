"""The llama2.c loader against transcriptions of llama2.c's own run.c (forward pass and tokenizer), written here
from run.c's algorithm, and against the model's known greedy text."""
import os
import struct

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from qsparse.models import llama2c  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "stories260K")
MODEL = os.path.join(DATA, "stories260K.bin")
TOKENIZER = os.path.join(DATA, "tok512.bin")
needs_data = pytest.mark.skipif(not os.path.exists(MODEL), reason="../shared/data/stories260K is absent")

# The data README's greedy continuation of BOS.
KNOWN_TEXT = " Once upon a time, there was a little girl named Lily. She loved to play outside in the park."


@pytest.fixture(scope="module")
def loaded():
    return llama2c.load_llama2c(MODEL, TOKENIZER)


def run_c_forward(t: dict, h: dict, tokens: torch.Tensor) -> torch.Tensor:
    """llama2.c run.c's forward for a whole sequence, in float64: RMSNorm (eps 1e-5), RoPE on interleaved pairs
    (2i, 2i+1) with freq 10000^(-2i/head), grouped-query attention, SwiGLU (w2(silu(w1 x) * w3 x))."""
    d = {k: v.double() for k, v in t.items()}
    dim, n_heads, n_kv = h["dim"], h["n_heads"], h["n_kv_heads"]
    head = dim // n_heads
    T = tokens.numel()

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w

    def rope(x, heads):  # x [T, heads*head]
        x = x.view(T, heads, head // 2, 2)
        i = torch.arange(head // 2, dtype=torch.float64)
        freq = 1.0 / (10000.0 ** (2 * i / head))
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        a, b = x[..., 0], x[..., 1]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).reshape(T, heads * head)

    x = d["token_embedding"][tokens]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in range(h["n_layers"]):
        xb = rms(x, d["rms_att"][layer])
        q = rope(xb @ d["wq"][layer].T, n_heads).view(T, n_heads, head)
        k = rope(xb @ d["wk"][layer].T, n_kv).view(T, n_kv, head)
        v = (xb @ d["wv"][layer].T).view(T, n_kv, head)
        rep = n_heads // n_kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / head ** 0.5
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        out = torch.einsum("hts,shd->thd", att, v).reshape(T, dim)
        x = x + out @ d["wo"][layer].T
        xb = rms(x, d["rms_ffn"][layer])
        g = xb @ d["w1"][layer].T
        x = x + ((g * torch.sigmoid(g)) * (xb @ d["w3"][layer].T)) @ d["w2"][layer].T
    x = rms(x, d["rms_final"])
    return x @ (d["token_embedding"] if h["shared_classifier"] else d["wcls"]).T


def run_c_encode(pieces, scores, text: str, bos: bool = True):
    """llama2.c run.c's encode(): dummy-prefix space, UTF-8 characters (byte fallback = byte + 3), then merge the
    best-scoring adjacent pair (first on ties) until none merges."""
    lookup = {p: i for i, p in enumerate(pieces)}
    tokens = [1] if bos else []
    if text:
        tokens.append(lookup[" "])
    for ch in text:
        if ch in lookup:
            tokens.append(lookup[ch])
        else:
            tokens.extend(b + 3 for b in ch.encode("utf-8"))
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            j = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if j != -1 and scores[j] > best:
                best, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            return tokens
        tokens[best_idx:best_idx + 2] = [best_id]


@needs_data
def test_logits_equal_run_c_forward(loaded):
    model, _ = loaded
    header, tensors = llama2c.read_llama2c_checkpoint(MODEL)
    tokens = torch.tensor([1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401])
    ref = run_c_forward(tensors, header, tokens)
    with torch.no_grad():
        got = model(tokens[None]).logits[0].double()
    assert (got - ref).abs().max().item() < 2e-4 * ref.abs().max().item()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


@needs_data
def test_greedy_generation_reproduces_the_known_text(loaded):
    model, tok = loaded
    with torch.no_grad():
        ids = model.generate(torch.tensor([[1]]), max_new_tokens=40, do_sample=False)
    text = tok.decode(ids[0], skip_special_tokens=True)
    # the decoder drops the dummy-prefix space of the first piece, as Hugging Face's Llama tokenizers do
    assert (" " + text).startswith(KNOWN_TEXT), text


@needs_data
@pytest.mark.parametrize("text", [
    "Once upon a time, there was a little girl named Lily.",
    "  two  spaces\nnew line\ttab",
    "Ünïcödé — “quotes” and emoji 🙂 fall back to bytes",
    "= Valkyria Chronicles III =\n\n Senjō no Valkyria 3 : Unrecorded Chronicles",
    "a",
])
def test_tokenizer_equals_run_c_encode(loaded, text):
    _, tok = loaded
    header, _ = llama2c.read_llama2c_checkpoint(MODEL)
    pieces, scores = llama2c.read_llama2c_tokenizer(TOKENIZER, header["vocab_size"])
    assert tok(text).input_ids == run_c_encode(pieces, scores, text)
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


@needs_data
def test_tokenizer_on_wikitext_prefix(loaded):
    _, tok = loaded
    header, _ = llama2c.read_llama2c_checkpoint(MODEL)
    pieces, scores = llama2c.read_llama2c_tokenizer(TOKENIZER, header["vocab_size"])
    with open(os.path.join(ROOT, "..", "shared", "data", "wikitext2", "test.txt"), encoding="utf-8") as f:
        text = f.read(3000)
    assert tok(text).input_ids == run_c_encode(pieces, scores, text)


def _write_checkpoint(path, header, tensors):
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header))
        for t in tensors:
            f.write(t.numpy().astype("<f4").tobytes())


def test_untied_classifier_and_bad_files(tmp_path):
    dim, hidden, layers, heads, kv, vocab, seq = 8, 12, 1, 2, 1, 16, 4
    head = dim // heads
    g = torch.Generator().manual_seed(0)
    shapes = [(vocab, dim), (layers, dim), (layers, dim, dim), (layers, kv * head, dim), (layers, kv * head, dim),
              (layers, dim, dim), (layers, dim), (layers, hidden, dim), (layers, dim, hidden), (layers, hidden, dim),
              (dim,), (seq, head // 2), (seq, head // 2), (vocab, dim)]
    tensors = [torch.randn(s, generator=g) for s in shapes]
    path = tmp_path / "m.bin"
    _write_checkpoint(path, (dim, hidden, layers, heads, kv, -vocab, seq), tensors)
    header, t = llama2c.read_llama2c_checkpoint(path)
    assert not header["shared_classifier"]
    model = llama2c.llama2c_to_hf(header, t)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    tokens = torch.tensor([1, 5, 7, 3])
    ref = run_c_forward(t, header, tokens)
    with torch.no_grad():
        got = model(tokens[None]).logits[0].double()
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)

    _write_checkpoint(path, (dim, hidden, layers, heads, kv, -vocab, seq), tensors[:-1])  # classifier missing
    with pytest.raises(ValueError, match="bytes"):
        llama2c.read_llama2c_checkpoint(path)
    _write_checkpoint(path, (dim, hidden, layers, 3, kv, vocab, seq), tensors)
    with pytest.raises(ValueError, match="heads"):
        llama2c.read_llama2c_checkpoint(path)
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="truncated"):
        llama2c.read_llama2c_checkpoint(path)


@needs_data
def test_patched_stories_model_and_tokenizer_round_trip(loaded, tmp_path):
    """stories260K patched the seed's way (INT4/FP16, gate/up 2:4, down 1:4), saved, loaded with the Auto classes:
    the same masks and logits; the saved tokenizer encodes as the original."""
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import qsparse

    model, tok = loaded
    model = copy.deepcopy(model)
    seed = dict(sparsity_num_format="bfp", a_num_format="fp", a_mant_bits=16, w_num_format="int", w_mant_bits=4,
                block_size=32, w_sparsity=True, first="s", sparsity_mode="structured", sparsify=True)
    qsparse.patch_model(model, {"gate_proj": [{"layer_ids": [1, 2], **seed, "N": 2, "M": 4}],
                                "up_proj": [{"layer_ids": [1, 2], **seed, "N": 2, "M": 4}],
                                "down_proj": [{"layer_ids": [1, 2], **seed, "N": 1, "M": 4}]})
    ids = tok("Once upon a time, there was a little girl", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model(ids).logits
    qsparse.save_pretrained(model, tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2("a tiny test, with words").input_ids == tok("a tiny test, with words").input_ids
    down = again.model.layers[2].mlp.down_proj
    assert isinstance(down, qsparse.BFPLinear) and torch.equal(down.mask, model.model.layers[2].mlp.down_proj.mask)
    assert float(down.mask.float().mean()) == 0.25
    with torch.no_grad():
        assert torch.equal(again(ids).logits, expected)
