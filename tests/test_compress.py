"""qsparse.compress: one-shot recipes over whole models, layer by layer.

References written here: GPTQ's calibration draws (datautils.get_wikitext2: joined text, random.randint offsets);
the sequential pass done the slow, obvious way (full forwards of the model with hooks on the modules being
compressed, group after group, layer after layer) that the block-by-block pipeline must reproduce bit for bit; and
on the real stories260K model the perplexity orderings of the GPTQ and SparseGPT papers.
"""
from __future__ import annotations

import copy
import os
import random

import pytest
import torch

pytest.importorskip("transformers")

import qsparse  # noqa: E402
from qsparse import algorithms as alg  # noqa: E402
from qsparse.eval import perplexity  # noqa: E402
from qsparse.integrations import compress as C  # noqa: E402
from qsparse.nn import BFPLinear  # noqa: E402

from hf_models import tiny_model  # noqa: E402
from shared_data import DATA, needs_data  # noqa: E402



def _windows(n=8, seqlen=16, vocab=128, seed=3):
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))


# ---- recipes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe,match", [
    ({"stages": [{"prune": {}}]}, "unknown method"),
    ({"stages": [{"gptq": {}}]}, "needs weight"),
    ({"stages": [{"gptq": {"weight": "int4", "speed": 1}}]}, "unknown option"),
    ({"stages": [{"wanda": {"sparsity": "2:4", "weight": "int4"}}]}, "unknown option"),  # wanda only prunes
    ({"stages": [{"sparsegpt": {}}]}, "needs sparsity"),
    ({"stages": [{"gptq": {"weight": "int4", "blocksize": 0}}]}, "blocksize"),
    ({"stages": [{"gptq": {"weight": "int4", "percdamp": 0}}]}, "percdamp"),
    ({"stages": [{"gptq": {"weight": "int4", "actorder": "yes"}}]}, "actorder"),
    ({"stages": [{"gptq": {"weight": {"name": "int4", "group_size": 16}, "actorder": True,
                           "static_groups": False}}]}, "static_groups"),
    ({"stages": [{"gptq": {"weight": "int9"}}]}, "int9"),
    ({"stages": []}, "non-empty"),
    ({"stages": [{"gptq": {"weight": "int4"}}], "oops": 1}, "unknown recipe key"),
    ({"stages": [{"gptq": {"weight": "int4", "targets": ["re:["]}}]}, "re:"),
])
def test_recipe_validation(recipe, match):
    with pytest.raises(ValueError, match=match):
        C.load_recipe(recipe)


def test_recipe_round_trips_through_yaml(tmp_path):
    text = """
stages:
  - sparsegpt: {sparsity: "2:4"}
  - gptq: {weight: {name: int4_asym, group_size: 32}, actorder: true}
true_sequential: false
"""
    rec = C.load_recipe(text)
    assert rec.stages[0].method == "sparsegpt" and rec.stages[0].sparsity.keep == 2
    assert dict(rec.stages[1].options)["static_groups"] is True  # act-order with groups keeps consecutive groups
    assert C.load_recipe(rec.to_dict()) == rec
    p = tmp_path / "r.yaml"
    p.write_text(text)
    assert C.load_recipe(str(p)) == rec


# ---- calibration -------------------------------------------------------------------------------------------------


class _CharTokenizer:
    """Characters as token ids: enough to check window draws."""

    def __call__(self, text, return_tensors=None):
        ids = torch.tensor([[ord(c) % 256 for c in text]])
        return type("Enc", (), {"input_ids": ids})()


def test_calibration_windows_are_gptqs_draws():
    rows = [f"row {i} " + "x" * (i % 17) for i in range(300)]
    got = C.calibration_windows(_CharTokenizer(), rows, nsamples=5, seqlen=32, seed=0)
    # datautils.get_wikitext2: trainenc = tokenizer("\n\n".join(traindata['text'])); random.seed(seed);
    # i = random.randint(0, trainenc.input_ids.shape[1] - seqlen - 1); inp = trainenc.input_ids[:, i:i + seqlen]
    ids = _CharTokenizer()("\n\n".join(rows)).input_ids
    random.seed(0)
    exp = []
    for _ in range(5):
        i = random.randint(0, ids.shape[1] - 32 - 1)
        exp.append(ids[0, i:i + 32])
    assert torch.equal(got, torch.stack(exp))
    with pytest.raises(ValueError, match="tokens"):
        C.calibration_windows(_CharTokenizer(), ["short"], nsamples=1, seqlen=32)


# ---- the pipeline against the obvious sequential pass ---------------------------------------------------------------


