"""BFPLinear: forward against a pure-torch composition of the reference oracles, the seed's keys, masks through
training (RELIABILITY.md item 19), round trips (item 20), caching and conversions."""
import copy

import pytest
import torch
import torch.nn.functional as F

import qsparse
from qsparse import BFPLinear, Format, LayerConfig, reference
from helpers import reference_effective_weight

SEED_FC = dict(sparsity_num_format="bfp", a_num_format="fp", a_mant_bits=16, w_num_format="int", w_mant_bits=4,
               block_size=32, w_sparsity=True, N=2, M=4, first="s", sparsity_frac=0.5,
               sparsity_mode="structured", device="cuda", sparsify=True)


def _reference_forward(layer: BFPLinear, x: torch.Tensor) -> torch.Tensor:
    """The layer's forward written with reference.py only (independent of the native kernels)."""
    cfg = layer.config
    w = reference_effective_weight(cfg, layer.weight.detach())
    if cfg.activation is not None:
        x = reference.fake_quant(x, cfg.activation.name, cfg.activation.group_size, saturate=cfg.activation.saturate)
    return F.linear(x, w, layer.bias)


CONFIGS = [
    dict(SEED_FC),
    dict(SEED_FC, N=1, M=4, first="q"),
    dict(SEED_FC, sparsity_mode="unstructured", sparsity_frac=0.7),
    dict(SEED_FC, w_num_format="bfp", w_mant_bits=7, a_mant_bits=8),
    dict(weight="int4", activation="fp8_e4m3", sparsity="1:4"),
    dict(weight=Format("int8_full", group_size="tensor")),
    dict(activation=Format("bfp6", group_size=16)),
    dict(sparsity=0.5),
    dict(sparsity=dict(fraction=0.4, per_row=True), weight="int3_asym", sparsify_first=False),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: str(LayerConfig.from_kwargs(**kw)))
def test_forward_equals_the_reference_composition(kw):
    torch.manual_seed(0)
    layer = BFPLinear.from_linear(torch.nn.Linear(96, 24), **kw)
    x = torch.randn(5, 7, 96)
    with torch.no_grad():
        assert torch.equal(layer(x), _reference_forward(layer, x))


def test_seed_defaults_are_a_dense_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    dense = BFPLinear.from_linear(copy.deepcopy(lin), sparsity_num_format="fp", sparsify=False, a_num_format="fp",
                                  a_mant_bits=32, w_num_format="fp", w_mant_bits=32)
    assert dense.config.is_dense and dense.mask is None
    x = torch.randn(3, 16)
    assert torch.equal(dense(x), lin(x))


def test_seed_translation_by_hand():
    cfg = BFPLinear(64, 32, **SEED_FC).config
    assert cfg.weight == Format("int4_asym", group_size=32)
    assert cfg.activation == Format("fp16")
    assert (cfg.sparsity.keep, cfg.sparsity.group) == (2, 4)
    assert cfg.sparsify_first and cfg.mask_mode == "fixed"
    cfg = LayerConfig.from_seed(dict(SEED_FC, w_num_format="bfp", w_mant_bits=7, a_mant_bits=8, rounding_mode="stoc"))
    assert cfg.weight == Format("bfp8", group_size=32, rounding="stochastic")
    assert cfg.activation == Format("fp8_e5m2", saturate=False)
    cfg = LayerConfig.from_seed(dict(SEED_FC, a_num_format="int", a_mant_bits=8, sparsity_mode="unstructured"))
    assert cfg.activation == Format("int8_asym", group_size=32)
    assert cfg.sparsity.fraction == 0.5 and not cfg.sparsity.per_row


def test_seed_device_key_is_not_a_placement():
    layer = BFPLinear(8, 8, **SEED_FC)  # device: cuda in the seed YAML, on a machine that may have no GPU
    assert layer.weight.device.type == "cpu"


