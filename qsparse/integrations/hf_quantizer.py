"""Save and load patched Hugging Face models: ``quant_method: "qsparse"``.

``patch_model`` records in ``model.config.quantization_config`` a :class:`QsparseConfig`: the LayerConfig of every
patched module (and which were GPT-2 ``Conv1D`` modules, stored transposed as nn.Linear weights). With it,
``model.save_pretrained(dir)`` writes config.json and the safetensors weights, masks included (the ``mask`` buffers
are persistent). After ``import qsparse`` (which registers the quantizer below with transformers),
``AutoModelForCausalLM.from_pretrained(dir)`` builds the model skeleton, swaps the recorded modules for BFPLinear
before the weights load, loads weights and masks, and marks the loaded masks as the masks of the loaded weights:
the same modules, masks and formats, the same logits bit for bit.

The same quantizer patches a dense checkpoint at load time:
``from_pretrained(path, quantization_config=QsparseConfig(recipe=...))`` (a ModelConfig in either form); masks are
then computed from the loaded weights.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..config import LayerConfig, ModelConfig, load_config

logger = logging.getLogger("qsparse")

QUANT_METHOD = "qsparse"
CONFIG_VERSION = 1

_registered = False
_classes: Dict[str, Any] = {}


def _transformers_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def _build_classes():
    """The QuantizationConfigMixin and HfQuantizer subclasses (built on first use: transformers is optional)."""
    if _classes:
        return _classes["config"], _classes["quantizer"]
    from transformers.quantizers.base import HfQuantizer
    from transformers.utils.quantization_config import QuantizationConfigMixin

    class QsparseConfig(QuantizationConfigMixin):
        """qsparse's entry in ``config.json``.

        ``layer_configs``: distinct LayerConfig dicts; ``modules``: module name -> index into ``layer_configs``;
        ``transposed``: modules that were transformers Conv1D (weight [in, out]) and are stored as BFPLinear
        ([out, in]); ``recipe``: the ModelConfig dict they were patched from (informational for saved models; for
        a dense checkpoint without ``modules``, the config to patch it with at load time); ``compression``: the
        one-shot recipe (qsparse.compress) applied, if any (informational); ``fixed_qparams``: modules whose weight
        quantization parameters are fixed (``BFPLinear.weight_qparams``, e.g. after GPTQ), saved with the weights."""

        def __init__(self, layer_configs: Optional[List[dict]] = None, modules: Optional[Dict[str, int]] = None,
                     transposed: Optional[List[str]] = None, recipe=None, compression: Optional[dict] = None,
                     fixed_qparams: Optional[List[str]] = None, version: int = CONFIG_VERSION,
                     qsparse_version: Optional[str] = None, quant_method: str = QUANT_METHOD, **kwargs):
            if quant_method != QUANT_METHOD:
                raise ValueError(f"quant_method={quant_method!r}; a QsparseConfig has quant_method 'qsparse'")
            if version != CONFIG_VERSION:
                raise ValueError(f"qsparse quantization_config version {version}: this qsparse reads version "
                                 f"{CONFIG_VERSION}")
            if kwargs:
                raise ValueError(f"unknown qsparse quantization_config keys {sorted(kwargs)}")
            if isinstance(recipe, ModelConfig):
                recipe = recipe.to_dict()
            elif recipe is not None and not isinstance(recipe, dict):
                recipe = load_config(recipe).to_dict()
            from .. import __version__

            self.quant_method = QUANT_METHOD
            self.version = version
            self.qsparse_version = qsparse_version or __version__
            self.layer_configs = list(layer_configs or [])
            self.modules = dict(modules or {})
            self.transposed = list(transposed or [])
            self.recipe = recipe
            self.compression = compression
            self.fixed_qparams = list(fixed_qparams or [])
            for name, idx in self.modules.items():
                if not isinstance(idx, int) or not 0 <= idx < len(self.layer_configs):
                    raise ValueError(f"quantization_config.modules[{name!r}] = {idx!r} names no layer config")
            self._parsed = [LayerConfig.from_dict(d) for d in self.layer_configs]  # validates every entry

        def module_configs(self) -> Dict[str, LayerConfig]:
            return {name: self._parsed[idx] for name, idx in self.modules.items()}

        def to_dict(self) -> Dict[str, Any]:
            return {"quant_method": self.quant_method, "version": self.version,
                    "qsparse_version": self.qsparse_version, "layer_configs": self.layer_configs,
                    "modules": self.modules, "transposed": self.transposed, "recipe": self.recipe,
                    "compression": self.compression, "fixed_qparams": self.fixed_qparams}

        @classmethod
        def from_model(cls, model: nn.Module, recipe=None, compression=None) -> "QsparseConfig":
            """The config recording every BFPLinear of ``model`` as it is now."""
            from .transformers import patched_modules

            configs: List[dict] = []
            index: Dict[str, int] = {}
            modules = {}
            for name, m in patched_modules(model):
                key = json.dumps(m.config.to_dict(), sort_keys=True)
                if key not in index:
                    index[key] = len(configs)
                    configs.append(m.config.to_dict())
                modules[name] = index[key]
            transposed = sorted(n for n, m in patched_modules(model) if m.from_conv1d)
            fixed = sorted(n for n, m in patched_modules(model) if m.weight_qparams is not None)
            return cls(layer_configs=configs, modules=modules, transposed=transposed, recipe=recipe,
                       compression=compression, fixed_qparams=fixed)

    class QsparseHfQuantizer(HfQuantizer):
        """Patches the model skeleton before weights load; marks loaded masks afterwards. Trainable (straight
        through gradients, masks kept), serializable, compilable."""

        requires_calibration = False

        def __init__(self, quantization_config, **kwargs):
            super().__init__(quantization_config, **kwargs)
            self._loaded_keys: Optional[set] = None

        def validate_environment(self, *args, **kwargs):
            return

        def _process_model_before_weight_loading(self, model, checkpoint_files=None, **kwargs):
            self._loaded_keys = _checkpoint_keys(checkpoint_files)
            qc = self.quantization_config
            if qc.modules:
                _patch_from_record(model, qc)
            elif qc.recipe is not None:
                from .transformers import patch_model

                patch_model(model, qc.recipe)
            return model

        def _process_model_after_weight_loading(self, model, **kwargs):
            from .transformers import patched_modules

            recomputed = []
            for name, m in patched_modules(model):
                if m.mask is None:
                    continue
                # the checkpoint's own key list when from_pretrained passes its files (transformers 5); else a
                # checkpoint saved with a module record carries its masks
                loaded = (f"{name}.mask" in self._loaded_keys if self._loaded_keys is not None
                          else bool(self.quantization_config.modules))
                if loaded:
                    m._mask_ready = True  # the checkpoint's mask belongs to the checkpoint's weights
                    m._cache_key = None
                else:
                    m.reset_mask()
                    recomputed.append(name)
            if recomputed:
                logger.info("qsparse: computed %d masks from the loaded weights (none in the checkpoint)",
                            len(recomputed))
            model.config.quantization_config = _rerecord(model, self.quantization_config)
            self.quantization_config = model.config.quantization_config
            return model

        def get_state_dict_and_metadata(self, model):
            # save_pretrained calls this before it writes config.json: record the modules as they are now
            model.config.quantization_config = _rerecord(model, model.config.quantization_config)
            self.quantization_config = model.config.quantization_config
            return None, {}

        def is_serializable(self, safe_serialization=None):
            return True

        @property
        def is_trainable(self) -> bool:
            return True

        @property
        def is_qat_trainable(self) -> bool:
            return True

        @property
        def is_compileable(self) -> bool:
            return True

    def _rerecord(model, old):
        return QsparseConfig.from_model(model, recipe=getattr(old, "recipe", None),
                                        compression=getattr(old, "compression", None))

    _classes["config"], _classes["quantizer"] = QsparseConfig, QsparseHfQuantizer
    return QsparseConfig, QsparseHfQuantizer


def _checkpoint_keys(checkpoint_files) -> Optional[set]:
    """Tensor names in the checkpoint (safetensors headers only), or None when they cannot be read."""
    if not checkpoint_files:
        return None
    keys = set()
    try:
        from safetensors import safe_open

        for f in checkpoint_files:
            if not str(f).endswith(".safetensors"):
                return None
            with safe_open(f, framework="pt") as sf:
                keys.update(sf.keys())
    except (ImportError, OSError):
        return None
    return keys


def _patch_from_record(model: nn.Module, qc) -> None:
    """Swap the modules recorded in a QsparseConfig for BFPLinear (on the meta skeleton of from_pretrained)."""
    from ..nn.linear import BFPLinear
    from .transformers import is_linear_like

    modules = dict(model.named_modules())
    configs = qc.module_configs()
    missing = [n for n in configs if n not in modules or not is_linear_like(modules[n])]
    if missing:
        raise ValueError(f"the checkpoint's qsparse config names modules this {type(model).__name__} has no linear "
                         f"layer for: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    fixed = set(getattr(qc, "fixed_qparams", None) or ())
    unknown = fixed - set(configs)
    if unknown:
        raise ValueError(f"the checkpoint's qsparse config fixes quantization parameters of unrecorded modules: "
                         f"{sorted(unknown)[:5]}")
    for name, cfg in configs.items():
        parent, _, attr = name.rpartition(".")
        new = BFPLinear.wrap(modules[name], cfg)
        if name in fixed:  # an empty buffer of the right shape, for the checkpoint's records to load into
            new.weight_qparams = torch.zeros(new.weight_qparams_shape(), dtype=torch.int32,
                                             device=new.weight.device)
        setattr(modules[parent] if parent else model, attr, new)


def register() -> bool:
    """Register ``quant_method: "qsparse"`` with transformers (done by ``import qsparse`` when transformers is
    installed). Returns whether it is registered."""
    global _registered
    if _registered:
        return True
    if not _transformers_available():
        return False
    from transformers.quantizers import auto

    config_cls, quantizer_cls = _build_classes()
    if QUANT_METHOD not in auto.AUTO_QUANTIZATION_CONFIG_MAPPING:
        auto.register_quantization_config(QUANT_METHOD)(config_cls)
    if QUANT_METHOD not in auto.AUTO_QUANTIZER_MAPPING:
        auto.register_quantizer(QUANT_METHOD)(quantizer_cls)
    _registered = True
    return True


_HOOK_MODULE = "transformers.quantizers.auto"


class _RegisterAfterImport:
    """A meta-path finder that registers the quantizer right after transformers' quantizer registry is imported.
    transformers.quantizers takes about as long to import as torch, so ``import qsparse`` does not import it; any
    model loading imports it (modeling_utils does), and the registration follows at once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _HOOK_MODULE:
            return None
        import importlib.util

        uninstall_import_hook()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        register()

    def __getattr__(self, name):
        return getattr(self._loader, name)


