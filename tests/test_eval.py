"""Perplexity under the GPTQ protocol against a straightforward computation written here (the same windows,
float64 log-softmax), and C4's window draws against a transcription of the reference's loop."""
import os
import random

import pytest
import torch

pytest.importorskip("transformers")

from qsparse.data import read_rows, rows_of  # noqa: E402
from qsparse.eval import perplexity  # noqa: E402
from qsparse.eval.perplexity import c4_windows, model_seqlen  # noqa: E402

from shared_data import DATA, direct_ppl, needs_data  # noqa: E402


@pytest.fixture(scope="module")
def stories():
    from qsparse.models import load_llama2c

    return load_llama2c(os.path.join(DATA, "stories260K", "stories260K.bin"),
                        os.path.join(DATA, "stories260K", "tok512.bin"))


@needs_data
def test_wikitext_perplexity_equals_a_direct_computation(stories):
    model, tok = stories
    rows = read_rows(os.path.join(DATA, "wikitext2", "test_rows.jsonl"))[:300]
    seqlen = 256
    ids = tok("\n\n".join(rows), return_tensors="pt").input_ids[0]
    n = ids.numel() // seqlen
    expected = direct_ppl(model, ids, seqlen, n)
    got = perplexity(model, tok, rows, seqlen=seqlen, batch_size=7, progress=False)
    assert got.windows == n and got.seqlen == seqlen and got.tokens == n * seqlen
    assert got.ppl == pytest.approx(expected, rel=1e-6)
    # the same from the token ids
    assert perplexity(model, tok, ids, seqlen=seqlen, progress=False).ppl == pytest.approx(expected, rel=1e-6)


@needs_data
def test_text_sources(tmp_path):
    rows = read_rows(os.path.join(DATA, "wikitext2", "test_rows.jsonl"))
    assert len(rows) == 4358
    with open(os.path.join(DATA, "wikitext2", "test.txt"), encoding="utf-8") as f:
        assert "\n\n".join(rows) == f.read()  # the data README's definition of test.txt
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_rows(str(bad))
    with pytest.raises(FileNotFoundError, match="neither a file nor a named dataset"):
        rows_of("no/such/file.txt")


class CharTokenizer:
    """One token per character (BOS 0), enough to check which windows are drawn."""

    def __call__(self, text, return_tensors=None):
        class Out:
            pass

        out = Out()
        out.input_ids = torch.tensor([[0] + [ord(c) % 97 + 1 for c in text]])
        return out


def test_c4_windows_are_the_reference_draws():
    rows = ["x" * k + "".join(chr(97 + (i * 7 + j) % 26) for j in range(40)) for i, k in
            enumerate([3, 50, 0, 80, 10, 120, 5, 64])]
    tok, seqlen = CharTokenizer(), 48
    # the reference's loop (IST-DASLab/gptq datautils.get_c4, validation part), with the global random module
    random.seed(0)
    expected = []
    for _ in range(20):
        while True:
            i = random.randint(0, len(rows) - 1)
            tmp = tok(rows[i], return_tensors="pt")
            if tmp.input_ids.shape[1] >= seqlen:
                break
        i = random.randint(0, tmp.input_ids.shape[1] - seqlen - 1)
        expected.append(tmp.input_ids[:, i:i + seqlen])
    assert torch.equal(c4_windows(tok, rows, seqlen, n=20, seed=0), torch.cat(expected))
    with pytest.raises(ValueError, match="too few documents"):
        c4_windows(tok, ["short"], seqlen, n=1)


def test_seqlen_is_capped_and_checked():
    class M:
        class config:
            max_position_embeddings = 512

    assert model_seqlen(M()) == 512 and model_seqlen(M(), 128) == 128
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model_seqlen(M(), 1024)
    with pytest.raises(ValueError, match="seqlen=1"):
        model_seqlen(M(), 1)


def test_max_windows_takes_the_first_windows():
    from hf_models import tiny_model

    model = tiny_model("llama")
    ids = torch.randint(0, 128, (200,), generator=torch.Generator().manual_seed(3))
    got = perplexity(model, None, ids, seqlen=32, max_windows=2, progress=False)
    assert got.windows == 2 and got.ppl == pytest.approx(direct_ppl(model, ids, 32, 2), rel=1e-6)
    assert perplexity(model, None, ids, seqlen=32, progress=False).windows == 6  # floor(200 / 32)
    with pytest.raises(ValueError, match="max_windows=0"):
        perplexity(model, None, ids, seqlen=32, max_windows=0)