BAD = [
    (dict(SEED_FC, bogus=1), "bogus"),
    (dict(SEED_FC, w_mant_bits=9), "w_mant_bits"),
    (dict(SEED_FC, a_mant_bits=12), "a_mant_bits"),
    (dict(SEED_FC, N=5), "N"),
    (dict(SEED_FC, M=0), "M"),
    (dict(SEED_FC, first="x"), "first"),
    (dict(SEED_FC, sparsity_mode="blocky"), "sparsity_mode"),
    (dict(SEED_FC, w_num_format="mx"), "w_num_format"),
    (dict(SEED_FC, block_size=0), "block_size"),
    (dict(SEED_FC, w_sparsity="yes"), "w_sparsity"),
    (dict(SEED_FC, in_sparsity=True), "in_sparsity"),
    (dict(SEED_FC, epsilon=1e-6), "epsilon"),
    (dict(SEED_FC, rounding_mode="up"), "rounding_mode"),
    (dict(SEED_FC, sparsity_mode="unstructured", sparsity_frac=0.0), "sparsity_frac"),
    (dict(SEED_FC, device="tpu"), "device"),
    (dict(SEED_FC, mask_mode="sometimes"), "mask_mode"),
    (dict(weight="int4", N=2), "mixing"),
    (dict(weight="int44"), "int44"),
    (dict(sparsity="5:4"), "sparsity.keep"),
    (dict(sparsity=1.5), "sparsity.fraction"),
    (dict(weight=Format("int4"), sparsify_first="yes"), "sparsify_first"),
]


@pytest.mark.parametrize("kw,needle", BAD, ids=[b[1] for b in BAD])
def test_invalid_keys_and_values_name_the_key(kw, needle):
    with pytest.raises(ValueError, match=needle):
        BFPLinear(16, 8, **kw)


def test_failed_from_linear_leaves_the_linear_untouched():
    lin = torch.nn.Linear(16, 8)
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    with pytest.raises(ValueError):
        BFPLinear.from_linear(lin, sparsity="2:4", weight="int99")
    for k, v in lin.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("kw", [dict(sparsity="2:4", weight="int4_asym"), dict(sparsity="1:4"),
                                dict(sparsity=0.6, weight=Format("bfp6", group_size=8), activation="fp16"),
                                dict(SEED_FC)])
def test_masks_survive_adamw(kw):
    """RELIABILITY 19: 50 AdamW steps with weight decay, clipping and zero_grad(set_to_none=True)."""
    torch.manual_seed(0)
    layer = BFPLinear.from_linear(torch.nn.Linear(64, 32), **kw)
    mask0 = layer.mask.clone()
    w0 = layer.weight.detach().clone()
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=0.1)
    x, target = torch.randn(16, 64), torch.randn(16, 32)
    for _ in range(50):
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(layer.parameters(), 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert torch.equal(layer.mask, mask0)
    assert torch.all(layer.weight[~layer.mask] == 0)
    moved = layer.weight.detach()[layer.mask] != w0[layer.mask]
    assert moved.float().mean() > 0.9


def test_dynamic_masks_follow_the_weight():
    torch.manual_seed(0)
    layer = BFPLinear.from_linear(torch.nn.Linear(32, 8), sparsity="2:4", mask_mode="dynamic")
    dense = layer.weight.detach().clone()
    layer(torch.randn(2, 32))
    assert torch.equal(layer.weight, dense)  # the fork's behaviour: the dense weight is kept
    with torch.no_grad():
        layer.weight.mul_(-1).add_(torch.randn_like(dense))
    layer(torch.randn(2, 32))
    assert torch.equal(layer.mask, reference.nm_mask(layer.weight.detach().abs(), 2, 4))


@pytest.mark.parametrize("kw", [dict(SEED_FC), dict(sparsity=0.5, weight="bfp8"), dict(weight="int4"), dict()])
def test_state_dict_round_trip(kw):
    """RELIABILITY 20 for the module: state_dict -> fresh module -> load_state_dict(strict=True)."""
    torch.manual_seed(0)
    a = BFPLinear.from_linear(torch.nn.Linear(64, 16), **kw)
    x = torch.randn(4, 64)
    sd = a.state_dict()
    if a.mask is not None:
        assert "mask" in sd and sd["mask"].dtype == torch.bool
    b = BFPLinear(64, 16, **kw)
    b.load_state_dict(sd, strict=True)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_loading_dense_weights_recomputes_the_mask_at_the_next_forward():
    torch.manual_seed(0)
    dense = torch.nn.Linear(32, 8)
    layer = BFPLinear(32, 8, sparsity="2:4")
    missing, unexpected = layer.load_state_dict(dense.state_dict(), strict=False)
    assert missing == ["mask"] and not unexpected
    layer(torch.randn(1, 32))
    assert torch.equal(layer.mask, reference.nm_mask(dense.weight.detach().abs(), 2, 4))


def test_eval_cache_is_invalidated_by_weight_changes():
    torch.manual_seed(0)
    layer = BFPLinear.from_linear(torch.nn.Linear(32, 8), weight="int4").eval()
    x = torch.randn(2, 32)
    with torch.no_grad():
        y0 = layer(x)
        assert layer._cache is not None
        layer.weight.mul_(2)
        y1 = layer(x)
    assert not torch.equal(y0, y1)
    with torch.no_grad():
        assert torch.equal(y1, _reference_forward(layer, x))


def test_from_linear_shares_parameters_and_to_linear_materializes():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 8)
    layer = BFPLinear.from_linear(lin, weight="int4", sparsity="2:4")
    assert layer.weight is lin.weight and layer.bias is lin.bias
    x = torch.randn(3, 32)
    plain = layer.to_linear()
    with torch.no_grad():
        assert torch.equal(plain(x), layer(x))  # no activation format: the materialized layer is exact
    stored = layer.to_linear(materialize=False)
    assert torch.equal(stored.weight, layer.weight)


