"""Number formats: the Python view of the C format table and the parser of format names.

Every format is one row of the C table (csrc/qs_format_table.h); :func:`table` reads the rows through the CPU
library, so there is no second list here. What this module adds is naming: the canonical names of the table
(``int4``, ``int4_full``, ``int4_asym``, ``bfp8``, ``fp16``, ``bf16``, ``fp8_e4m3``, ``fp8_e5m2``, the minifloats
``fp{w}_e{E}m{M}`` such as ``fp4_e2m1``), the aliases users type (``float16``, ``bfloat16``, ``float8_e4m3fn``,
``e5m2``, ``e2m1``, ``int4_sym``, ...), the block-scaled formats (``mxfp8_e4m3``, ``mxfp8_e5m2``, ``mxfp6_e3m2``,
``mxfp6_e2m3``, ``mxfp4``, ``mxint8``, ``nvfp4``), the lookup grids, llm-mixed-q's formats (``log{w}``, ``bl{w}``,
``dmf{w}_e{E}m{M}``, ``bmf{w}_e{E}m{M}``; see ``markdown_table``'s header for their defaults) and :class:`Format`, a format together with the options of one use
of it (group size, rounding, saturation, scale mode).

Definitions of every format are in FORMATS.md (sections 1-7); the numbers below come from the C table.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple, Union

from . import _lib

FAMILIES = ("int_sym", "int_full", "int_asym", "bfp", "float", "scaled", "lut", "llmq")
SCALE_KINDS = ("none", "float", "shared_exp", "e4m3")
# qs_scale_mode, in C order. "default" is the format's own: "none" for element rows, "floor" for the MX rows,
# "e4m3" for nvfp4.
SCALE_MODES = ("default", "none", "amax", "floor", "ceil", "even", "rceil", "e4m3", "e4m3_block")
_POW2_MODES = ("floor", "ceil", "even", "rceil")
OBSERVERS = ("minmax", "mse")  # qs_observer, in C order
# Compatibility profiles (FORMATS.md, Profiles): the arithmetic of one source system where it differs from qsparse's
# defaults. Value: (qs_compat code, default rounding, what it applies to).
COMPAT_PROFILES = {
    "bitmod": (1, "rne", "int{b}, int{b}_asym, minifloats of <= 6 bits with a group scale, ANT/BitMoD grids"),
    "microxcaling": (2, "half_away", "E8M0 floor scales (the MX formats)"),
    "torchao": (0, "rne", "the MX and NVFP4 scales (qsparse's defaults follow torchao)"),
    "hbfp": (0, "stochastic", "bfp{w} (HBFP rounds stochastically by default)"),
    "fpquant": (4, "rne", "mxfp4 (scale floor) and nvfp4 (scale e4m3): FP-Quant's E2M1 quantizers"),
    "llm-mixed-q": (3, "rne", "element-wise minifloats fp{w}_e{E}m{M} (its minifloat_ieee), bfp{w} (its MSFP "
                    "block_fp), log{w}, bl{w}, dmf*, bmf*, fixed{w}_f{f} (its integer: the same arithmetic); "
                    "its zero-block max replacement, its arithmetic in a float16 / bfloat16 input's dtype"),
}
ROUNDINGS = ("rne", "stochastic", "half_away", "ties_lower")  # qs_rounding, in C order

# qs_format_info.flags
_HAS_INF, _HAS_NAN, _HAS_SUBNORMALS, _SATURATES, _HAS_CODES = 1, 2, 4, 8, 16
_FIXED_POINT, _LOG, _DENORM, _BLOCK_BIAS = 1 << 6, 1 << 7, 1 << 8, 1 << 9
# llm-mixed-q's `integer` (fixed point): widths of the table's fixed{w}_f0 rows and the fraction widths a call takes
# (qsparse.h: QS_FIXED_FRAC_MIN, QS_FIXED_FRAC_MAX).
FIXED_WIDTHS = range(2, 17)
FIXED_FRAC_RANGE = range(-16, 33)
LLMQ_BIAS_BITS = 8  # the block bias of bl{w} and bmf*: llm-mixed-q's exponent_bias_width in its configurations

GroupSize = Union[int, str, None]


@dataclass(frozen=True)
class FormatInfo:
    """One row of the C format table (qs_format_info), with its flags spelled out."""

    name: str
    id: int
    family: str  # one of FAMILIES
    bits: int  # bits per element, sign included, scale excluded
    ebits: int  # exponent bits (family "float")
    mbits: int  # mantissa bits (float) or magnitude bits (int, bfp)
    bias: int
    emin: int
    emax: int
    scale_kind: str  # one of SCALE_KINDS
    default_group: Optional[int]  # block size, or None for per row (int) / no groups (element-wise)
    qmin: int
    qmax: int
    max_normal: float  # float: largest finite magnitude; int/bfp: qmax in units of the scale
    min_normal: float
    min_subnormal: float
    has_inf: bool
    has_nan: bool
    has_subnormals: bool
    saturates: bool  # overflow saturates by default
    has_codes: bool  # element codes available (formats.encode / formats.decode)
    default_scale_mode: str  # one of SCALE_MODES: "none" for element rows
    candidates: int = 0  # lookup-grid formats: the grids each group chooses from (see `grids`)
    log: bool = False  # llmq: powers of two only (log{w}, bl{w})
    denorm: bool = False  # llmq: no implicit mantissa bit (dmf)
    block_bias: bool = False  # llmq: one 8-bit exponent bias per block (bl{w}, bmf*)
    fixed_point: bool = False  # llmq: llm-mixed-q's fixed point fixed{w}_f{f}, values k * 2^-f, qmin <= k <= qmax
    frac_bits: int = 0  # fixed point: the fraction width f (max_normal, min_normal, min_subnormal are of this f)

    @property
    def grids(self) -> Tuple[Tuple[str, Tuple[float, ...]], ...]:
        """Lookup-grid formats: (name, values) of each candidate grid, values ascending in units of the scale
        (BitMoD's integer units); empty for other formats."""
        return tuple(_lib.format_grid(self.id, c) for c in range(self.candidates))

    @property
    def metadata_bits(self) -> int:
        """Bits per group recording which grid the group took: ceil(log2(candidates)) (0 for one grid)."""
        return max(self.candidates - 1, 0).bit_length()

    @property
    def elementwise(self) -> bool:
        """True for formats whose default use has no per-group scale (casts such as fp16 or fp8_e4m3). Element
        rows of 8 bits or fewer also take a scale: ``Format("fp4_e2m1", group_size=32)``."""
        return self.scale_kind == "none"

    @property
    def scalable(self) -> bool:
        """True when the format's elements can be used with a per-group scale (scaled rows, and element rows of
        8 bits or fewer)."""
        return self.family == "scaled" or (self.family == "float" and self.has_codes)


_table: Optional[Tuple[FormatInfo, ...]] = None
_by_name: dict = {}  # filled in place by table()


def table() -> Tuple[FormatInfo, ...]:
    """All formats of the C table, in id order."""
    global _table
    if _table is None:
        rows = []
        for r in _lib.format_table():
            flags = r["flags"]
            rows.append(
                FormatInfo(
                    name=r["name"],
                    id=r["id"],
                    family=FAMILIES[r["family"]],
                    bits=r["bits"],
                    ebits=r["ebits"],
                    mbits=r["mbits"],
                    bias=r["bias"],
                    emin=r["emin"],
                    emax=r["emax"],
                    scale_kind=SCALE_KINDS[r["scale_kind"]],
                    default_group=r["default_group"] if r["default_group"] > 0 else None,
                    qmin=r["qmin"],
                    qmax=r["qmax"],
                    max_normal=r["max_normal"],
                    min_normal=r["min_normal"],
                    min_subnormal=r["min_subnormal"],
                    has_inf=bool(flags & _HAS_INF),
                    has_nan=bool(flags & _HAS_NAN),
                    has_subnormals=bool(flags & _HAS_SUBNORMALS),
                    saturates=bool(flags & _SATURATES),
                    has_codes=bool(flags & _HAS_CODES),
                    default_scale_mode=SCALE_MODES[r["default_scale_mode"]],
                    candidates=r["candidates"],
                    log=bool(flags & _LOG),
                    denorm=bool(flags & _DENORM),
                    block_bias=bool(flags & _BLOCK_BIAS),
                    fixed_point=bool(flags & _FIXED_POINT) and r["family"] == FAMILIES.index("llmq"),
                )
            )
        _by_name.update((f.name, f) for f in rows)
        _table = tuple(rows)
    return _table


def names() -> Tuple[str, ...]:
    """Canonical names of all formats (of the fixed-point formats, the table's rows fixed{w}_f0; every other
    fraction width is the same row: see :func:`fixed_name`)."""
    return tuple(f.name for f in table())


def fixed_name(width: int, frac_width: int) -> str:
    """The canonical name of llm-mixed-q's fixed point with ``width`` bits of which ``frac_width`` are fraction bits
    (its ``integer`` quantizer, signed): ``fixed8_f4``; a negative fraction width is written ``fixed8_fm2``.
    Registers the format (one row of the table per width, the fraction width a parameter of the call)."""
    for param, v, allowed in (("width", width, FIXED_WIDTHS), ("frac_width", frac_width, FIXED_FRAC_RANGE)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"fixed point: {param} must be an int, got {v!r}")
        if v not in allowed:
            raise ValueError(f"fixed point: {param}={v} is not supported; allowed: {allowed.start} to "
                             f"{allowed.stop - 1}")
    table()
    name = f"fixed{width}_f{frac_width}" if frac_width >= 0 else f"fixed{width}_fm{-frac_width}"
    if name not in _by_name:
        row = _by_name[f"fixed{width}_f0"]
        unit = 2.0**-frac_width
        _by_name[name] = replace(row, name=name, frac_bits=frac_width, max_normal=row.qmax * unit,
                                 min_normal=unit, min_subnormal=unit)
    return name


# Names users type for the same formats. Lower-case, '-' and ' ' read as '_'.
_ALIASES = {
    "float16": "fp16",
    "half": "fp16",
    "fp16_e5m10": "fp16",
    "bfloat16": "bf16",
    "bf16_e8m7": "bf16",
    "e4m3": "fp8_e4m3",
    "fp8_e4m3fn": "fp8_e4m3",
    "float8_e4m3fn": "fp8_e4m3",
    "float8_e4m3": "fp8_e4m3",
    "e5m2": "fp8_e5m2",
    "float8_e5m2": "fp8_e5m2",
    # block-scaled formats, as the seeds and other libraries spell them
    "mxfp": "mxfp4",
    "mxfp4_e2m1": "mxfp4",
    "mxfp8": "mxfp8_e4m3",
    "mx_int8": "mxint8",
    "nvfp": "nvfp4",
    "nv_fp4": "nvfp4",
    # BitMoD's datatype names (quant_weight.py): its fp{b} grids are these minifloats
    "fp3": "fp3_e2m0",
    "fp4": "fp4_e2m1",
    "fp5": "fp5_e2m2",
    "fp6": "fp6_e2m3",
    "fp8": "fp8_e4m3",
}
# Names whose bit width is given separately (BitMoD's --wq_bits, the HBFP fork's bfp width): name -> template.
_BITS_NAMES = {"mixed_ant": "mixed_ant{}", "mixed_er": "mixed_er{}", "mixed_ea": "mixed_ea{}",
               "mixed_bitmod": "mixed_bitmod{}", "int": "int{}", "int_asym": "int{}_asym", "bfp": "bfp{}",
               "fp": "fp{}", "mx_fp": "mx_fp{}", "mx_int": "mx_int{}", "flint": "flint{}",
               # llm-mixed-q's quantizer names (its configs' `name` with `width`)
               "log": "log{}", "bl": "bl{}", "block_log": "bl{}", "dmf": "dmf{}", "minifloat_denorm": "dmf{}",
               "bmf": "bmf{}", "block_minifloat": "bmf{}", "minifloat": "fp{}", "minifloat_ieee": "fp{}",
               "block_fp": "bfp{}"}
_DEFAULT_BITS = {"mixed_ant": 4, "mixed_er": 4, "mixed_ea": 4, "mixed_bitmod": 4}
# llm-mixed-q's minifloats by width alone (dmf8, bmf5, minifloat with bits=8): the exponent width of its
# configurations (8 bits: E4M3; 5 bits: BM5 = E2M2), the nearest OCP-like split elsewhere.
DEFAULT_EBITS = {3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4}
_WIDTH_ONLY = re.compile(r"^(dmf|bmf)([3-8])$")
# llm-mixed-q's `integer` (fixed point, x_hat = clamp(round(x * 2^f), ...) / 2^f): its width and fraction width
# (`width`, `frac_width` in its configs) as bits= and frac_width=; fixed{w}_f{f} by name, fixed8_f-2 = fixed8_fm2.
_FIXED_NAMES = ("integer", "fixed", "fixed_point")
_FIXED = re.compile(r"^fixed([0-9]+)_f(m|_)?([0-9]+)$")
_INT_SYM_ALIAS = re.compile(r"^int([2-8])_(sym|symmetric|restricted)$")
_INT_FULL_ALIAS = re.compile(r"^int([2-8])_(full_range|gptq)$")
_INT_ASYM_ALIAS = re.compile(r"^(?:u?int)([2-8])_(asymmetric|affine)$|^uint([2-8])$")
_HBFP_ALIAS = re.compile(r"^hbfp([0-9]+)$")
# e2m1, fp4_e2m1fn, float6_e3m2, ...: an element format by its exponent and mantissa widths
_EM_ALIAS = re.compile(r"^(?:(?:fp|float)([0-9])_)?e([0-9])m([0-9])(?:fn)?$")


def _normalize(name: str) -> str:
    return re.sub(r"[-\s]+", "_", name.strip().lower())


def parse(name: str, bits: Optional[int] = None, frac_width: Optional[int] = None) -> str:
    """The canonical name of a format name or alias; ValueError (listing close matches) if there is none.

    ``bits`` gives the width where a source names it separately (BitMoD's ``--wq_bits``): ``parse("mixed_bitmod",
    bits=3) == "mixed_bitmod3"``, ``parse("int", bits=4) == "int4"``; ``mixed_*`` default to 4 bits. With a name that
    has its width already, ``bits`` must agree with it. ``frac_width``: the fraction width of llm-mixed-q's fixed
    point, ``parse("integer", bits=8, frac_width=4) == "fixed8_f4"`` (its config ``name: integer, width: 8,
    frac_width: 4``; see :func:`llmq_format`)."""
    if not isinstance(name, str):
        raise TypeError(f"format name must be a str, got {type(name).__name__}")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)):
        raise TypeError(f"bits must be None or an int, got {bits!r}")
    if frac_width is not None and (isinstance(frac_width, bool) or not isinstance(frac_width, int)):
        raise TypeError(f"frac_width must be None or an int, got {frac_width!r}")
    table()
    key = _normalize(name)
    if key in _FIXED_NAMES:
        if bits is None or frac_width is None:
            raise ValueError(f"format {name!r} (llm-mixed-q's fixed point) needs its width and fraction width: pass "
                             f"bits= and frac_width= (its config's width and frac_width), e.g. bits=8, frac_width=4")
        return fixed_name(bits, frac_width)
    m = _FIXED.match(key)
    if m:
        f = int(m.group(3)) * (-1 if m.group(2) else 1)
        canonical = fixed_name(int(m.group(1)), f)
        if bits is not None and bits != int(m.group(1)):
            raise ValueError(f"bits={bits} disagrees with format {name!r}, which has {m.group(1)} bits")
        if frac_width is not None and frac_width != f:
            raise ValueError(f"frac_width={frac_width} disagrees with format {name!r}, whose fraction width is {f}")
        return canonical
    if frac_width is not None:
        raise ValueError(f"frac_width applies to llm-mixed-q's fixed point ('integer', fixed{{w}}_f{{f}}), not to "
                         f"format {name!r}")
    if key in _BITS_NAMES:
        b = bits if bits is not None else _DEFAULT_BITS.get(key)
        if b is None:
            raise ValueError(f"format {name!r} needs its bit width: pass bits= (e.g. bits=4)")
        canonical = _BITS_NAMES[key].format(b)
        if canonical.startswith(("dmf", "bmf")) or (canonical.startswith("fp") and key.startswith("minifloat")):
            canonical = _with_ebits(canonical.rstrip("0123456789"), b, name)
        try:
            return parse(canonical)
        except ValueError:
            raise ValueError(f"format {name!r} has no {b}-bit variant ({canonical!r} is not a format)") from None
    if bits is not None:
        canonical = parse(key)
        if get(canonical).bits != bits:
            raise ValueError(f"bits={bits} disagrees with format {name!r}, which has {get(canonical).bits} bits")
        return canonical
    if key in _by_name:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    m = _WIDTH_ONLY.match(key)
    if m:
        return _with_ebits(m.group(1), int(m.group(2)))
    for pattern, template in ((_INT_SYM_ALIAS, "int{}"), (_INT_FULL_ALIAS, "int{}_full"), (_INT_ASYM_ALIAS, "int{}_asym"),
                              (_HBFP_ALIAS, "bfp{}")):
        m = pattern.match(key)
        if m:
            canonical = template.format(next(g for g in m.groups() if g is not None and g.isdigit()))
            if canonical in _by_name:
                return canonical
    m = _EM_ALIAS.match(key)
    if m:
        e, mb = int(m.group(2)), int(m.group(3))
        canonical = f"fp{1 + e + mb}_e{e}m{mb}"
        if canonical in _by_name and (m.group(1) is None or int(m.group(1)) == 1 + e + mb):
            return canonical
    candidates = list(_by_name) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown number format {name!r}{hint}. Known formats: {', '.join(names())}")


