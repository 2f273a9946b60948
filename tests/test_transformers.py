"""patch_model on tiny OPT, Llama, Mistral, Qwen2 and GPT-2 models (RELIABILITY.md items 20 and 24): which modules
are patched, what they compute (against reference.py), validation before any change, summaries, the seed's
hand-patching API, and save_pretrained / from_pretrained round trips."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

transformers = pytest.importorskip("transformers")

import qsparse  # noqa: E402
from qsparse import BFPLinear, LayerConfig, bfp_util, reference  # noqa: E402
from qsparse.integrations import transformers as qt  # noqa: E402

from helpers import reference_effective_weight  # noqa: E402
from hf_models import ARCHS, tiny_model, tokens  # noqa: E402

SEED_ENTRY = dict(sparsity_num_format="bfp", a_num_format="fp", a_mant_bits=16, w_num_format="int", w_mant_bits=4,
                  block_size=16, w_sparsity=True, N=2, M=4, first="s", sparsity_mode="structured", device="cuda",
                  sparsify=True, sparsity_frac=0.5)

SEED_YAML = {
    "fc1": [{"layer_ids": [0, 2], **SEED_ENTRY}],
    "fc2": [{"layer_ids": [1], **dict(SEED_ENTRY, N=1)}, {"layer_ids": [2], **dict(SEED_ENTRY, w_mant_bits=8)}],
}


def snapshot(model):
    """Everything a failed call must leave as it was: module types by name and every tensor of the state."""
    return ({n: type(m) for n, m in model.named_modules()},
            {k: v.clone() for k, v in model.state_dict().items()})


def assert_unchanged(model, snap):
    types, state = snap
    assert {n: type(m) for n, m in model.named_modules()} == types
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:
        assert torch.equal(now[k], state[k]), k


# ---- what gets patched, and what it computes ------------------------------------------------------------------


def test_seed_yaml_patches_the_listed_layers_only():
    model = tiny_model("opt")
    dense = copy.deepcopy(model)
    qsparse.patch_model(model, SEED_YAML)
    patched = {n for n, m in model.named_modules() if isinstance(m, BFPLinear)}
    assert patched == {"model.decoder.layers.0.fc1", "model.decoder.layers.2.fc1", "model.decoder.layers.1.fc2",
                       "model.decoder.layers.2.fc2"}
    dense_modules = dict(dense.named_modules())
    for name, m in model.named_modules():
        if isinstance(m, BFPLinear):
            seed = SEED_YAML[name.rsplit(".", 1)[-1]]
            idx = int(name.split(".")[3])
            entry = next(e for e in seed if idx in e["layer_ids"])
            expected = LayerConfig.from_seed({k: v for k, v in entry.items() if k != "layer_ids"})
            assert m.config == expected
            w0 = dense_modules[name].weight.detach()
            with torch.no_grad():
                assert torch.equal(m.effective_weight(), reference_effective_weight(expected, w0))
        elif isinstance(m, torch.nn.Linear):
            assert torch.equal(m.weight, dense_modules[name].weight)


def test_patched_opt_layer_forward_is_the_reference_composition():
    model = qsparse.patch_model(tiny_model("opt"), SEED_YAML)
    fc1 = model.model.decoder.layers[0].fc1
    x = torch.randn(3, 5, fc1.in_features)
    cfg = fc1.config
    ref = F.linear(reference.fake_quant(x, "fp16", None), reference_effective_weight(cfg, fc1.weight.detach()),
                   fc1.bias)
    with torch.no_grad():
        assert torch.equal(fc1(x), ref)


RECIPE = {"ignore": ["lm_head"],
          "config_groups": {"all": {"targets": ["Linear"], "weight": {"name": "int4", "group_size": 16},
                                    "activation": "fp16", "sparsity": "2:4"}}}


@pytest.mark.parametrize("arch", ARCHS)
def test_recipe_patches_every_decoder_linear(arch):
    model = tiny_model(arch)
    ids = tokens()
    qsparse.patch_model(model, RECIPE)
    _, layers = qt.decoder_layers(model)
    for block in layers:
        for name, m in block.named_modules():
            if name and qt.is_linear_like(m):
                assert isinstance(m, BFPLinear), name
                assert m.mask.view(-1, 4).sum(-1).eq(2).all()
    assert not isinstance(model.lm_head, BFPLinear)
    with torch.no_grad():
        out = model(ids).logits
    assert torch.isfinite(out).all()


def test_gpt2_conv1d_is_transposed_exactly():
    """Weights cast to fp16 through the patched (transposed) modules equal the original Conv1D weights cast by
    hand: the transposition loses nothing and the layout is right."""
    model = tiny_model("gpt2")
    ids = tokens()
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        for m in by_hand.modules():
            if type(m).__name__ == "Conv1D":
                m.weight.copy_(m.weight.half().float())
        expected = by_hand(ids).logits
    qsparse.patch_model(model, {"config_groups": {"w": {"targets": ["re:transformer\\.h\\..*"], "weight": "fp16"}}})
    assert isinstance(model.transformer.h[0].attn.c_attn, BFPLinear)
    assert model.transformer.h[0].attn.c_attn.from_conv1d
    with torch.no_grad():
        assert torch.equal(model(ids).logits, expected)


@pytest.mark.parametrize("arch,layer_type,expected", [
    ("opt", "attn", ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj"]),
    ("llama", "attn", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]),
    ("llama", "mlp", ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]),
    ("llama", "down_proj", ["mlp.down_proj"]),
    ("gpt2", "attn", ["attn.c_attn", "attn.c_proj"]),
    ("gpt2", "mlp.c_proj", ["mlp.c_proj"]),
    ("gpt2", "c_fc", ["mlp.c_fc"]),
])
def test_layer_types(arch, layer_type, expected):
    model = tiny_model(arch)
    plan = qt.resolve(model, {layer_type: [{"layer_ids": [1], "weight": "int8"}]})
    prefix, _ = qt.decoder_layers(model)
    assert [n for n, _, _ in plan.entries] == [f"{prefix}.1.{e}" for e in expected]


def test_layer_ids_all_and_explicit_keys():
    model = tiny_model("llama")
    qsparse.patch_model(model, {"down_proj": [{"layer_ids": "all", "weight": "mxfp4", "sparsity": "1:4"}]})
    for layer in model.model.layers:
        assert layer.mlp.down_proj.config == LayerConfig(weight="mxfp4", sparsity="1:4")
        assert not isinstance(layer.mlp.up_proj, BFPLinear)


def test_recipe_precedence_exact_over_regex_over_class():
    model = tiny_model("llama")
    recipe = {"ignore": ["lm_head"], "config_groups": {
        "base": {"targets": ["Linear"], "weight": "int4"},
        "mlp": {"targets": ["re:.*mlp\\..*"], "weight": "int8"},
        "one": {"targets": ["model.layers.0.mlp.down_proj"], "weight": "mxfp4"},
    }}
    qsparse.patch_model(model, recipe)
    assert model.model.layers[0].mlp.down_proj.config.weight.name == "mxfp4"
    assert model.model.layers[0].mlp.up_proj.config.weight.name == "int8"
    assert model.model.layers[1].self_attn.q_proj.config.weight.name == "int4"


def test_repatching_replaces_the_config():
    model = tiny_model("llama")
    qsparse.patch_model(model, {"up_proj": [{"layer_ids": [0], "weight": "int4", "sparsity": "2:4"}]})
    qsparse.patch_model(model, {"up_proj": [{"layer_ids": [0], "weight": "int8"}]})
    m = model.model.layers[0].mlp.up_proj
    assert m.config == LayerConfig(weight="int8") and m.mask is None
    assert isinstance(m, BFPLinear) and not isinstance(model.model.layers[1].mlp.up_proj, BFPLinear)
    qsparse.unpatch_model(model)
    assert not any(isinstance(x, BFPLinear) for x in model.modules())
    assert getattr(model.config, "quantization_config", None) is None


# ---- validation before any change (item 24) --------------------------------------------------------------------


BAD_CONFIGS = [
    ({"fc3": [{"layer_ids": [0], "weight": "int4"}]}, "no linear module of type 'fc3'.*layer types: "),
    ({"fc1": [{"layer_ids": [0, 3], "weight": "int4"}]}, r"fc1\[0\]\.layer_ids: layer 3 is out of range; .* 3 decoder"),
    ({"fc1": [{"layer_ids": [0], "weight": "int4"}, {"layer_ids": [0], "weight": "int8"}]},
     r"fc1\[1\]: fc1 layers \[0\] overlap\(s\) fc1\[0\]"),
    ({"fc1": [{"layer_ids": [0, 0], "weight": "int4"}]}, "listed twice"),
    ({"attn": [{"layer_ids": [1], "weight": "int4"}], "q_proj": [{"layer_ids": [1], "weight": "int8"}]},
     r"q_proj\[0\]: model.decoder.layers.1.self_attn.q_proj is also configured by attn\[0\]"),
    ({"fc1": [{"layer_ids": [0], **dict(SEED_ENTRY, colour="red")}]}, r"fc1\[0\]: unknown layer config key.*colour"),
    ({"fc1": [{"layer_ids": [0], **dict(SEED_ENTRY, N=5)}]}, r"fc1\[0\]: N=5 is not allowed"),
    ({"fc1": [{"layer_ids": [0], **dict(SEED_ENTRY, w_mant_bits=9)}]}, r"fc1\[0\]: w_mant_bits=9 is not allowed"),
    ({"fc1": [{"layer_ids": [0], "weight": "int9"}]}, r"fc1\[0\]: .*int9"),
    ({"fc1": [{"weight": "int4"}]}, r"fc1\[0\]: missing layer_ids"),
    ({"fc1": [{"layer_ids": [-1], "weight": "int4"}]}, r"fc1\[0\]\.layer_ids=\[-1\] is not allowed"),
    ({"config_groups": {"g": {"targets": ["re:.*nothing.*"], "weight": "int4"}}},
     r"config_groups\.g\.targets: \['re:\.\*nothing\.\*'\] match no linear module"),
    ({"config_groups": {"a": {"targets": ["Linear"], "weight": "int4"}, "b": {"targets": ["Linear"], "weight": "int8"}}},
     r"config_groups\.b: .* is also matched by config_groups\.a"),
    ({"config_groups": {"g": {"targets": ["Linear"], "wieght": "int4"}}}, r"config_groups\.g: unknown key.*wieght"),
    ({"config_groups": {"g": {"targets": ["re:("], "weight": "int4"}}}, "not a valid regular expression"),
    ({"config_groups": {"g": {"weight": "int4"}}}, "missing targets"),
    ({"config_groups": {"g": {"targets": ["lm_head"], "sparsity": "2:4"}}}, "lm_head.weight is tied to"),
]


@pytest.mark.parametrize("config,needle", BAD_CONFIGS, ids=[b[1][:40] for b in BAD_CONFIGS])
def test_invalid_configs_raise_and_leave_the_model_untouched(config, needle):
    model = tiny_model("opt")
    snap = snapshot(model)
    with pytest.raises(ValueError, match=needle):
        qsparse.patch_model(model, config)
    assert_unchanged(model, snap)
    assert getattr(model.config, "quantization_config", None) is None


def test_a_late_error_changes_nothing():
    """The first entries are valid and would prune weights; the last one is out of range: nothing happens."""
    model = tiny_model("opt")
    snap = snapshot(model)
    cfg = {"fc1": [{"layer_ids": [0, 1], "weight": "int4", "sparsity": "2:4"}],
           "fc2": [{"layer_ids": [7], "weight": "int4"}]}
    with pytest.raises(ValueError, match="out of range"):
        qsparse.patch_model(model, cfg)
    assert_unchanged(model, snap)


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump({"hbfp": {"fc1": [{"layer_ids": [0], **dict(SEED_ENTRY, M=3, N=4)}]}}))
    with pytest.raises(ValueError, match=rf"{path}: fc1\[0\]: N=4"):
        qsparse.load_config(str(path))


def test_float64_models_are_refused_before_any_change():
    model = tiny_model("llama").double()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="float64 weights"):
        qsparse.patch_model(model, {"up_proj": [{"layer_ids": [0], "weight": "int4", "sparsity": "2:4"}]})
    assert_unchanged(model, snap)


def test_config_yaml_round_trips(tmp_path):
    for d in (SEED_YAML, RECIPE, {"hbfp": SEED_YAML}):
        cfg = qsparse.load_config(d)
        path = tmp_path / "c.yaml"
        cfg.save(str(path))
        again = qsparse.load_config(str(path))
        assert again.rules == cfg.rules and again.ignore == cfg.ignore
        assert again.to_dict() == cfg.to_dict()


# ---- summary ----------------------------------------------------------------------------------------------------


def test_summary_figures_by_hand():
    model = tiny_model("opt")  # fc1: [64, 32], fc2: [32, 64]
    qsparse.patch_model(model, {"fc1": [{"layer_ids": [0], "weight": {"name": "int4_asym", "group_size": 32},
                                         "sparsity": "2:4"}],
                                "fc2": [{"layer_ids": [0], "weight": "mxfp4"}]})
    s = qsparse.summary(model)
    rows = {r.name: r for r in s.rows}
    fc1, fc2 = rows["model.decoder.layers.0.fc1"], rows["model.decoder.layers.0.fc2"]
    # int4_asym g32 at 2:4: half the elements at 4 bits, fp16 scale + 4-bit zero per 32, 2 index bits per kept one
    assert fc1.bits_per_weight == pytest.approx(0.5 * 4 + (16 + 4) / 32 + 0.5 * 2)
    assert fc1.density == 0.5 and fc1.params == 64 * 32 + 64 and fc1.sparsity == "2:4"
    assert fc2.bits_per_weight == pytest.approx(4 + 8 / 32)  # E2M1 + one E8M0 byte per 32
    dense = rows["model.decoder.layers.1.fc1"]
    assert dense.bits_per_weight == 32 and dense.weight == "-"
    n_linear = sum(r.params for r in s.rows)
    assert s.linear_params == n_linear and s.patched_params == fc1.params + fc2.params
    w_all = sum(r.in_features * r.out_features for r in s.rows)
    expected_all = sum(r.bits_per_weight * r.in_features * r.out_features for r in s.rows) / w_all
    assert s.bits_per_weight == pytest.approx(expected_all)
    assert s.patched_bits_per_weight == pytest.approx((fc1.bits_per_weight + fc2.bits_per_weight) / 2)
    assert s.total_params == sum(p.numel() for p in model.parameters())  # parameters() yields tied ones once
    text = str(s)
    assert "model.decoder.layers.0.fc1" in text and "2 of" in text


# ---- the seed's hand-patching API --------------------------------------------------------------------------------


def test_bfp_util_returns_the_listing_entry(monkeypatch, tmp_path):
    bfp_util.set_config({"hbfp": SEED_YAML})
    try:
        args = bfp_util.get_bfp_args_per_layer(layer_type="fc2", layer_idx=2)
        assert args == {**qsparse.config.SEED_DEFAULTS, **dict(SEED_ENTRY, w_mant_bits=8)}
        layer = BFPLinear(64, 32, **args)
        assert layer.config == LayerConfig.from_seed(dict(SEED_ENTRY, w_mant_bits=8))
        assert bfp_util.get_bfp_args_per_layer("fc2", 0) == qsparse.config.SEED_DEFAULTS  # not listed: dense
        assert BFPLinear(8, 8, **bfp_util.get_bfp_args_per_layer("attn", 0)).config.is_dense
    finally:
        bfp_util.set_config(None)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"fc1": [{"layer_ids": "all", "weight": "int8"}]}))
    monkeypatch.setenv("QSPARSE_CONFIG", str(path))
    assert bfp_util.get_bfp_args_per_layer("fc1", 5) == {"weight": "int8"}
    with pytest.raises(ValueError, match="recipe"):
        bfp_util.set_config(RECIPE)


def test_hand_patched_example_equals_patch_model():
    """examples/hand_patched_opt.py edits an OPT-style block the fork's way; its layers get the configs that
    patch_model gives the same YAML."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "hand_patched_opt.py")
    spec = importlib.util.spec_from_file_location("hand_patched_opt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bfp_util.set_config(mod.LAYER_CONFIG)
    try:
        block = mod.OPTStyleDecoderLayer(embed_dim=32, ffn_dim=64, num_heads=4, layer_idx=1)
    finally:
        bfp_util.set_config(None)
    cfg = yaml.safe_load(mod.LAYER_CONFIG)
    entry = {k: v for k, v in cfg["fc1"][0].items() if k != "layer_ids"}
    assert block.fc1.config == LayerConfig.from_seed(entry)
    assert block.k_proj.config.is_dense
    x = torch.randn(2, 5, 32)
    assert block(x).shape == x.shape


# ---- save_pretrained / from_pretrained (item 20) -----------------------------------------------------------------


def _assert_same_patched_model(a, b):
    ma, mb = dict(a.named_modules()), dict(b.named_modules())
    assert {n: type(m).__name__ for n, m in ma.items()} == {n: type(m).__name__ for n, m in mb.items()}
    for n, m in ma.items():
        if isinstance(m, BFPLinear):
            assert m.config == mb[n].config, n
            assert (m.mask is None) == (mb[n].mask is None)
            if m.mask is not None:
                assert torch.equal(m.mask, mb[n].mask), n
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("arch", ["opt", "llama", "gpt2"])
def test_save_pretrained_from_pretrained_round_trip(arch, tmp_path):
    model = tiny_model(arch)
    ids = tokens()
    recipe = {"ignore": ["lm_head"], "config_groups": {
        "w": {"targets": ["Linear"], "weight": {"name": "int4_asym", "group_size": 16}, "activation": "fp16",
              "sparsity": "2:4"}}}
    qsparse.patch_model(model, recipe)
    # a mask no rule would compute from these weights: the loaded model must keep it, not recompute it
    first = next(m for m in model.modules() if isinstance(m, BFPLinear))
    custom = torch.rand(first.weight.shape, generator=torch.Generator().manual_seed(3)) < 0.3
    first.set_mask(custom)
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    _assert_same_patched_model(model, loaded)
    assert torch.equal(next(m for m in loaded.modules() if isinstance(m, BFPLinear)).mask, custom)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, expected)
    qc = loaded.config.quantization_config
    assert qc.quant_method == "qsparse" and qc.recipe == qsparse.load_config(recipe).to_dict()