def _sequential_reference(model, windows, batch_size, groups, fmt):
    """Layer by layer, group by group: full forwards with hooks collect each group's Hessian (one per shared input),
    GPTQ compresses the group, the next group sees the compressed weights."""
    prefix, layers = qsparse.integrations.transformers.decoder_layers(model)
    for layer in layers:
        mods = dict(layer.named_modules())
        for group in groups:
            handles, seen = [], []
            for name in group:
                def fn(m, args, name=name):
                    seen.append((args[0], name))
                handles.append(mods[name].register_forward_pre_hook(fn))
            H = {}
            with torch.no_grad():
                for b in range(0, windows.shape[0], batch_size):
                    seen.clear()
                    model(windows[b:b + batch_size], use_cache=False)
                    firsts = {}
                    for x, name in seen:
                        key = next((k for k, v in firsts.items() if v is x), None)
                        if key is None:
                            firsts[name] = x
                            H.setdefault(name, alg.Hessian(x.shape[-1])).add_batch(x)
                        else:
                            H[name] = H[key]
            for h in handles:
                h.remove()
            for name in group:
                m = mods[name]
                res = alg.gptq(m.weight.detach(), H[name].H, fmt)
                with torch.no_grad():
                    m.weight.copy_(res.weight)
    return model


@pytest.mark.parametrize("arch,groups", [
    ("llama", [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
               ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]),
    ("opt", [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.out_proj"], ["fc1"],
             ["fc2"]]),
])
def test_pipeline_equals_the_sequential_reference(arch, groups):
    model = tiny_model(arch, layers=2)
    ref = _sequential_reference(copy.deepcopy(model), _windows(), 4, groups, "int4_asym")
    report = qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4_asym"}}]}, _windows(), batch_size=4,
                              progress=False)
    assert len(report.modules) == 2 * sum(len(g) for g in groups)
    got = dict(model.named_modules())
    for name, m in ref.named_modules():
        if isinstance(m, torch.nn.Linear) and name != "lm_head" and ".layers." in name:
            new = got[name]
            assert isinstance(new, BFPLinear) and new.weight_qparams is not None, name
            assert torch.equal(new.effective_weight(), m.weight), name
    x = _windows(2, 16, seed=9)
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref(x).logits)


def test_stages_keep_masks_and_formats_and_save_load(tmp_path):
    model = tiny_model("llama", layers=2)
    recipe = {"stages": [{"sparsegpt": {"sparsity": "2:4"}},
                         {"gptq": {"weight": {"name": "int4_asym", "group_size": 16}, "actorder": True}}]}
    qsparse.compress(model, recipe, _windows(), batch_size=4, progress=False)
    layers = [m for n, m in model.named_modules() if isinstance(m, BFPLinear)]
    assert len(layers) == 14
    for m in layers:
        assert m.config.sparsity.keep == 2 and m.config.mask_mode == "fixed"
        assert m.config.weight.name == "int4_asym" and m.weight_qparams is not None
        assert (m.weight[~m.mask] == 0).all() and (m.mask.reshape(m.out_features, -1, 4).sum(-1) == 2).all()
    x = _windows(2, 16, seed=9)
    with torch.no_grad():
        before = model(x).logits
    model.save_pretrained(tmp_path)
    import transformers

    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, before)
    lm = dict(loaded.named_modules())
    for name, m in model.named_modules():
        if isinstance(m, BFPLinear):
            assert torch.equal(lm[name].weight_qparams, m.weight_qparams) and torch.equal(lm[name].mask, m.mask)
    comp = loaded.config.quantization_config.compression
    assert comp == C.load_recipe(recipe).to_dict() and [next(iter(st)) for st in comp["stages"]] == ["sparsegpt",
                                                                                                   "gptq"]


def test_wanda_and_magnitude_stages():
    model = tiny_model("opt", layers=2)
    qsparse.compress(model, [{"wanda": {"sparsity": 0.5, "targets": ["re:.*fc1"]}},
                             {"magnitude": {"sparsity": "1:4", "targets": ["re:.*fc2"]}}], _windows(),
                     progress=False)
    mods = dict(model.named_modules())
    fc1, fc2 = mods["model.decoder.layers.0.fc1"], mods["model.decoder.layers.1.fc2"]
    assert abs(float((~fc1.mask).float().mean()) - 0.5) < 0.02
    assert (fc2.mask.reshape(fc2.out_features, -1, 4).sum(-1) == 1).all()
    assert not isinstance(mods["model.decoder.layers.0.self_attn.q_proj"], BFPLinear)