def llmq_format(config: dict) -> "Format":
    """The Format of one llm-mixed-q quantizer config: its ``name`` with ``width`` (and for ``integer`` its
    ``frac_width``; ``is_signed`` must be true, the signed quantizer of its models), e.g. ``{"name": "integer",
    "width": 8, "frac_width": 4}`` -> ``Format("fixed8_f4")``; other names as :func:`parse` with ``bits=width``
    (``{"name": "block_fp", "width": 8}`` -> ``bfp8``), under ``compat="llm-mixed-q"`` where qsparse's default
    differs from its arithmetic (minifloats, block_fp)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"an llm-mixed-q quantizer config is a dict with a 'name', got {config!r}")
    width = config.get("width")
    if _normalize(str(config["name"])) == "integer":
        unknown = set(config) - {"name", "width", "frac_width", "is_signed"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} in llm-mixed-q integer config; allowed: name, width, "
                             "frac_width, is_signed")
        if not config.get("is_signed", True):
            raise ValueError("is_signed=False (llm-mixed-q's unsigned integer) is not supported; its models "
                             "quantize signed")
        for key in ("width", "frac_width"):
            if key not in config:
                raise ValueError(f"llm-mixed-q integer config needs {key!r}, got {config!r}")
        return Format(parse("integer", bits=config["width"], frac_width=config["frac_width"]))
    if width is None:
        raise ValueError(f"llm-mixed-q config {config!r} needs 'width'")
    name = parse(str(config["name"]), bits=width)
    info = get(name)
    profile = info.family in ("float", "bfp")
    return Format(name, compat="llm-mixed-q" if profile else None)


def _with_ebits(prefix: str, w: int, name: Optional[str] = None) -> str:
    """dmf{w}, bmf{w}, fp{w} (llm-mixed-q's minifloat) with the default exponent width DEFAULT_EBITS[w]."""
    if w not in DEFAULT_EBITS:
        raise ValueError(f"format {name or prefix + str(w)!r}: llm-mixed-q's minifloats take 3 to 8 bits, got {w}")
    e = DEFAULT_EBITS[w]
    return f"{prefix}{w}_e{e}m{w - 1 - e}"


def get(fmt: Union[str, "Format", FormatInfo]) -> FormatInfo:
    """The table row of a format name, alias, Format or FormatInfo."""
    if isinstance(fmt, FormatInfo):
        return fmt
    if isinstance(fmt, Format):
        return _by_name[fmt.name]
    row = _by_name.get(fmt) if isinstance(fmt, str) else None  # a canonical name (what the ops pass): no parsing
    return row if row is not None else _by_name[parse(fmt)]


def check_compat(info: FormatInfo, compat: Optional[str], mode: str, group_size: GroupSize) -> None:
    """Validates a compatibility profile for a format used with scale mode `mode`."""
    if compat is None:
        return
    if not isinstance(compat, str):
        raise TypeError(f"compat must be None or a str, got {compat!r}")
    if compat not in COMPAT_PROFILES:
        raise ValueError(f"compat={compat!r} is not supported; allowed: {', '.join(COMPAT_PROFILES)}")
    if compat == "bitmod":
        ok = (info.family in ("int_sym", "int_asym", "lut")
              or (info.family == "float" and info.has_codes and info.bits <= 6 and mode == "amax"))
    elif compat == "microxcaling":
        ok = mode == "floor"
    elif compat == "torchao":
        ok = mode in _POW2_MODES or mode in ("e4m3", "e4m3_block")
    elif compat == "fpquant":
        ok = info.name in ("mxfp4", "nvfp4") and mode == info.default_scale_mode
    elif compat == "llm-mixed-q":
        ok = info.family in ("bfp", "llmq") or (info.family == "float" and info.has_codes and mode == "none")
    else:  # hbfp
        ok = info.family == "bfp"
    if not ok:
        raise ValueError(f"compat={compat!r} does not apply to {info.name!r} with scale mode {mode!r}; it covers "
                         f"{COMPAT_PROFILES[compat][2]}")
    if compat == "llm-mixed-q" and mode == "none" and group_size is not None:
        raise ValueError("compat='llm-mixed-q' applies to element-wise minifloats; group_size must be None")
    if compat == "bitmod" and group_size == "tensor":
        raise ValueError("compat='bitmod' quantizes per group or per row, not group_size='tensor'")


def parse_rounding(rounding: str) -> str:
    """Canonical rounding name (one of ``ROUNDINGS``). Accepts HBFP's names ('determ' = round half to even, 'stoc' =
    stochastic) and microxcaling's 'nearest' (= half away from zero)."""
    aliases = {"rne": "rne", "nearest_even": "rne", "half_even": "rne", "determ": "rne",
               "stochastic": "stochastic", "stoc": "stochastic",
               "half_away": "half_away", "nearest": "half_away", "half_away_from_zero": "half_away",
               "ties_lower": "ties_lower", "half_down": "ties_lower"}
    key = _normalize(rounding) if isinstance(rounding, str) else None
    if key not in aliases:
        raise ValueError(f"rounding={rounding!r} is not supported; allowed: {', '.join(repr(r) for r in ROUNDINGS)} "
                         "(also HBFP's 'determ' and 'stoc', microxcaling's 'nearest', 'half_down')")
    return aliases[key]


def check_group_size(info: FormatInfo, group_size: GroupSize, *, param: str = "group_size") -> GroupSize:
    """Validates a group size for a format: None (the format's default), a positive int, 'row' or 'tensor'."""
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, (int, str)):
        raise TypeError(f"{param} must be None, a positive int, 'row' or 'tensor'; got {group_size!r}")
    if isinstance(group_size, str):
        if group_size not in ("row", "tensor"):
            raise ValueError(f"{param}={group_size!r} is not allowed; use None, a positive int, 'row' or 'tensor'")
    elif not 1 <= group_size < 2**63:
        raise ValueError(f"{param}={group_size} is out of range: a positive int below 2**63 (or None, 'row', 'tensor')")
    if info.elementwise and not info.scalable:
        raise ValueError(f"format {info.name!r} is element-wise (no per-group scale); {param} must be None, "
                         f"got {group_size!r}")
    return group_size