def test_from_pretrained_patches_a_dense_checkpoint(tmp_path):
    model = tiny_model("llama")
    ids = tokens()
    model.save_pretrained(tmp_path)
    recipe = {"config_groups": {"mlp": {"targets": ["re:.*mlp\\.(up|gate)_proj"], "weight": "nvfp4",
                                        "sparsity": "2:4"}}}
    from qsparse.integrations.hf_quantizer import QsparseConfig

    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=QsparseConfig(recipe=recipe))
    by_hand = qsparse.patch_model(copy.deepcopy(model), recipe)
    _assert_same_patched_model(by_hand, loaded)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, by_hand(ids).logits)


@pytest.mark.slow
def test_patched_model_compiles_and_matches_eager():
    """Captured with the custom ops' fake kernels (aot_eager: the traced graph run op by op) the logits are bit
    for bit eager's; inductor reorders float arithmetic outside qsparse's ops (RMSNorm, softmax), and an ulp
    there can move an activation across an fp16 rounding boundary, so it is compared with a tolerance."""
    model = qsparse.patch_model(tiny_model("llama"), RECIPE)
    ids = tokens()
    with torch.no_grad():
        eager = model(ids).logits
        torch._dynamo.reset()
        assert torch.equal(torch.compile(model, backend="aot_eager")(ids).logits, eager)
        torch._dynamo.reset()
        compiled = torch.compile(model)(ids).logits
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-2 * eager.abs().max().item())


def test_atomic_save_keeps_the_old_checkpoint_on_failure(tmp_path, monkeypatch):
    model = qsparse.patch_model(tiny_model("opt"), RECIPE)
    target = tmp_path / "ckpt"
    qsparse.save_pretrained(model, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def fail(self, directory, **kw):
        open(os.path.join(directory, "partial"), "w").close()  # a partial write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        qsparse.save_pretrained(model, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left behind


def test_a_failure_while_computing_masks_changes_nothing(monkeypatch):
    """Masks are computed for every module before the first one is swapped: a failure in the third (an out of
    memory error, say) leaves the model as it was."""
    model = tiny_model("opt")
    snap = snapshot(model)
    calls = {"n": 0}
    real = BFPLinear.compute_mask

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")
        return real(self)

    monkeypatch.setattr(BFPLinear, "compute_mask", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        qsparse.patch_model(model, RECIPE)
    assert_unchanged(model, snap)