def test_a_failed_compress_leaves_the_model_as_it_was(monkeypatch):
    model = tiny_model("llama", layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = {n: type(m) for n, m in model.named_modules()}
    calls = {"n": 0}
    real = alg.gptq

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # midway through the second layer
            raise RuntimeError("interrupted")
        return real(*a, **k)

    monkeypatch.setattr(alg, "gptq", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4"}}]}, _windows(), progress=False)
    assert {n: type(m) for n, m in model.named_modules()} == types
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_bad_calls_change_nothing():
    model = tiny_model("opt", layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="calibration"):
        qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4"}}]}, None)
    with pytest.raises(ValueError, match="match no linear"):
        qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4", "targets": ["re:nothing"]}}]}, _windows())
    with pytest.raises(ValueError, match="int64"):
        qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4"}}]}, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch_size"):
        qsparse.compress(model, {"stages": [{"gptq": {"weight": "int4"}}]}, _windows(), batch_size=0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


# ---- the real model ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stories():
    from qsparse.data import read_rows
    from qsparse.models import load_llama2c

    model, tok = load_llama2c(os.path.join(DATA, "stories260K", "stories260K.bin"),
                              os.path.join(DATA, "stories260K", "tok512.bin"))
    rows = read_rows(os.path.join(DATA, "wikitext2", "test_rows.jsonl"))
    cut = int(len(rows) * 0.8)  # calibrate on the first 80% of the rows, evaluate on rows after them
    return model, tok, rows[:cut], rows[cut: cut + (len(rows) - cut) // 4]


def _ppl(model, tok, rows):
    return perplexity(model, tok, rows, seqlen=256, batch_size=16, progress=False).ppl


def _rtn(model, fmt):
    m = copy.deepcopy(model)
    _, layers = qsparse.integrations.transformers.decoder_layers(m)
    with torch.no_grad():
        for lin in (x for x in layers.modules() if isinstance(x, torch.nn.Linear)):
            lin.weight.copy_(qsparse.fake_quant(lin.weight, fmt))
    return m


def _masked(model, mask_fn):
    m = copy.deepcopy(model)
    _, layers = qsparse.integrations.transformers.decoder_layers(m)
    with torch.no_grad():
        for lin in (x for x in layers.modules() if isinstance(x, torch.nn.Linear)):
            lin.weight.mul_(mask_fn(lin.weight))
    return m


@needs_data
def test_stories260k_perplexity_orderings(stories, record_property):
    model, tok, calib_rows, eval_rows = stories
    cal = C.calibration_windows(tok, calib_rows, nsamples=32, seqlen=256, seed=0)
    ppl = {"dense": _ppl(model, tok, eval_rows)}
    fmt = "int4_asym"  # per channel, as the GPTQ paper's tables
    ppl["rtn"] = _ppl(_rtn(model, fmt), tok, eval_rows)
    for name, recipe in {
        # act-order: without it GPTQ int4 is level with RTN on this 260K-parameter model (138.8 vs 138.3 on all 540
        # held-out windows); with it 136.1 (32 windows) and 135.9 (128 windows)
        "gptq": [{"gptq": {"weight": fmt, "actorder": True}}],
        "sparsegpt": [{"sparsegpt": {"sparsity": "2:4"}}],
        "wanda": [{"wanda": {"sparsity": "2:4"}}],
    }.items():
        m = copy.deepcopy(model)
        qsparse.compress(m, recipe, cal, batch_size=16, progress=False)
        ppl[name] = _ppl(m, tok, eval_rows)
    ppl["magnitude"] = _ppl(_masked(model, lambda w: qsparse.nm_mask(w.abs(), 2, 4)), tok, eval_rows)
    for k, v in ppl.items():
        record_property(k, v)
    print("stories260K perplexities:", {k: round(v, 3) for k, v in ppl.items()})
    assert ppl["gptq"] < ppl["rtn"]
    assert ppl["sparsegpt"] < ppl["wanda"] < ppl["magnitude"]


def test_gptq_in_the_rotated_basis():
    model = tiny_model("llama", layers=2)
    qsparse.patch_model(model, {"config_groups": {"all": {
        "targets": ["re:.*layers\\.\\d+\\..*_proj$"], "weight": "mxfp4", "transform": "hadamard",
        "transform_group": 32}}})
    ref = copy.deepcopy(model)
    qsparse.compress(model, [{"gptq": {"weight": "mxfp4"}}], _windows(), batch_size=4, progress=False)
    for name, m in model.named_modules():
        if isinstance(m, BFPLinear):
            assert m.config.transform == "hadamard" and m.weight_qparams is not None, name
            w = m.effective_weight()  # rotated, then quantized with the records GPTQ fitted
            rtn = dict(ref.named_modules())[name].effective_weight()
            assert torch.equal(qsparse.fake_quant(w, "mxfp4"), w)  # on the MXFP4 grid of its own blocks
            assert not torch.equal(w, rtn)
    x = _windows(2, 16, seed=9)
    with torch.no_grad():
        assert torch.isfinite(model(x).logits).all()
    with pytest.raises(ValueError, match="transform_group"):
        qsparse.compress(tiny_model("llama", layers=1), [{"gptq": {"weight": "int4", "transform": "hadamard",
                                                                    "transform_group": 128}}], _windows())