def check_scale_mode(info: FormatInfo, scale_mode: Optional[str], group_size: GroupSize) -> str:
    """The effective scale mode of a format used with ``scale_mode`` (None = default) and ``group_size``.

    Element rows (``fp4_e2m1``, ``fp8_e4m3``, ...) are element-wise unless a group size or a scale mode is given;
    with a group size alone they take a binary32 ``amax`` scale (amax / max of the grid). MX rows default to
    ``floor``, nvfp4 to ``e4m3``. INT and BFP scales are fixed by the format."""
    if scale_mode is not None:
        if not isinstance(scale_mode, str):
            raise TypeError(f"scale_mode must be None or a str, got {scale_mode!r}")
        if scale_mode not in SCALE_MODES[1:]:
            raise ValueError(f"scale_mode={scale_mode!r} is not supported; allowed: {', '.join(SCALE_MODES[1:])}")
    if info.family == "lut":
        if scale_mode not in (None, info.default_scale_mode):
            raise ValueError(f"scale_mode={scale_mode!r} does not apply to {info.name!r}: its scale is "
                             f"{info.default_scale_mode!r}; use None")
        return info.default_scale_mode
    if info.family not in ("float", "scaled"):
        if scale_mode is not None:
            raise ValueError(f"scale_mode={scale_mode!r} does not apply to {info.name!r}: INT and BFP formats have "
                             "a fixed scale rule; use None")
        return "default"
    if scale_mode is None:
        if info.family == "scaled":
            return info.default_scale_mode
        return "none" if group_size is None else "amax"
    if scale_mode == "none":
        if info.family == "scaled":
            raise ValueError(f"scale_mode='none' is not possible for {info.name!r}, a block-scaled format; use "
                             f"its element format for element-wise casts")
        if group_size is not None:
            raise ValueError(f"scale_mode='none' (element-wise) takes no group_size, got group_size={group_size!r}")
        return "none"
    if not info.scalable:
        raise ValueError(f"scale_mode={scale_mode!r} needs an element format of 8 bits or fewer, not {info.name!r}")
    return scale_mode


