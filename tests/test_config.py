"""LayerConfig and SparsityConfig: validation and the config -> YAML -> config round trip (RELIABILITY.md 20)."""
import pytest
import yaml

from qsparse import Format, LayerConfig, SparsityConfig
from qsparse.config import SEED_DEFAULTS

EXAMPLES = [
    LayerConfig(),
    LayerConfig(weight="int4_asym", activation="fp16", sparsity="2:4"),
    LayerConfig(weight=Format("bfp8", group_size=16, rounding="stochastic"), sparsity=0.5, mask_mode="dynamic"),
    LayerConfig(weight=Format("int8", group_size="tensor"), activation=Format("fp8_e5m2", saturate=False),
                sparsity=SparsityConfig(fraction=0.3, per_row=True), sparsify_first=False),
    LayerConfig.from_seed(dict(w_num_format="int", w_mant_bits=4, block_size=32, sparsify=True, w_sparsity=True,
                               sparsity_mode="structured", N=1, M=4, a_mant_bits=16)),
]


@pytest.mark.parametrize("cfg", EXAMPLES, ids=str)
def test_yaml_round_trip(cfg):
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    back = LayerConfig.from_dict(yaml.safe_load(text))
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_sparsity_spellings_agree():
    assert SparsityConfig.parse("2:4") == SparsityConfig.parse((2, 4)) == SparsityConfig(keep=2, group=4)
    assert SparsityConfig.parse(0.5) == SparsityConfig(fraction=0.5)
    assert SparsityConfig.parse({"keep": 1, "group": 4}) == SparsityConfig(keep=1, group=4)


@pytest.mark.parametrize("spec", ["2-4", "a:b", (1, 2, 3), 1.5, -0.1, "5:4", (0, 0), {"keep": 2}, {"n": 2}])
def test_bad_sparsity(spec):
    with pytest.raises(ValueError, match="sparsity"):
        SparsityConfig.parse(spec)


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="colour"):
        LayerConfig.from_dict({"weight": None, "colour": "red"})
    with pytest.raises(ValueError, match="flavour"):
        LayerConfig.from_seed({"flavour": 1})


def test_future_versions_are_refused():
    with pytest.raises(ValueError, match="version"):
        LayerConfig.from_dict({"version": 99})


def test_seed_defaults_match_the_fork():
    # bfp_util.unpack_bfp_args of the HBFP-sparsity fork, except rounding_mode (qsparse rounds to nearest even
    # unless told otherwise; the fork's default is 'stoc').
    assert SEED_DEFAULTS == {
        "sparsity_num_format": "fp", "a_num_format": "fp", "a_mant_bits": 32, "w_num_format": "fp",
        "w_mant_bits": 32, "rounding_mode": "determ", "epsilon": 1e-8, "block_size": 0, "in_sparsity": False,
        "w_sparsity": False, "grad_sparsity": False, "N": 0, "M": 0, "first": "s",
        "sparsity_mode": "unstructured", "sparsity_frac": 0.0, "sparsify": False, "device": "cpu",
    }
    assert LayerConfig.from_seed({}).is_dense