def test_bf16_layer():
    torch.manual_seed(0)
    layer = BFPLinear.from_linear(torch.nn.Linear(64, 16).to(torch.bfloat16), **SEED_FC)
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(x), _reference_forward(layer, x))


def test_float64_layer_with_a_format_fails_clearly():
    layer = BFPLinear.from_linear(torch.nn.Linear(8, 4).double(), weight="int4")
    with pytest.raises(TypeError, match="float64"):
        layer(torch.randn(2, 8, dtype=torch.float64))


# ---- Hadamard rotation -------------------------------------------------------------------------------------------


def test_hadamard_transform_layer_equals_its_definition():
    import torch.nn.functional as F

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 24)
    x = torch.randn(3, 5, 64)
    plain = BFPLinear.from_linear(lin, transform="hadamard", transform_group=32)
    # no quantization: the rotations cancel (H is orthonormal), up to float32 rounding
    torch.testing.assert_close(plain(x), lin(x), rtol=1e-5, atol=1e-5)
    q = BFPLinear.from_linear(lin, weight="mxfp4", activation="mxfp4", transform="hadamard", transform_group=32)
    xr = qsparse.hadamard(x, 32)
    wr = qsparse.hadamard(lin.weight.detach(), 32)
    exp = F.linear(qsparse.fake_quant(xr, "mxfp4"), qsparse.fake_quant(wr, "mxfp4"), lin.bias)
    assert torch.equal(q(x), exp)
    # the rotation changes what quantization sees: not the same as quantizing unrotated
    unrot = BFPLinear.from_linear(lin, weight="mxfp4", activation="mxfp4")
    assert not torch.equal(unrot(x), q(x))
    y = q(x.requires_grad_())
    y.sum().backward()  # straight through the quantizers, exact through the rotations
    # d(sum y)/dx = (1 Wq) R^T = hadamard(1 Wq): one rotation (R is symmetric)
    torch.testing.assert_close(x.grad, qsparse.hadamard(torch.ones(3, 5, 24) @ qsparse.fake_quant(wr, "mxfp4"), 32),
                               rtol=1e-5, atol=1e-5)
    lin2 = q.to_linear()
    torch.testing.assert_close(lin2.weight, qsparse.hadamard(qsparse.fake_quant(wr, "mxfp4"), 32), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(transform="fourier"), "transform"),
    (dict(transform="hadamard", transform_group=48), "power of two"),
    (dict(transform="hadamard", transform_group=0), "power of two"),
    (dict(transform="hadamard", sparsity="2:4"), "sparsity"),
    (dict(transform="hadamard", transform_group=128), "does not divide"),
])
def test_transform_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        BFPLinear(64, 8, **kw)