@dataclass(frozen=True)
class Description:
    """What :func:`describe` reports of a format used with a group size."""

    name: str
    group_size: GroupSize
    scale_mode: str  # the effective scale mode ('default' for INT and BFP, 'none' for element-wise use)
    grid: Optional[Tuple[float, ...]]  # non-negative representable values (formats of 8 bits or fewer), ascending;
    #                                    for INT and BFP the integer codes 0..qmax, in units of the group's scale
    max: float  # largest finite magnitude (in units of the scale for INT, BFP and scaled formats)
    min_normal: float
    min_subnormal: float
    has_subnormals: bool
    has_inf: bool
    has_nan: bool
    element_bits: int  # bits of one element, sign included
    overhead_bits: Optional[float]  # scale (and zero point) bits per element; None when the group is a row or the
    #                                 tensor and its length was not given
    bits_per_element: float  # element_bits + overhead_bits (element_bits alone when the overhead is unknown)
    tensor_scale_bits: int  # bits stored once per tensor on top (NVFP4's binary32 tensor scale), else 0
    metadata_bits: int = 0  # lookup-grid formats: bits per group naming the grid it took (counted in overhead)
    grids: Tuple[Tuple[str, Tuple[float, ...]], ...] = ()  # lookup-grid formats: (name, values) of each grid
    lowest: Optional[float] = None  # the most negative value where the grid is not symmetric (fixed point), else None
    compat: Optional[str] = None  # the profile described (None: qsparse's definitions)
    rounding: str = "rne"  # the rounding this use takes by default (the profile's: hbfp stochastic, ...)
    notes: Tuple[str, ...] = ()  # what the profile does differently from qsparse's default, one clause each


