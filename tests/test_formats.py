"""The format table and names (RELIABILITY.md items 1 and 2).

Item 1: every row's constants equal hand-typed spec constants (tests/helpers.py, FORMATS.md sections 1-3); names,
aliases and the Format options are validated and round-trip through dicts and YAML.
Item 2: every code of every format with element codes decodes to the value computed here from its bit fields, and
encodes back to itself.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import yaml

import qsparse
from qsparse import Format, formats, reference
from helpers import (ALL_FORMATS, CODE_FORMATS, ELEMENT_FORMATS, ELEMENT_SPEC, GROUP_FORMATS, INT_ASYM_RANGE,
                     INT_FULL_RANGE, INT_SYM_RANGE, MINIFLOAT_MAX, all_16bit, assert_same_bits, decode_minifloat,
                     info, saturate_options, spec_family)

# ---- item 1: registry constants -------------------------------------------------------------------------------------

# The formats this version ships (a subset check: new rows are allowed, these must stay).
EXPECTED_NAMES = (
    [f"int{b}{s}" for b in range(2, 9) for s in ("", "_full", "_asym")]
    + [f"bfp{w}" for w in range(2, 17)]
    + ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"]
    + ["fp3_e2m0", "fp4_e2m1", "fp4_e3m0", "fp5_e2m2", "fp5_e3m1", "fp6_e2m3", "fp6_e3m2", "fp7_e4m2", "fp8_e3m4"]
)


def test_table_contains_the_shipped_formats():
    missing = sorted(set(EXPECTED_NAMES) - set(ALL_FORMATS))
    assert not missing, f"formats missing from the table: {missing}"
    assert len(set(ALL_FORMATS)) == len(ALL_FORMATS), "duplicate names in the table"
    assert formats.names() == ALL_FORMATS


def test_ids_are_row_order():
    assert [f.id for f in formats.table()] == list(range(len(ALL_FORMATS)))


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_row_has_spec_constants(name):
    spec_family(name)  # fails with a clear message for a row nobody typed constants for


@pytest.mark.parametrize("name", [n for n in ALL_FORMATS if spec_family(n)[0].startswith("int")])
def test_int_row_constants(name):
    fam, b = spec_family(name)
    f = info(name)
    lo, hi = {"int_sym": INT_SYM_RANGE, "int_full": INT_FULL_RANGE, "int_asym": INT_ASYM_RANGE}[fam][b]
    assert f.family == fam
    assert f.bits == b
    assert (f.qmin, f.qmax) == (lo, hi)
    assert f.mbits == b - 1
    assert f.scale_kind == "float"
    assert f.default_group is None  # per row (per output channel) by default
    assert f.max_normal == hi and f.min_normal == 1.0
    assert not f.elementwise and not f.has_codes and not f.has_inf and not f.has_nan
    assert f.ebits == 0 and f.bias == 0


def test_int_ranges_spot_values():
    # the brief's anchors, read straight from the table
    assert (info("int4").qmin, info("int4").qmax) == (-7, 7)
    assert (info("int4_full").qmin, info("int4_full").qmax) == (-8, 7)
    assert (info("int4_asym").qmin, info("int4_asym").qmax) == (0, 15)
    assert (info("int8").qmin, info("int8").qmax) == (-127, 127)
    assert (info("int8_asym").qmin, info("int8_asym").qmax) == (0, 255)


@pytest.mark.parametrize("name", [n for n in ALL_FORMATS if spec_family(n)[0] == "bfp"])
def test_bfp_row_constants(name):
    _, w = spec_family(name)
    f = info(name)
    assert f.family == "bfp"
    assert f.bits == w
    assert f.mbits == w - 1  # magnitude bits; the sign is extra
    assert f.default_group == 32  # HBFP's block
    assert f.scale_kind == "shared_exp"
    assert (f.qmin, f.qmax) == (-(2 ** (w - 1) - 1), 2 ** (w - 1) - 1)
    assert not f.elementwise and not f.has_codes


def test_bfp_spot_values():
    assert (info("bfp8").mbits, info("bfp8").qmax) == (7, 127)
    assert (info("bfp4").mbits, info("bfp4").qmax) == (3, 7)
    assert (info("bfp16").mbits, info("bfp16").qmax) == (15, 32767)


@pytest.mark.parametrize("name", [n for n in ALL_FORMATS if spec_family(n)[0] == "float"])
def test_float_row_constants(name):
    s = ELEMENT_SPEC[name]
    f = info(name)
    assert f.family == "float"
    assert (f.bits, f.ebits, f.mbits, f.bias, f.emin, f.emax) == (s["bits"], s["ebits"], s["mbits"], s["bias"],
                                                                 s["emin"], s["emax"])
    assert f.max_normal == s["max"]
    assert f.min_normal == s["min_normal"]
    assert f.min_subnormal == s["min_subnormal"]
    assert (f.has_inf, f.has_nan, f.saturates, f.has_codes) == (s["has_inf"], s["has_nan"], s["saturates"],
                                                                s["has_codes"])
    assert f.has_subnormals
    assert f.scale_kind == "none" and f.elementwise and f.default_group is None


@pytest.mark.parametrize("name", [n for n in ALL_FORMATS if spec_family(n)[0] == "float"])
def test_reference_float_constants(name):
    # the oracle derives its constants from the name: they must equal the spec too
    s = ELEMENT_SPEC[name]
    p = reference.float_params(name)
    assert (p["ebits"], p["mbits"], p["bias"], p["emin"], p["emax"]) == (s["ebits"], s["mbits"], s["bias"],
                                                                          s["emin"], s["emax"])
    assert p["max"] == s["max"]
    assert p["has_inf"] == s["has_inf"] and p["saturates"] == s["saturates"]


@pytest.mark.parametrize("name", sorted(MINIFLOAT_MAX))
def test_minifloat_max_as_typed_in_formats_md(name):
    assert ELEMENT_SPEC[name]["max"] == MINIFLOAT_MAX[name]
    assert info(name).max_normal == MINIFLOAT_MAX[name]
    assert reference.float_params(name)["max"] == MINIFLOAT_MAX[name]


@pytest.mark.parametrize("name", [n for n in ELEMENT_FORMATS if not (info(n).has_inf or info(n).has_nan)])
def test_finite_grids_refuse_saturate_false(name):
    with pytest.raises(ValueError, match="saturate=False"):
        Format(name, saturate=False)
    assert Format(name, saturate=True).saturate is True


def test_float_spot_values():
    # literal anchors (FORMATS.md section 3 and the IEEE / OCP documents)
    assert info("fp8_e4m3").max_normal == 448.0 and info("fp8_e4m3").bias == 7
    assert info("fp8_e4m3").min_normal == 0.015625 and info("fp8_e4m3").min_subnormal == 0.001953125
    assert info("fp8_e5m2").max_normal == 57344.0 and info("fp8_e5m2").min_subnormal == 1.52587890625e-05
    assert info("fp16").max_normal == 65504.0 and info("fp16").min_subnormal == 5.960464477539063e-08
    assert info("bf16").max_normal == 3.3895313892515355e38 and info("bf16").min_normal == 1.1754943508222875e-38
    assert info("bf16").min_subnormal == 9.183549615799121e-41


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_parse_family_matches_reference(name):
    # the table, the test's naming rules and the reference agree on every row's family and width
    fam, b = spec_family(name)
    assert reference.parse_name(name) == (fam, b)
    assert info(name).family == fam and info(name).bits == b


# ---- item 1: names and aliases --------------------------------------------------------------------------------------

ALIASES = {
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8_e4m3fn": "fp8_e4m3",
    "fp8_e4m3fn": "fp8_e4m3",
    "float8_e4m3": "fp8_e4m3",
    "e4m3": "fp8_e4m3",
    "e5m2": "fp8_e5m2",
    "float8_e5m2": "fp8_e5m2",
    "int4_sym": "int4",
    "int4_symmetric": "int4",
    "int4_restricted": "int4",
    "int8_sym": "int8",
    "int4_gptq": "int4_full",
    "int4_full_range": "int4_full",
    "int4_asymmetric": "int4_asym",
    "int3_affine": "int3_asym",
    "uint4": "int4_asym",
    "uint8": "int8_asym",
    "hbfp8": "bfp8",
    "hbfp4": "bfp4",
    "hbfp16": "bfp16",
    "e2m1": "fp4_e2m1",
    "fp4_e2m1fn": "fp4_e2m1",
    "float4_e2m1fn": "fp4_e2m1",
    "e3m2": "fp6_e3m2",
    "float6_e2m3fn": "fp6_e2m3",
    "E2M2": "fp5_e2m2",
}


@pytest.mark.parametrize("alias,canonical", sorted(ALIASES.items()))
def test_aliases(alias, canonical):
    assert formats.parse(alias) == canonical
    assert Format(alias).name == canonical
    assert formats.get(alias).name == canonical


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_canonical_names_parse_to_themselves(name):
    assert formats.parse(name) == name
    assert formats.parse(name.upper()) == name
    assert formats.parse(name.replace("_", "-")) == name
    assert formats.parse("  " + name.replace("_", " ").title() + " ") == name
    assert formats.get(name) is formats.get(info(name))


@pytest.mark.parametrize("name", [n for n in ALL_FORMATS if spec_family(n)[0] in ("int_sym", "bfp")])
def test_family_aliases_for_every_row(name):
    fam, b = spec_family(name)
    if fam == "int_sym":
        assert formats.parse(f"INT{b}-SYM") == name
    else:
        assert formats.parse(f"HBFP{b}") == name


@pytest.mark.parametrize("bad,close", [("int44", "int4"), ("fp8_e4m4", "fp8_e4m3"), ("bfp88", "bfp8"),
                                       ("fp61", "fp16"), ("bfloat61", "bfloat16")])
def test_unknown_name_lists_close_matches(bad, close):
    with pytest.raises(ValueError) as e:
        formats.parse(bad)
    msg = str(e.value)
    assert repr(bad) in msg
    assert "close matches" in msg and close in msg


@pytest.mark.parametrize("bad", ["int9", "int1", "bfp1", "bfp17", "hbfp33", "fp32", "", "uint9", "int4_full_asym"])
def test_unknown_names_raise(bad):
    with pytest.raises(ValueError, match="unknown number format"):
        formats.parse(bad)
    with pytest.raises(ValueError):
        Format(bad)
    with pytest.raises(ValueError):
        qsparse.fake_quant(torch.zeros(2, 2), bad)


@pytest.mark.parametrize("bad", [4, None, 4.0, b"int4", ["int4"]])
def test_name_of_wrong_type(bad):
    with pytest.raises(TypeError):
        formats.parse(bad)
    with pytest.raises(TypeError, match="fmt"):
        qsparse.fake_quant(torch.zeros(2, 2), bad)


# ---- item 1: Format validation and round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("name", GROUP_FORMATS[::4] + ("int4", "bfp8"))
@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (-32, ValueError), ("col", ValueError),
                                     ("Row", ValueError), (2.0, TypeError), (True, TypeError), ([32], TypeError)])
def test_bad_group_size(name, bad, exc):
    with pytest.raises(exc, match="group_size"):
        Format(name, group_size=bad)
    with pytest.raises(exc, match="group_size"):
        qsparse.fake_quant(torch.zeros(2, 4), name, group_size=bad)


@pytest.mark.parametrize("name", [n for n in ELEMENT_FORMATS if not info(n).has_codes])
@pytest.mark.parametrize("gs", [1, 32, "row", "tensor"])
def test_wide_element_formats_take_no_group_size(name, gs):
    """fp16 and bf16 are casts only; element formats of 8 bits or fewer take a group size as a scale
    (tests/test_scaled.py)."""
    with pytest.raises(ValueError, match="group_size"):
        Format(name, group_size=gs)
    with pytest.raises(ValueError, match="group_size"):
        qsparse.fake_quant(torch.zeros(2, 4), name, group_size=gs)


@pytest.mark.parametrize("name", [n for n in ELEMENT_FORMATS if info(n).has_codes])
def test_element_formats_with_a_group_size_are_scaled(name):
    assert Format(name).effective_scale_mode == "none"
    assert Format(name, group_size=32).effective_scale_mode == "amax"
    with pytest.raises(ValueError, match="group_size"):
        Format(name, group_size=32, scale_mode="none")


@pytest.mark.parametrize("bad", ["", "rn", "up", "half_up", 0, 1, 1.0])
def test_bad_rounding(bad):
    with pytest.raises((ValueError, TypeError), match="rounding"):
        Format("int4", rounding=bad)
    with pytest.raises((ValueError, TypeError), match="rounding"):
        qsparse.fake_quant(torch.zeros(2, 4), "int4", rounding=bad)


def test_rounding_aliases():
    assert Format("int4", rounding="determ").rounding == "rne"
    assert Format("int4", rounding="nearest_even").rounding == "rne"
    assert Format("int4", rounding="stoc").rounding == "stochastic"
    assert Format("int4", rounding="Stochastic").rounding == "stochastic"
    assert Format("int4", rounding=" RNE ").rounding == "rne"


@pytest.mark.parametrize("bad", [1, 0, "yes", 1.0])
def test_bad_saturate_type(bad):
    with pytest.raises(TypeError, match="saturate"):
        Format("fp8_e4m3", saturate=bad)
    with pytest.raises(TypeError, match="saturate"):
        qsparse.fake_quant(torch.zeros(2, 4), "fp8_e4m3", saturate=bad)


@pytest.mark.parametrize("name", GROUP_FORMATS)
def test_saturate_only_for_element_formats(name):
    with pytest.raises(ValueError, match="saturate"):
        Format(name, saturate=True)


def test_format_is_frozen_and_hashable():
    f = Format("int4_asym", group_size=32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.group_size = 64
    assert hash(f) == hash(Format("INT4-ASYM", group_size=32))
    assert f == Format("uint4", group_size=32)
    assert f != Format("int4_asym", group_size=64)


def _sample_formats():
    out = []
    for name in ALL_FORMATS:
        out.append(Format(name))
        if info(name).family == "lut":  # lookup grids: their own rounding, groups or rows
            out += [Format(name, group_size=g) for g in (1, 3, 32, 128, "row")]
            out.append(Format(name, compat="bitmod"))
            continue
        if info(name).family == "llmq":  # llm-mixed-q's formats: RNE only; blocks for bl and bmf
            out.append(Format(name, compat="llm-mixed-q"))
            if not info(name).elementwise:
                out += [Format(name, group_size=g) for g in (1, 3, 32, "row", "tensor")]
            continue
        out.append(Format(name, rounding="stochastic"))
        if info(name).elementwise:
            out.append(Format(name, saturate=True))
            if info(name).has_inf or info(name).has_nan:
                out.append(Format(name, saturate=False, rounding="stochastic"))
        else:
            out += [Format(name, group_size=g) for g in (1, 3, 32, 128, "row", "tensor")]
    return out


SAMPLE_FORMATS = _sample_formats()


def test_to_dict_from_dict_round_trip():
    for f in SAMPLE_FORMATS:
        d = f.to_dict()
        assert d["name"] == f.name
        assert all(isinstance(k, str) for k in d)
        assert Format.from_dict(d) == f, d
        assert Format.from_dict(dict(d)).to_dict() == d


def test_yaml_round_trip():
    docs = [f.to_dict() for f in SAMPLE_FORMATS]
    text = yaml.safe_dump(docs)
    back = [Format.from_dict(d) for d in yaml.safe_load(text)]
    assert back == SAMPLE_FORMATS
    # one format per document too
    for f in SAMPLE_FORMATS[:20]:
        assert Format.from_dict(yaml.safe_load(yaml.safe_dump(f.to_dict()))) == f


def test_to_dict_is_minimal_and_canonical():
    assert Format("INT4").to_dict() == {"name": "int4"}
    assert Format("hbfp8", group_size=16, rounding="stoc").to_dict() == {"name": "bfp8", "group_size": 16,
                                                                        "rounding": "stochastic"}
    assert Format("e5m2", saturate=False).to_dict() == {"name": "fp8_e5m2", "saturate": False}


def test_from_dict_errors():
    with pytest.raises(ValueError, match="foo"):
        Format.from_dict({"name": "int4", "foo": 1})
    with pytest.raises(ValueError, match="name"):
        Format.from_dict({"group_size": 32})
    with pytest.raises(ValueError, match="group_size"):
        Format.from_dict({"name": "int4", "group_size": 0})


def test_parse_overrides():
    base = Format("int4", group_size=32)
    assert Format.parse(base) is base
    assert Format.parse(base, group_size=64) == Format("int4", group_size=64)
    assert Format.parse(base, rounding="stochastic") == Format("int4", group_size=32, rounding="stochastic")
    assert Format.parse("bf16") == Format("bfloat16")
    with pytest.raises(ValueError, match="group_size"):
        Format.parse(base, group_size=0)


def test_str_names_options():
    assert str(Format("int4")) == "int4"
    s = str(Format("int4", group_size=32))
    assert "int4" in s and "group_size=32" in s


# ---- item 2: exhaustive element tables ------------------------------------------------------------------------------


def test_codes_exactly_for_small_float_formats():
    for name in ALL_FORMATS:
        f = info(name)
        assert f.has_codes == (f.family == "float" and f.bits <= 8), name
    assert set(CODE_FORMATS) >= {"fp8_e4m3", "fp8_e5m2"}


def _is_nan_code(code: int, spec: dict) -> bool:
    return math.isnan(decode_minifloat(code, spec))


@pytest.mark.parametrize("name", CODE_FORMATS)
def test_decode_every_code(name):
    spec = ELEMENT_SPEC[name]
    nbits = 1 + spec["ebits"] + spec["mbits"]
    codes = torch.arange(1 << nbits, dtype=torch.int32).to(torch.uint8)
    got = qsparse.decode(codes, name)
    assert got.dtype == torch.float32 and got.shape == codes.shape
    expected = torch.tensor([decode_minifloat(c, spec) for c in range(1 << nbits)], dtype=torch.float64)
    finite = torch.isfinite(expected)
    assert torch.equal(expected[finite].to(torch.float32).to(torch.float64), expected[finite]), "must fit binary32"
    assert_same_bits(got, expected.to(torch.float32), f"decode {name}")


def test_decode_anchor_codes():
    d = lambda c, n: qsparse.decode(torch.tensor([c], dtype=torch.uint8), n).item()
    # OCP E4M3
    assert d(0x7E, "fp8_e4m3") == 448.0 and d(0xFE, "fp8_e4m3") == -448.0
    assert d(0x08, "fp8_e4m3") == 2.0**-6 and d(0x01, "fp8_e4m3") == 2.0**-9 and d(0x07, "fp8_e4m3") == 7 * 2.0**-9
    assert d(0x38, "fp8_e4m3") == 1.0 and d(0x39, "fp8_e4m3") == 1.125 and d(0x78, "fp8_e4m3") == 256.0
    assert math.isnan(d(0x7F, "fp8_e4m3")) and math.isnan(d(0xFF, "fp8_e4m3"))
    assert d(0x80, "fp8_e4m3") == 0.0 and math.copysign(1.0, d(0x80, "fp8_e4m3")) == -1.0
    # E5M2 (IEEE-like)
    assert d(0x7B, "fp8_e5m2") == 57344.0 and d(0x7C, "fp8_e5m2") == math.inf and d(0xFC, "fp8_e5m2") == -math.inf
    assert all(math.isnan(d(c, "fp8_e5m2")) for c in (0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF))
    assert d(0x04, "fp8_e5m2") == 2.0**-14 and d(0x01, "fp8_e5m2") == 2.0**-16 and d(0x3C, "fp8_e5m2") == 1.0


@pytest.mark.parametrize("name", CODE_FORMATS)
def test_encode_every_code_back_to_itself(name):
    spec = ELEMENT_SPEC[name]
    nbits = 1 + spec["ebits"] + spec["mbits"]
    n = 1 << nbits
    values = torch.tensor([decode_minifloat(c, spec) for c in range(n)], dtype=torch.float32)
    for saturate in saturate_options(name):
        got = qsparse.encode(values, name, saturate=saturate)
        assert got.dtype == torch.uint8 and got.shape == values.shape
        for c in range(n):
            v = decode_minifloat(c, spec)
            g = int(got[c])
            if math.isnan(v):
                assert _is_nan_code(g, spec), f"{name}: NaN code {c:#04x} encoded to non-NaN {g:#04x}"
                assert (g >> (nbits - 1)) == (c >> (nbits - 1)), f"{name}: NaN sign lost: {c:#04x} -> {g:#04x}"
            elif math.isinf(v) and saturate is not False:
                # Inf inputs saturate by default: to the max code of the same sign
                max_code = max(cc for cc in range(n >> 1) if math.isfinite(decode_minifloat(cc, spec)))
                assert g == max_code | (c & (n >> 1)), f"{name}: {v} -> {g:#04x}"
            else:
                assert g == c, f"{name} saturate={saturate}: code {c:#04x} ({v!r}) encoded to {g:#04x}"


@pytest.mark.parametrize("name", CODE_FORMATS)
def test_codes_are_monotone(name):
    spec = ELEMENT_SPEC[name]
    nbits = 1 + spec["ebits"] + spec["mbits"]
    pos = [decode_minifloat(c, spec) for c in range(1 << (nbits - 1))]
    finite = [v for v in pos if math.isfinite(v)]
    assert finite == sorted(finite) and len(set(finite)) == len(finite)
    assert finite[-1] == spec["max"] and finite[1] == spec["min_subnormal"]
    assert spec["min_normal"] in finite


@pytest.mark.parametrize("name,saturate", [(n, s) for n in CODE_FORMATS for s in saturate_options(n) if s is not True])
def test_encode_all_bf16_values(name, saturate):
    """Every bf16 value (as float32) encodes to the code of its RNE rounding: decode(encode(x)) is the reference
    rounding, bit for bit (NaN where the reference has NaN; a grid without NaN gets no NaN input)."""
    x = all_16bit(torch.bfloat16).to(torch.float32)
    if not info(name).has_nan:
        x = x[~torch.isnan(x)]
    codes = qsparse.encode(x, name, saturate=saturate)
    back = qsparse.decode(codes, name)
    expected = reference.round_float(x, name, saturate=saturate)
    assert_same_bits(back, expected, f"decode(encode(x)) {name}", inputs=x)
    # and that rounding is what the element-wise fake quantization does
    assert_same_bits(qsparse.fake_quant(x, name, saturate=saturate), back, f"fake_quant {name}", inputs=x)


def test_encode_refuses_nan_without_a_nan_code():
    with pytest.raises(ValueError, match="no NaN code"):
        qsparse.encode(torch.tensor([1.0, math.nan, 2.0]), "fp4_e2m1")
    # Inf saturates: 1.0 = 0b0010, +Inf -> 6.0 = 0b0111, -7.0 -> -6.0 = 0b1111
    assert qsparse.encode(torch.tensor([1.0, math.inf, -7.0]), "fp4_e2m1").tolist() == [0x2, 0x7, 0xF]


def test_encode_hand_values():
    e = lambda v, n, s=None: int(qsparse.encode(torch.tensor([v], dtype=torch.float32), n, saturate=s)[0])
    assert e(1.0, "fp8_e4m3") == 0x38
    assert e(1.0625, "fp8_e4m3") == 0x38  # tie -> even mantissa
    assert e(1.1875, "fp8_e4m3") == 0x3A
    assert e(464.0, "fp8_e4m3") == 0x7E  # tie between 448 and (NaN) 480 -> 448
    assert e(1e9, "fp8_e4m3") == 0x7E and e(-1e9, "fp8_e4m3") == 0xFE
    assert e(1e9, "fp8_e4m3", False) in (0x7F, 0xFF)  # no Inf: NaN
    assert e(-0.0, "fp8_e4m3") == 0x80 and e(0.0, "fp8_e4m3") == 0x00
    assert e(2.0**-10, "fp8_e4m3") == 0x00 and e(3 * 2.0**-10, "fp8_e4m3") == 0x02
    assert e(61440.0, "fp8_e5m2") == 0x7B and e(61440.0, "fp8_e5m2", False) == 0x7C
    assert e(math.inf, "fp8_e5m2", False) == 0x7C and e(-math.inf, "fp8_e5m2", False) == 0xFC
    assert e(math.nan, "fp8_e5m2") in (0x7D, 0x7E, 0x7F)
    assert e(2.0**-17, "fp8_e5m2") == 0x00 and e(3 * 2.0**-17, "fp8_e5m2") == 0x02


def test_codec_argument_errors():
    with pytest.raises(TypeError):
        qsparse.encode(torch.zeros(3, dtype=torch.float64), "fp8_e4m3")
    with pytest.raises(TypeError):
        qsparse.encode(torch.zeros(3, dtype=torch.bfloat16), "fp8_e4m3")
    with pytest.raises(TypeError):
        qsparse.decode(torch.zeros(3, dtype=torch.int8), "fp8_e4m3")
    with pytest.raises(ValueError, match="element codes"):
        qsparse.encode(torch.zeros(3), "int4")
    with pytest.raises(ValueError, match="element codes"):
        qsparse.decode(torch.zeros(3, dtype=torch.uint8), "fp16")
    assert qsparse.encode(torch.zeros(0), "fp8_e4m3").shape == (0,)
    assert qsparse.decode(torch.zeros(2, 0, dtype=torch.uint8), "fp8_e5m2").shape == (2, 0)


# ---- describe: grids and storage cost (hand values: FORMATS.md section 3 and the examples) ------------------


def test_describe_int_group_overhead():
    d = formats.describe("int4", 128)  # one fp16 scale per 128 elements
    assert d.bits_per_element == 4.125 and d.overhead_bits == 16 / 128 and d.element_bits == 4
    assert d.grid == tuple(float(q) for q in range(8))
    d = formats.describe("int4_asym", 64)  # fp16 scale + 4-bit zero point per 64
    assert d.bits_per_element == 4 + 20 / 64
    assert formats.describe("int8", "row", row_length=4096).bits_per_element == 8 + 16 / 4096
    assert formats.describe("int8").overhead_bits is None  # a row of unknown length
    assert formats.describe("int8", scale_bits=32, row_length=1024).bits_per_element == 8 + 32 / 1024


def test_describe_bfp_and_elementwise():
    d = formats.describe("bfp8")  # HBFP block 32, one 8-bit exponent
    assert d.bits_per_element == 8.25 and d.grid[-1] == 127.0
    assert formats.describe("bfp4", 16).bits_per_element == 4.5
    d = formats.describe("fp4_e2m1")
    assert d.grid == (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    assert d.bits_per_element == 4 and d.max == 6.0 and d.has_subnormals and not d.has_inf and not d.has_nan
    assert formats.describe("fp3_e2m0").grid == (0.0, 1.0, 2.0, 4.0)
    d = formats.describe("fp8_e4m3")
    assert d.grid[-1] == 448.0 and d.grid[1] == 2.0**-9 and len(d.grid) == 127  # 0x00..0x7e; 0x7f is NaN
    assert formats.describe("fp16").grid is None and formats.describe("fp16").bits_per_element == 16


def test_docs_formats_md_is_generated_from_the_table():
    """docs/formats.md is the output of `python -m qsparse.formats`: regenerate it when the table changes."""
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "formats.md"
    assert path.read_text() == formats.markdown_table(), "docs/formats.md is stale: python -m qsparse.formats > docs/formats.md"
    for f in formats.table():
        assert f"| `{f.name}` |" in path.read_text()


# ---- describe() under a compat profile ------------------------------------------------------------------------------
# Each difference is checked against numbers worked out by hand here, and where it is a claim about the kernel's
# values, against the kernel.

def test_describe_compat_llmq_minifloat_ieee():
    d, base = formats.describe("fp8_e4m3", compat="llm-mixed-q"), formats.describe("fp8_e4m3")
    assert (base.max, base.has_nan, len(base.grid)) == (448.0, True, 127)  # S.1111.111 is NaN
    assert (d.max, d.has_nan, d.has_inf) == (480.0, False, False)  # 2^8 * (2 - 2^-3): every code finite
    assert d.grid[-3:] == (416.0, 448.0, 480.0) and len(d.grid) == 1 + 7 + 15 * 8
    assert d.compat == "llm-mixed-q" and d.rounding == "rne" and any("clamped" in n for n in d.notes)
    e5 = formats.describe("fp8_e5m2", compat="llm-mixed-q")
    assert (e5.max, e5.has_inf, e5.has_nan) == (114688.0, False, False)  # 2^16 * 1.75
    assert formats.describe("fp8_e5m2").max == 57344.0
    e2 = formats.describe("fp4_e2m1", compat="llm-mixed-q")
    assert e2.grid == formats.describe("fp4_e2m1").grid == (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    # the kernel: 480 is on its grid; 1.9 has mantissa 1.9 * 2 - 2 = 1.8 -> round 2 -> clamped to 1: 1.5 (RNE: 2.0)
    x = torch.tensor([480.0, 470.0])
    assert qsparse.fake_quant(x, "fp8_e4m3", compat="llm-mixed-q").tolist() == [480.0, 480.0]
    assert qsparse.fake_quant(torch.tensor([1.9]), "fp4_e2m1", compat="llm-mixed-q").item() == 1.5
    assert qsparse.fake_quant(torch.tensor([1.9]), "fp4_e2m1").item() == 2.0


def test_describe_compat_llmq_msfp():
    d = formats.describe("bfp8", 16, compat="llm-mixed-q")
    assert (d.bits_per_element, d.overhead_bits, d.rounding) == (8.5, 0.5, "rne")  # 8 + 8 / 16
    assert any("MSFP" in n for n in d.notes) and any("passes through" in n for n in d.notes)
    # the blend: 1e-9 passes through under the profile; HBFP rounds it to 0 in a block of max 1 (interval 2^-7)
    x = torch.tensor([1e-9, 1.0] + [0.0] * 14)
    assert qsparse.fake_quant(x, "bfp8", group_size=16, compat="llm-mixed-q")[0].item() == torch.tensor(1e-9).item()
    assert qsparse.fake_quant(x, "bfp8", group_size=16)[0].item() == 0.0


def test_describe_compat_fpquant():
    d = formats.describe("mxfp4", 32, compat="fpquant")
    assert d.bits_per_element == 4.25 and any("/ 0.75" in n for n in d.notes)
    # the kernel: a block of max 6 takes s = 2^(2 - 2) / 0.75; 6 / s = 4.5 -> 4 (thresholds), 4 * s
    x = torch.tensor([6.0] + [0.0] * 31)
    s = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(0.75, dtype=torch.float32)
    assert qsparse.fake_quant(x, "mxfp4", compat="fpquant")[0].item() == (4 * s).item()
    assert qsparse.fake_quant(x, "mxfp4")[0].item() == 6.0  # OCP: scale 2^0
    n = formats.describe("nvfp4", compat="fpquant")
    assert (n.bits_per_element, n.tensor_scale_bits) == (4.5, 32) and any("2688" in t for t in n.notes)


def test_describe_compat_bitmod_microxcaling_hbfp_torchao():
    # BitMoD's scale is a binary16 number: 16 bits per group of 128 whatever scale_bits says
    assert formats.describe("int4", 128, scale_bits=32).bits_per_element == 4.25
    assert formats.describe("int4", 128, scale_bits=32, compat="bitmod").bits_per_element == 4.125
    assert any("not clipped at 0" in n for n in formats.describe("int4_asym", 128, compat="bitmod").notes)
    assert formats.describe("mxfp4", compat="microxcaling").rounding == "half_away"
    assert formats.describe("bfp8", compat="hbfp").rounding == "stochastic"
    t = formats.describe("mxfp4", compat="torchao")
    assert t.bits_per_element == formats.describe("mxfp4").bits_per_element and t.rounding == "rne"
    d = formats.describe("mxfp4")
    assert d.compat is None and d.notes == ()


def test_describe_compat_is_validated():
    with pytest.raises(ValueError, match=r"compat='llm-mixed-q' does not apply to 'int4'"):
        formats.describe("int4", compat="llm-mixed-q")
    with pytest.raises(ValueError, match=r"compat='nope' is not supported; allowed: bitmod"):
        formats.describe("mxfp4", compat="nope")
    with pytest.raises(ValueError, match="does not apply"):
        formats.describe("nvfp4", compat="microxcaling")