_hook = _RegisterAfterImport()


def install_import_hook() -> None:
    """Register now if transformers' quantizer registry is loaded, else as soon as it is (see above)."""
    import sys

    if _HOOK_MODULE in sys.modules:
        register()
    elif _transformers_available() and _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def uninstall_import_hook() -> None:
    import sys

    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def __getattr__(name: str):
    # QsparseConfig / QsparseHfQuantizer subclass transformers' classes, so they exist once transformers is imported
    if name in ("QsparseConfig", "QsparseHfQuantizer"):
        register()
        return _build_classes()[0 if name == "QsparseConfig" else 1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def save_pretrained(model: nn.Module, save_directory: str, **kwargs) -> str:
    """``model.save_pretrained(save_directory, **kwargs)``, atomically: the files are written to a temporary folder
    beside ``save_directory`` and swapped in by renames only when every file is written, so a failure (a full
    disk, an interrupted job) leaves an existing checkpoint as it was. Returns the path."""
    import os
    import shutil
    import tempfile

    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"{type(model).__name__} has no save_pretrained (not a Hugging Face model)")
    target = os.path.abspath(os.fspath(save_directory))
    if os.path.isfile(target):
        raise ValueError(f"save_directory {save_directory!r} is a file")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    old = None
    try:
        model.save_pretrained(tmp, **kwargs)
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=parent)
            os.rmdir(old)
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(target):
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _is_hf_model(model: nn.Module) -> bool:
    if not _transformers_available():
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def attach(model: nn.Module, config: ModelConfig, compression: Optional[dict] = None) -> None:
    """After patch_model / compress: record the config on a Hugging Face model and attach the quantizer, as
    from_pretrained does, so that save_pretrained writes it and the Trainer knows the model is trainable. A
    config with no rules (compress) keeps the recorded recipe; ``compression`` replaces the recorded one-shot
    recipe when given."""
    if not _is_hf_model(model):
        return
    register()
    config_cls, quantizer_cls = _build_classes()
    old = getattr(model.config, "quantization_config", None)
    recipe = config.to_dict() if config.rules else getattr(old, "recipe", None)
    compression = compression if compression is not None else getattr(old, "compression", None)
    qc = config_cls.from_model(model, recipe=recipe, compression=compression)
    model.config.quantization_config = qc
    model.hf_quantizer = quantizer_cls(qc, pre_quantized=True)
    model.is_quantized = True
    model.quantization_method = QUANT_METHOD


def detach(model: nn.Module) -> None:
    """After unpatch_model: the model is a plain model again."""
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            delattr(model, attr)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "quantization_config", None) is not None:
        if getattr(cfg.quantization_config, "quant_method", None) == QUANT_METHOD:
            del cfg.quantization_config


__all__ = ["register", "install_import_hook", "attach", "detach", "save_pretrained", "QUANT_METHOD"]  # + QsparseConfig, QsparseHfQuantizer (lazy)