def element_grid(info: FormatInfo) -> Tuple[float, ...]:
    """The non-negative finite values of a float or scaled format's element grid, ascending (from its exponent
    range and mantissa width: subnormals m * 2^(emin-M), normals up to the table's max)."""
    m = info.mbits
    values = {0.0}
    if info.has_subnormals:
        values.update(k * 2.0 ** (info.emin - m) for k in range(1, 1 << m))
    for e in range(info.emin, info.emax + 1):
        values.update((1.0 + k * 2.0**-m) * 2.0**e for k in range(1 << m))
    return tuple(sorted(v for v in values if v <= info.max_normal))


def llmq_grid(info: FormatInfo) -> Tuple[float, ...]:
    """The non-negative values of an llm-mixed-q format (family "llmq"), ascending: element rows with their fixed
    bias; block rows in units of the block's scale (bl: 2^(top - bias), so that the largest value is 1; bmf:
    2^-bias). log{w}/bl{w}: the powers of two 2^emin .. 2^emax (0 is not representable); dmf: 0 and 2^e * mi / 2^M,
    1 <= mi < 2^M; bmf: 0, subnormals mi * 2^(emin + 1 - M), normals 2^e * (1 + k / 2^M) for emin < e <= emax."""
    m, lo, hi = info.mbits, info.emin, info.emax
    if info.log:
        return tuple(2.0**e for e in range(lo, hi + 1))
    values = {0.0}
    if info.denorm:
        values.update(2.0**e * k / 2**m for e in range(lo, hi + 1) for k in range(1, 1 << m))
    else:
        values.update(k * 2.0 ** (lo + 1 - m) for k in range(1, 1 << m))
        values.update(2.0**e * (1 + k / 2**m) for e in range(lo + 1, hi + 1) for k in range(1 << m))
    return tuple(sorted(values))


def _llmq_ieee_view(info: FormatInfo) -> Tuple[float, Tuple[float, ...]]:
    """(max, non-negative grid) of a minifloat under llm-mixed-q's minifloat_ieee: every exponent code finite (bias
    2^(E-1) - 1, codes 0 .. 2^E - 1, the lowest binade subnormal)."""
    m, bias, top = info.mbits, (1 << (info.ebits - 1)) - 1, (1 << info.ebits) - 1
    lo, hi = -bias, top - bias
    values = {0.0}
    values.update(k * 2.0 ** (lo + 1 - m) for k in range(1, 1 << m))
    values.update(2.0**e * (1 + k / 2**m) for e in range(lo + 1, hi + 1) for k in range(1 << m))
    return 2.0**hi * (2.0 - 2.0**-m), tuple(sorted(values))


def _profile_notes(info: FormatInfo, compat: Optional[str], mode: str) -> Tuple[str, ...]:
    """What a profile's kernel does differently (qsparse.h, qs_compat), for the uses check_compat accepts."""
    if compat is None:
        return ()
    if compat == "torchao":
        return ("none: qsparse's MX and NVFP4 scales follow torchao",)
    if compat == "hbfp":
        return ("default rounding stochastic (HBFP's)",)
    if compat == "microxcaling":
        return ("E8M0 floor exponent from the binary32 log2 of the block max (a max just below 2^k, k >= 2, takes k)",
                "default rounding half_away (microxcaling's 'nearest')")
    if compat == "fpquant":
        if info.name == "mxfp4":
            return ("scale 2^(floor(log2 max(amax, 2^-126)) - 2) / 0.75 in binary32, not a power of two (still one "
                    "8-bit exponent per block); the block max lands in [3, 6), never clipped",
                    "elements by FP-Quant's thresholds (nearest, a tie toward zero); +0.0 gives -0.0")
        return ("global scale g = 2688 / amax_tensor (the reciprocal), block scale e4m3(g * amax / 6) with no lower "
                "clamp, y = x * g / S", "elements by FP-Quant's thresholds (nearest, a tie toward zero); +0.0 gives "
                "-0.0")
    if compat == "bitmod":
        notes = ["binary16 arithmetic (inputs rounded to binary16), scale a binary16 number clamped to [1e-5, 1e4]"]
        if info.family == "int_asym":
            notes.append("min and max not clipped at 0 (zero need not be on the grid)")
        if info.family == "float":
            notes.append("the grid in units of its smallest subnormal, a tie to the lower value")
        return tuple(notes)
    # llm-mixed-q
    if info.fixed_point:
        return ()  # its integer quantizer has no blend: qsparse's arithmetic is the source's
    notes = ["output blend: |x| <= 1e-8 passes through unquantized, -0.0 becomes +0.0, Inf becomes NaN"]
    if info.family == "float":
        notes.insert(0, "minifloat_ieee: every exponent code finite (no Inf or NaN), a mantissa that rounds up to 2 "
                        "is clamped to the binade's largest value, not carried")
    elif info.family == "bfp":
        notes.insert(0, "MSFP: 8-bit shared exponent E = clamp(ceil(log2 max), -127, 128) (128: a NaN block), "
                        "mantissa clamp(round((|x| + 1e-9) / 2^E * 2^M), 0, 2^M - 1)")
    elif info.block_bias:
        notes.append("a NaN in a block makes it NaN; an Inf sets the block's bias (bl 0, bmf 255)")
    return tuple(notes)


def describe(fmt: Union[str, "Format"], group_size: GroupSize = None, *, row_length: Optional[int] = None,
             scale_bits: int = 16, scale_mode: Optional[str] = None, compat: Optional[str] = None) -> Description:
    """The value grid and storage cost of a format with a group size.

    Storage conventions: an INT group stores one scale of ``scale_bits`` bits (fp16 by default), an asymmetric one
    also its zero point in the element width; an HBFP block one 8-bit shared exponent; an MX block one E8M0 byte;
    an NVFP4 block one E4M3 byte (and the tensor one binary32 scale, reported as ``tensor_scale_bits``); a scaled
    minifloat group (``scale_mode='amax'``) one scale of ``scale_bits``; a bl/bmf block its 8-bit exponent bias
    (log{w} and dmf are element-wise: no overhead). ``group_size`` None is the format's
    default (its block for BFP, MX and NVFP4, a row for INT); for a row, pass ``row_length`` to get the overhead.
    Examples: ``describe("int4", 128).bits_per_element == 4.125``, ``describe("mxfp4").bits_per_element == 4.25``,
    ``describe("nvfp4").bits_per_element == 4.5``. llm-mixed-q's fixed point (``fixed8_f4``): the grid k * 2^-f,
    ``max`` (2^(w-1) - 1) * 2^-f, ``lowest`` -2^(w-1) * 2^-f, w bits per element.

    ``compat``: the profile's use of the format (validated as ``Format(..., compat=)``): its default ``rounding``,
    ``notes`` on what its kernel does differently, and the figures that differ (llm-mixed-q's minifloat_ieee: every
    exponent code finite, so E4M3's max is 480 and E5M2 has no Inf; bitmod: the scale is a binary16 number, 16
    bits whatever ``scale_bits`` says)."""
    options = {k: v for k, v in (("group_size", group_size), ("scale_mode", scale_mode), ("compat", compat))
               if v is not None}
    f = Format.parse(fmt, **options)
    info = f.info
    mode = f.effective_scale_mode
    if f.compat == "bitmod":
        scale_bits = 16  # BitMoD computes and keeps its scales in binary16
    grid = None
    lowest = None
    max_value, has_inf, has_nan = info.max_normal, info.has_inf, info.has_nan
    if info.fixed_point:
        unit = 2.0**-info.frac_bits
        lowest = info.qmin * unit
        if info.bits <= 8:
            grid = tuple(k * unit for k in range(info.qmax + 1))
    elif f.compat == "llm-mixed-q" and info.family == "float":
        max_value, grid = _llmq_ieee_view(info)
        has_inf = has_nan = False
    elif info.family == "lut":
        grid = tuple(sorted({abs(v) for v in info.grids[0][1]}))
    elif info.family == "llmq":
        grid = llmq_grid(info)
    elif info.family in ("float", "scaled"):
        if info.bits <= 8:
            grid = element_grid(info)
    elif info.bits <= 8:  # integer codes 0..qmax (int_full also has -qmax-1; int_asym codes sit around a zero point)
        grid = tuple(float(q) for q in range(0, info.qmax + 1))
    group = f.group_size if f.group_size is not None else info.default_group
    tensor_bits = 32 if mode == "e4m3" else 0
    if mode == "none" or (info.family == "llmq" and not info.block_bias):  # element-wise: nothing per group
        overhead: Optional[float] = 0.0
    else:
        if info.family == "lut":
            per_group = (8 if mode == "floor" else scale_bits) + info.metadata_bits
        elif info.family == "llmq":
            per_group = LLMQ_BIAS_BITS if info.block_bias else 0
        elif info.family == "bfp" or mode in _POW2_MODES or mode in ("e4m3", "e4m3_block"):
            per_group = 8
        else:
            per_group = scale_bits + (info.bits if info.family == "int_asym" else 0)
        if isinstance(group, int):
            overhead = per_group / group
        elif group in (None, "row") and row_length:
            overhead = per_group / row_length
        else:
            overhead = None
    return Description(
        name=info.name, group_size=f.group_size, scale_mode=mode, grid=grid, max=max_value,
        min_normal=info.min_normal, min_subnormal=info.min_subnormal, has_subnormals=info.has_subnormals,
        has_inf=has_inf and mode == "none", has_nan=has_nan and mode == "none", element_bits=info.bits,
        overhead_bits=overhead, bits_per_element=info.bits + (overhead or 0.0), tensor_scale_bits=tensor_bits,
        metadata_bits=info.metadata_bits, grids=info.grids, lowest=lowest, compat=f.compat, rounding=f.rounding,
        notes=_profile_notes(info, f.compat, mode))


@dataclass(frozen=True)
class Format:
    """A number format and the options of one use of it.

    ``Format("int4_asym", group_size=32)``; ``Format("fp8_e5m2", saturate=False)``; ``Format("mxfp4",
    scale_mode="rceil")``; ``Format("fp4_e2m1", group_size=128)`` (a binary32 scale per group of 128). ``name``
    may be any alias and is stored canonical. ``group_size``: None = the format's default (per row for INT, the
    block size for BFP, MX and NVFP4, none for element-wise formats), an int G = groups of G along the last
    dimension (a partial last group is its own group), ``"row"``, or ``"tensor"`` (one group). ``rounding``:
    ``"rne"`` (default), ``"stochastic"``, ``"half_away"`` (microxcaling's nearest) or ``"ties_lower"`` (BitMoD). ``saturate``: None = the format's default; element-wise use only (scaled
    elements always saturate). ``scale_mode``: None = the format's default, see :func:`check_scale_mode` and
    ``SCALE_MODES``.
    """

    name: str
    group_size: GroupSize = None
    rounding: Optional[str] = None
    saturate: Optional[bool] = None
    scale_mode: Optional[str] = None
    observer: str = "minmax"
    compat: Optional[str] = None
    version: int = field(default=1, compare=False)

    def __post_init__(self):
        info = get(self.name)
        object.__setattr__(self, "name", info.name)
        check_group_size(info, self.group_size)
        mode = check_scale_mode(info, self.scale_mode, self.group_size)
        check_compat(info, self.compat, mode, self.group_size)
        rounding = self.default_rounding if self.rounding is None else parse_rounding(self.rounding)
        object.__setattr__(self, "rounding", rounding)
        if info.family == "lut" or self.compat == "bitmod":
            if rounding not in ("rne", "ties_lower"):
                raise ValueError(f"rounding={rounding!r} does not apply to {info.name!r}"
                                 f"{' under compat=bitmod' if self.compat else ''}: it rounds by its own rule "
                                 "(BitMoD's: nearest grid value, a tie to the lower one; int{b}: half to even); "
                                 "use None")
            if info.family == "lut" and self.group_size == "tensor":
                raise ValueError(f"{info.name!r} takes groups or rows, not group_size='tensor'")
            if info.family == "lut" and self.saturate is not None:
                raise ValueError(f"saturate does not apply to {info.name!r}, a lookup grid")
        if self.compat == "fpquant" and rounding != "rne":
            raise ValueError(f"rounding={rounding!r} does not apply under compat='fpquant': FP-Quant rounds by its "
                             "own thresholds (nearest, a tie toward zero); use None")
        if info.family == "llmq" or self.compat == "llm-mixed-q":
            if rounding != "rne":
                raise ValueError(f"rounding={rounding!r} does not apply to {info.name!r}"
                                 f"{' under compat=llm-mixed-q' if self.compat else ''}: llm-mixed-q rounds half to "
                                 "even (torch.round); use None or 'rne'")
            if self.saturate is False:
                raise ValueError(f"saturate=False does not apply to {info.name!r} under llm-mixed-q's arithmetic: "
                                 "every exponent code is finite, so it always saturates")
        if self.saturate is not None:
            if not isinstance(self.saturate, bool):
                raise TypeError(f"saturate must be None or a bool, got {self.saturate!r}")
            if mode != "none" and not self.saturate:
                raise ValueError(f"saturate=False applies to element-wise formats only; {info.name!r} with scale "
                                 f"mode {mode!r} always saturates")
            if not self.saturate and not (info.has_inf or info.has_nan):
                raise ValueError(f"saturate=False is not possible for {info.name!r}: every code is finite (no Inf "
                                 "or NaN to overflow to), so it always saturates")
            if mode == "default":
                raise ValueError(f"saturate applies to float formats only, not {info.name!r}")
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer={self.observer!r} is not supported; allowed: {', '.join(OBSERVERS)}")
        if self.observer == "mse" and (info.family == "lut" or self.compat == "bitmod" or not (
                info.family.startswith("int") or mode in ("amax", "e4m3", "e4m3_block"))):
            raise ValueError(f"observer='mse' needs a scale it can shrink: INT formats, or scale modes amax, e4m3 or "
                             f"e4m3_block; {info.name!r} uses scale mode {mode!r}")

    @property
    def info(self) -> FormatInfo:
        return get(self.name)

    @property
    def default_rounding(self) -> str:
        """The rounding this use takes when none is given: the compat profile's (microxcaling: half_away, hbfp:
        stochastic), else ``"rne"``."""
        return COMPAT_PROFILES[self.compat][1] if self.compat else "rne"

    @property
    def compat_code(self) -> int:
        """qs_compat of this use."""
        return COMPAT_PROFILES[self.compat][0] if self.compat else 0

    @property
    def effective_scale_mode(self) -> str:
        """The scale mode this use runs with: 'default' (INT, BFP), 'none' (element-wise) or a scaled mode."""
        return check_scale_mode(self.info, self.scale_mode, self.group_size)

    @property
    def elementwise(self) -> bool:
        return self.effective_scale_mode == "none"

    @classmethod
    def parse(cls, spec: Union[str, "Format"], **options) -> "Format":
        """A Format from a name (options as keywords) or an existing Format (options override its fields)."""
        if isinstance(spec, Format):
            if not options:
                return spec
            d = spec.to_dict()
            d.update({k: v for k, v in options.items()})
            return cls.from_dict(d)
        return cls(spec, **options)

    def to_dict(self) -> dict:
        d = {"name": self.name}
        if self.group_size is not None:
            d["group_size"] = self.group_size
        if self.rounding != self.default_rounding:
            d["rounding"] = self.rounding
        if self.saturate is not None:
            d["saturate"] = self.saturate
        if self.scale_mode is not None:
            d["scale_mode"] = self.scale_mode
        if self.observer != "minmax":
            d["observer"] = self.observer
        if self.compat is not None:
            d["compat"] = self.compat
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Format":
        allowed = {"name", "group_size", "rounding", "saturate", "scale_mode", "observer", "compat"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown Format keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "name" not in d:
            raise ValueError("a Format needs a 'name'")
        return cls(**d)

    def __str__(self) -> str:
        opts = [f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name"]
        return self.name if not opts else f"{self.name}({', '.join(opts)})"


_MD_HEADER = """# Number formats

Generated from the C format table by `python -m qsparse.formats > docs/formats.md` (a test keeps this file in
sync with the table): one row per format. Exact definitions are in the design spec (FORMATS.md) and in
[numerics.md](numerics.md).

- **Element grid**: exponent bits E, mantissa bits M and bias of a float element; `int` formats show their integer
  code range. **max** is the largest element magnitude (in units of the scale for INT, BFP and block-scaled
  formats).
- **Default use**: the group (block) size and scale mode a format takes when the caller gives none. Element formats
  of 8 bits or fewer also take a group size, which gives them a binary32 scale `amax / max` per group
  (`scale_mode="amax"`), or any other scale mode: `Format("fp4_e2m1", group_size=32, scale_mode="floor")` is MXFP4.
- **Scale modes** (`scale_mode=`): `floor` (OCP MX, the MX default), `ceil`, `even`, `rceil` (E8M0 scales as
  torchao's `ScaleCalculationMode`), `e4m3` (NVFP4: E4M3 block scale under a binary32 tensor scale
  `amax / (max * 448)`, the nvfp4 default), `e4m3_block` (the same without the tensor scale), `amax` (binary32
  scale).
- **Bits per element**: element bits plus the scale (and zero point) storage per element at the default group size:
  an INT scale is counted as fp16 (16 bits, plus the zero point for `_asym`), an HBFP or E8M0 exponent and an E4M3
  scale as 8 bits. NVFP4 stores one more binary32 scale per tensor. `qsparse.formats.describe(fmt, group_size)`
  gives these figures for any group size.
- **`compat="fpquant"`** (IST-DASLab/FP-Quant's Triton quantizers, without their rotation): `mxfp4` takes the
  scale `2^(floor(log2 max(amax, 2^-126)) - 2) / 0.75` in binary32 (not a power of two; the block max lands in
  [3, 6), never clipped), `y = x / s`, output `q * s`; `nvfp4` the global scale `g = 2688 / amax_tensor`, block
  scale `S = e4m3(g * amax / 6)` (no lower clamp), `y = x * g / S`, output `q * S / g`; `q` by FP-Quant's
  thresholds (nearest, a tie toward zero) with the sign of `y > 0` (so +0.0 gives -0.0). Deliberate differences: a
  block with NaN or Inf is NaN, and an all-zero tensor gives zeros under nvfp4 (FP-Quant: 0/0).
- **llm-mixed-q's formats** (family `llmq`, FORMATS.md sections 3 and 6): each element's exponent from a binary32
  log2 first, then its mantissa, rounding half to even only. `log{w}` (sign and w-1 exponent bits, bias
  2^(w-2)-1, no zero: 0 becomes +2^emin) and `dmf{w}_e{E}m{M}` (no implicit bit, bias 2^(E-1)-1; a power of two
  above the lowest binade comes back as 2^k (1 - 2^-M), as in the source) are element-wise; `bl{w}` and
  `bmf{w}_e{E}m{M}` take an 8-bit exponent bias per block of 16 along K (bl: 2^(w-1)-1 - ceil(log2 max),
  bmf: floor(log2 max), clamped to [0, 255]); their grids are listed in units of the block scale. Defaults:
  values with |x| <= 1e-8 (the source's `isclose` threshold) become signed zeros, -0.0 stays -0.0, a NaN or Inf
  in a block makes the block NaN. `compat="llm-mixed-q"` gives the source's own output blend instead (such values
  pass through unquantized, -0.0 becomes +0.0, Inf becomes NaN, an Inf in a bl/bmf block sets its bias) and also
  applies its arithmetic to the element-wise minifloats `fp{w}_e{E}m{M}` (its `minifloat_ieee`: every exponent
  code finite, a mantissa that rounds up to 2 is clamped, E4M3 max 480) and to `bfp{w}` (its MSFP `block_fp`:
  shared exponent clamp(ceil(log2 max), -127, 128), mantissa clamp(round((|x| + 1e-9) / 2^E * 2^(w-1)))). The
  profile is bit for bit with the source wherever torch's float32 log2 is correctly rounded: a block of zeros
  takes the tensor's smallest nonzero block max (max 1 when every block is zero: an all-zero bl4 tensor gives
  2^-7; NaN when a block max is NaN), and on float16 / bfloat16 inputs every step runs in that dtype as the
  source's torch ops do (each op's binary32 result rounded to the dtype; log6's 2^16 is Inf in float16).
  `block_shape=(a, b)` in `qsparse.fake_quant` gives its 2-D weight blocks (tiles of a rows by b columns; its
  configs' `[1, 16]` is the group of 16). Seed names with separate bits: `log`, `bl`, `dmf`, `bmf`,
  `minifloat` (exponent width 4 at 8 bits, 2 at 4-5 bits, 3 at 6-7 bits, 1 at 3 bits), `bfp`.
- **llm-mixed-q's fixed point** (its `integer` quantizer, signed): `fixed{w}_f{f}` (`fixed8_f4`; a negative
  fraction width as `fixed8_fm2`), `x_hat = clamp(round(x * 2^f), -2^(w-1), 2^(w-1) - 1) / 2^f`, element-wise,
  half to even, w = 2..16 and f = -16..32. The table holds one row per width, `fixed{w}_f0` (max, min subnormal
  below are those of f = 0: multiply by 2^-f); the fraction width is a parameter of the call
  (`qs_quant_params.frac_bits`). NaN stays NaN, +-Inf clamp to the grid's ends, -0.0 stays -0.0 (as the source's
  torch ops); bit for bit with the source in every dtype, except fp16 grids beyond 65504 (f < 0), which clamp to
  65504 where the source overflows to Inf. Its configs' `name: integer, width: 8, frac_width: 4`:
  `formats.parse("integer", bits=8, frac_width=4)` or `formats.llmq_format(config)`; `compat="llm-mixed-q"` is the
  same arithmetic.
"""


def markdown_table() -> str:
    """docs/formats.md: every row of the table with its grid, defaults and storage cost."""
    inverse: dict = {}
    for alias, name in _ALIASES.items():
        inverse.setdefault(name, []).append(alias)
    lines = [_MD_HEADER, "| format | family | bits | element grid | max | min subnormal | Inf/NaN | default use | "
             "bits/element | aliases |", "|---|---|---:|---|---:|---:|---|---|---:|---|"]
    for f in table():
        if f.family == "lut":
            grid = " / ".join(f"{n} {{{', '.join(f'{v:g}' for v in vals)}}}" for n, vals in f.grids)
            sub = "-"
        elif f.fixed_point:
            grid = f"fixed point k * 2^-f, k in [{f.qmin}, {f.qmax}]"
            sub = "2^-f"
        elif f.family == "llmq":
            kind = "log, " if f.log else ("no implicit bit, " if f.denorm else "")
            bias = "8-bit bias per block" if f.block_bias else f"bias {f.bias}"
            grid = f"E{f.ebits}" + ("" if f.log else f"M{f.mbits}") + f", {kind}{bias}"
            sub = f"{f.min_subnormal:.6g}"
        elif f.family in ("float", "scaled"):
            grid = "fixed point k/64" if f.name == "mxint8" else f"E{f.ebits}M{f.mbits}, bias {f.bias}"
            sub = f"{f.min_subnormal:.6g}" if f.has_subnormals else "-"
        else:
            grid = f"int [{f.qmin}, {f.qmax}]" if f.family.startswith("int") else f"{f.mbits} magnitude bits"
            sub = "-"
        special = "/".join(k for k, v in (("Inf", f.has_inf), ("NaN", f.has_nan)) if v) or "-"
        if f.elementwise:
            use = "element-wise" + (", saturating" if f.saturates else "")
        else:
            group = f"group {f.default_group}" if f.default_group else "per row"
            use = group + ("" if f.default_scale_mode == "default" else f", scale {f.default_scale_mode}")
            if f.candidates > 1:
                use += f", best of {f.candidates} per group"
        d = describe(f.name, row_length=4096)
        bpe = f"{d.bits_per_element:g}" + (" + 32/tensor" if d.tensor_scale_bits else "")
        if f.default_group is None and not f.elementwise:
            bpe += " (rows of 4096)"
        aliases = ", ".join(f"`{a}`" for a in sorted(inverse.get(f.name, [])))
        lines.append(f"| `{f.name}` | {f.family} | {f.bits} | {grid} | {f.max_normal:.6g} | {sub} | {special} | "
                     f"{use} | {bpe} | {aliases} |")
    lines += ["", "Also accepted: `int{b}_sym`/`_symmetric`/`_restricted` (= `int{b}`), `int{b}_full_range`/`_gptq` "
              "(= `int{b}_full`), `uint{b}`/`int{b}_asymmetric`/`_affine` (= `int{b}_asym`), `hbfp{w}` (= `bfp{w}`), "
              "and any element format by its widths: `e2m1`, `fp4_e2m1fn`, `float6_e3m2`, ...; `dmf{w}`/`bmf{w}` "
              "(llm-mixed-q's minifloats with the default exponent width: `dmf8` = `dmf8_e4m3`, `bmf5` = "
              "`bmf5_e2m2`); with `bits=` given separately: `int`, `int_asym`, `bfp`/`block_fp`, `fp`, `mx_fp`, "
              "`mx_int`, `mixed_ant`/`_er`/`_ea`/`_bitmod`, and llm-mixed-q's `log`, `bl`/`block_log`, "
              "`dmf`/`minifloat_denorm`, `bmf`/`block_minifloat`, `minifloat`/`minifloat_ieee` (= `fp{w}_e{E}m{M}`; "
              "its arithmetic with `compat=\"llm-mixed-q\"`).", ""]
    return "\n".join(lines)


__all__ = ["FormatInfo", "Format", "Description", "describe", "table", "names", "parse", "get", "parse_rounding",
           "fixed_name", "llmq_format", "FIXED_WIDTHS", "FIXED_FRAC_RANGE",
           "check_group_size", "check_scale_mode", "check_compat", "element_grid", "llmq_grid", "markdown_table",
           "FAMILIES", "SCALE_KINDS", "SCALE_MODES", "OBSERVERS", "ROUNDINGS", "COMPAT_PROFILES"]


if __name__ == "__main__":  # python -m qsparse.formats > docs/formats.md
    print(markdown_table(), end="")
